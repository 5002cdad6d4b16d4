"""A key's history: its refresh records and its stored versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from defstate.loader.load import open_project
from defstate.state_storage.base import version_store
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion


@attrs.frozen
class StateHistory:
    """Refresh records (newest first) and stored versions (oldest first) of one key."""

    key: str
    management_type: str
    records: tuple[RefreshRecord, ...]
    versions: tuple[StateVersion, ...]
    latest: StateVersion | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "management_type": self.management_type,
            "latest": self.latest.version if self.latest else None,
            "records": [r.to_json_dict() for r in self.records],
            "versions": [v.to_json_dict() for v in self.versions],
        }


def state_history(project_root: Path | str | None, key: str, limit: int = 50) -> StateHistory:
    """The records and versions of ``key``; raises ``UnknownStateKeyError`` for unknown keys."""
    project = open_project(project_root)
    group = project.group(key)
    storage = project.storage(group)
    latest = storage.latest(key)
    store = version_store(storage)
    versions = tuple(store.versions(key)) if store else (latest,) if latest else ()
    return StateHistory(
        key, group.management_type.value, tuple(storage.records(key, limit)), versions, latest
    )
