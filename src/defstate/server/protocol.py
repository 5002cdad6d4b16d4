"""The typed protocol between a code location and its worker processes.

The server writes a :class:`LoadRequest` to a file, starts
``python -m defstate.server.worker REQUEST OUTPUT`` and reads the :class:`LoadDocument` the
worker wrote to OUTPUT. Both sides go through ``to_json``/``from_json`` here, so a field
added on one side cannot be silently missed by the other.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.state_storage.state_info import StateInfo

JsonObject = dict[str, Any]


class HealthStatus(enum.StrEnum):
    """``status`` of a code location's health document."""

    OK = "ok"
    DEGRADED = "degraded"


@attrs.frozen
class LoadRequest:
    """What the server asks one worker to load."""

    project_root: Path | None
    dev: bool = False
    state_info: StateInfo | None = None
    unchanged_since: Mapping[str, str] | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "project_root": str(self.project_root) if self.project_root else None,
                "dev": self.dev,
                "state_info": self.state_info.to_json_dict()
                if self.state_info is not None
                else None,
                "unchanged_since": (
                    dict(self.unchanged_since) if self.unchanged_since is not None else None
                ),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LoadRequest:
        data = json.loads(text)
        state_info = data.get("state_info")
        return cls(
            project_root=Path(data["project_root"]) if data.get("project_root") else None,
            dev=bool(data.get("dev", False)),
            state_info=StateInfo.from_json_dict(state_info) if state_info is not None else None,
            unchanged_since=data.get("unchanged_since"),
        )


@attrs.frozen
class LoadDocument:
    """One load as a worker reports it: the ``list defs --json`` document (assets, asset
    checks, the pinned state, errors) plus components, fingerprints, refresh results, timing.

    Rows stay JSON objects: they are served as they are by the HTTP API.
    """

    assets: list[JsonObject] = attrs.field(factory=list)
    asset_checks: list[JsonObject] = attrs.field(factory=list)
    state: JsonObject = attrs.field(factory=dict)
    errors: list[JsonObject] = attrs.field(factory=list)
    components: list[JsonObject] = attrs.field(factory=list)
    fingerprints: dict[str, str] = attrs.field(factory=dict)
    refreshes: list[JsonObject] = attrs.field(factory=list)
    #: seconds the whole reload took as the server saw it (worker start to document read)
    seconds: float = 0.0
    #: seconds the load itself took in the worker
    load_seconds: float | None = None

    @property
    def state_info(self) -> StateInfo:
        return StateInfo.from_json_dict(self.state)

    def to_json_dict(self) -> JsonObject:
        return attrs.asdict(self, recurse=False)

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict())

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> LoadDocument:
        """Read a document; fields it lacks take their defaults, unknown fields are an error."""
        unknown = set(data) - set(attrs.fields_dict(cls))
        if unknown:
            raise ValueError(f"unknown fields in a worker load document: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> LoadDocument:
        return cls.from_json_dict(json.loads(text))

    @classmethod
    def coerce(cls, value: LoadDocument | Mapping[str, Any]) -> LoadDocument:
        """``value`` itself, or the document a mapping of its fields describes."""
        return value if isinstance(value, LoadDocument) else cls.from_json_dict(value)
