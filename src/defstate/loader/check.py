"""``defstate check``: what would fail later, found now (like ``dbt debug`` and ``dg check``).

A load without refreshing (configuration, every ``defs.yaml``, the definitions), then: schedule
patterns that match no key, keys without state (a hint naming the refresh command), and with
``storage=True`` a quick connectivity and permission probe of the state storage.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import DefstateError, SourceLocation
from defstate.loader.discovery import LoadProblem
from defstate.loader.groups import key_matches, known_keys
from defstate.loader.load import LoadResult, load_defs
from defstate.state_storage.registry import storage_class

STORAGE_TIMEOUT = 10.0


@attrs.frozen
class StorageProbe:
    """The outcome of probing one storage: each step that ran and how long it took."""

    storage: str
    ok: bool
    steps: tuple[str, ...]
    seconds: float
    error: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class CheckReport:
    """Problems (fail the check), hints (do not), and what the project holds."""

    root: Path
    errors: tuple[LoadProblem, ...]
    hints: tuple[LoadProblem, ...]
    components: int
    assets: int
    keys: int
    keys_with_state: int
    storage: tuple[StorageProbe, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "root": str(self.root),
            "components": self.components,
            "assets": self.assets,
            "keys": self.keys,
            "keys_with_state": self.keys_with_state,
            "errors": [e.to_json_dict() for e in self.errors],
            "hints": [h.to_json_dict() for h in self.hints],
            "storage": [p.to_json_dict() for p in self.storage],
        }


def check_project(
    project_root: Path | str | None = None,
    *,
    strict: bool | None = None,
    storage: bool = False,
    storage_timeout: float = STORAGE_TIMEOUT,
    extra_checks: Sequence[Callable[[LoadResult], list[LoadProblem]]] = (),
) -> CheckReport:
    """Validate the project without refreshing anything; see the module docstring.

    ``extra_checks`` add problems of their own to the load's (``check --dagster`` passes
    Dagster's rules).
    """
    result = load_defs(project_root, dev=False, strict=strict)
    errors = [*result.errors, *_schedule_errors(result)]
    for extra_check in extra_checks:
        errors.extend(extra_check(result))
    probes: tuple[StorageProbe, ...] = ()
    if storage:
        probes = tuple(_probe_storages(result, storage_timeout))
        where = SourceLocation(result.project.config.pyproject)
        errors.extend(
            LoadProblem(f"state storage {p.storage}: {p.error}", where) for p in probes if not p.ok
        )
    return CheckReport(
        root=result.project.config.root,
        errors=tuple(errors),
        hints=tuple(_missing_state_hints(result)),
        components=len(result.project.instances),
        assets=len(result.definitions.assets),
        keys=len(result.project.groups),
        keys_with_state=len(result.state_info),
        storage=probes,
    )


def _schedule_errors(result: LoadResult) -> list[LoadProblem]:
    from defstate.loader.schedules import load_schedules

    config = result.project.config
    where = SourceLocation(config.pyproject)
    try:
        schedules = load_schedules(config)
    except DefstateError as exc:
        return [LoadProblem.from_exception(exc)]
    keys = result.project.keys
    errors = []
    for name, schedule in sorted(schedules.items()):
        for pattern in schedule.settings.keys:
            if not any(key_matches(key, pattern) for key in keys):
                errors.append(
                    LoadProblem(
                        f"[tool.defstate.schedules.{name}]: key pattern {pattern!r} matches no "
                        f"state key ({known_keys(keys)})",
                        where,
                    )
                )
    return errors


def _missing_state_hints(result: LoadResult) -> list[LoadProblem]:
    hints = []
    for key, group in sorted(result.project.groups.items()):
        if key in result.state_info or any(e.key == key for e in result.errors):
            continue
        if storage_class(group.management_type).refreshed_at_initialization:
            continue  # made by every load
        writer = group.writer
        hints.append(
            LoadProblem(
                f"no state yet, so its component defines no assets: create it with "
                f"`defstate state refresh --key '{key}'`",
                writer.location,
                writer.source,
                key,
                kind="hint",
            )
        )
    return hints


def _probe_storages(result: LoadResult, timeout: float) -> list[StorageProbe]:
    """Probe the versioned storage once (local state is probed where it lives: defs_dir)."""
    from defstate.state_storage.versioned import VersionedStateStorage

    config = result.project.config
    probes = []
    if config.state_storage is not None:
        storage = VersionedStateStorage(
            config.state_storage.url, dict(config.state_storage.storage_options)
        )
        probes.append(_with_deadline(storage.describe(), timeout, lambda: _probe(storage)))
    return probes


def _probe(storage: Any) -> list[str]:
    """Open, list, write, read back and delete one small object, calling fsspec directly
    (without the storage's retries: a check must answer quickly)."""
    steps = []
    fs = storage.fs
    steps.append("connect")
    root = storage.key_path("x").rsplit("/", 1)[0]  # "x" encodes to one level: the root
    if storage.is_object_store:
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            raise DefstateError(f"bucket {bucket!r} does not exist")
    if fs.exists(root):
        fs.ls(root, detail=False)
    steps.append("list")
    # encoded keys never start with "." (it is always escaped): this name is no key's
    probe = f"{root}/.defstate-check-{uuid.uuid4().hex}"
    if storage.is_local:
        fs.makedirs(root, exist_ok=True)
    payload = b"defstate check\n"
    fs.pipe_file(probe, payload)
    steps.append("write")
    if fs.cat_file(probe) != payload:
        raise DefstateError("an object read back differs from what was written")
    steps.append("read")
    fs.rm_file(probe)
    steps.append("delete")
    return steps


def _with_deadline(name: str, timeout: float, probe: Callable[[], list[str]]) -> StorageProbe:
    """Run ``probe`` on a daemon thread; past ``timeout`` the check reports a timeout and
    moves on (the thread is abandoned: a hung endpoint must not hang the check)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["steps"] = probe()
        except BaseException as exc:  # reported below, never raised on this thread
            outcome["error"] = exc

    start = time.monotonic()
    thread = threading.Thread(target=run, name="defstate-storage-check", daemon=True)
    thread.start()
    thread.join(timeout)
    seconds = round(time.monotonic() - start, 3)
    if thread.is_alive():
        message = f"no answer within {timeout:g}s (connectivity? endpoint? firewall?)"
        return StorageProbe(name, False, (), seconds, message)
    error = outcome.get("error")
    if error is not None:
        from defstate.state_storage.versioned import describe_error

        text = error.message if isinstance(error, DefstateError) else describe_error(error)
        return StorageProbe(name, False, (), seconds, text)
    return StorageProbe(name, True, tuple(outcome["steps"]), seconds)
