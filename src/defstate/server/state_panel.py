"""The UI's State view and actions, run in worker processes like every load.

Reading state lists the project's components, which imports the user's component code, and a
refresh or a diff runs it: none of that may run in the server process. The server side
(``StatePanel``) starts ``python -m defstate.server.state_panel --project P COMMAND`` or the
``defstate state ...`` commands in a worker and merges what they print with the current load.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import DefstateError, UnknownStateKeyError, UsageError
from defstate.server.location import CodeLocation

RECORDS_PER_KEY = 5
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


# --- in the worker process --------------------------------------------------------------
def overview_document(project_root: Path | None) -> dict[str, Any]:
    """Every key's latest version and last refresh records (newest first)."""
    from defstate.loader.load import open_project
    from defstate.loader.state_admin import latest_versions, recent_records

    project = open_project(project_root)
    latest_of = latest_versions(project)
    records_of = recent_records(project, RECORDS_PER_KEY)
    rows = []
    for key, group in sorted(project.groups.items()):
        row: dict[str, Any] = {
            "key": key,
            "management_type": group.management_type.value,
            "components": [i.source for i in group.instances],
            "latest": None,
            "records": [],
            "error": None,
        }
        latest = latest_of[key]
        if isinstance(latest, DefstateError):
            row["error"] = latest.message
        else:
            row["latest"] = latest.to_json_dict() if latest else None
            records = records_of[key]
            if isinstance(records, DefstateError):
                row["error"] = records.message
            else:
                row["records"] = [r.to_json_dict() for r in records]
        rows.append(row)
    return {"keys": rows}


def rollback_document(project_root: Path | None, key: str, version: str) -> dict[str, Any]:
    from defstate.loader.state_admin import rollback_state

    restored = rollback_state(project_root, key, version)
    return {"key": key, "latest": restored.to_json_dict()}


def refresh_document(project_root: Path | None, key: str) -> dict[str, Any]:
    """Refresh one key, recorded with the trigger ``ui``; the ``state refresh --json`` report."""
    from defstate.loader.load import refresh_state
    from defstate.loader.refresh import RefreshOptions

    report = refresh_state(project_root, keys=[key], options=RefreshOptions(trigger="ui"))
    return {
        "results": [r.to_json_dict() for r in report.results],
        "errors": [e.to_json_dict() for e in report.errors],
    }


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "overview": overview_document,
    "rollback": rollback_document,
    "refresh": refresh_document,
}


def main(argv: list[str]) -> int:
    """``--project P overview | refresh KEY | rollback KEY VERSION``: print one JSON document."""
    from defstate.cli.app import user_output_to_stderr

    if len(argv) < 3 or argv[0] != "--project" or argv[2] not in COMMANDS:
        print("usage: --project P overview | refresh KEY | rollback KEY VERSION", file=sys.stderr)
        return 2
    root, command, arguments = Path(argv[1]), COMMANDS[argv[2]], argv[3:]
    try:
        with user_output_to_stderr():  # what components print must not corrupt the JSON
            document = command(root, *arguments)
    except DefstateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(document))
    return 0


# --- in the server process --------------------------------------------------------------
_MODULE = "defstate.server.state_panel"


@attrs.define
class StatePanel:
    """State rows (in use against latest), history, diff and the actions, for one location."""

    location: CodeLocation

    def _known_key(self, key: str) -> str:
        load = self.location.current
        keys = {row["key"] for row in load.document.components} if load else set()
        if key not in keys:
            raise UnknownStateKeyError(f"unknown state key {key!r}")
        return key

    @staticmethod
    def _version(version: str) -> str:
        if not _VERSION.fullmatch(version):
            raise UsageError(f"not a state version: {version!r}")
        return version

    def overview(self) -> dict[str, Any]:
        """Per key: ``in_use`` (the current load's pin), ``latest``, ``out_of_date``, records."""
        load = self.location.current
        pins = load.document.state if load else {}
        document = self.location.pool.run_json(["overview"], "reading state", module=_MODULE)
        for row in document["keys"]:
            in_use, latest = pins.get(row["key"]), row["latest"]
            row["in_use"] = in_use
            row["out_of_date"] = bool(
                latest
                and in_use
                and (latest["version"], latest["created_at"])
                != (in_use["version"], in_use["created_at"])
            )
        document["generation"] = load.generation if load else None
        return document

    def history(self, key: str) -> dict[str, Any]:
        command = ["state", "history", "--json", "--", self._known_key(key)]
        return self.location.pool.run_json(command, f"history of {key}")

    def diff(self, key: str, old: str | None, new: str | None) -> dict[str, Any]:
        versions = [self._version(v) for v in (old, new) if v]
        command = ["state", "diff", "--json", "--", self._known_key(key), *versions]
        return self.location.pool.run_json(command, f"diff of {key}")

    def refresh(self, key: str) -> dict[str, Any]:
        """Refresh one key in a worker, then reload the location to use what it published."""
        command = ["refresh", self._known_key(key)]
        report = self.location.pool.run_json(command, f"refresh of {key}", module=_MODULE)
        return {"report": report, **self._reload()}

    def rollback(self, key: str, version: str) -> dict[str, Any]:
        command = ["rollback", self._known_key(key), self._version(version)]
        restored = self.location.pool.run_json(command, f"rollback of {key}", module=_MODULE)
        return {"rollback": restored, **self._reload()}

    def reload(self) -> dict[str, Any]:
        return self._reload()

    def _reload(self) -> dict[str, Any]:
        load = self.location.reload()
        return {"reloaded": load is not None, "health": self.location.health()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
