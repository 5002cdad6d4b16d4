"""State versions and the pin (state info) that one load used."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from defstate.state_storage.management import ManagementType

LOCAL_VERSION = "local"
CODE_SERVER_VERSION = "code-server"


def utc_iso(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (default: now) as an ISO-8601 UTC string with microseconds,
    the form of every ``created_at`` (sortable as text)."""
    moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds")


@attrs.frozen
class StateVersion:
    """One written copy of a key's state.

    ``version`` is ``"local"``, a uuid4 string (versioned storage) or ``"code-server"``.
    ``size``/``sha256`` are recorded for versioned storage; ``snapshot`` carries the bytes of a
    code-server snapshot so a pin can travel without storage.
    """

    key: str
    version: str
    created_at: str
    management_type: ManagementType
    size: int | None = None
    sha256: str | None = None
    is_directory: bool = False
    snapshot: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "created_at": self.created_at,
            "management_type": self.management_type.value,
        }
        for name in ("size", "sha256", "snapshot"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.is_directory:
            data["is_directory"] = True
        return data

    @classmethod
    def from_json_dict(cls, key: str, data: Mapping[str, Any]) -> StateVersion:
        return cls(
            key=key,
            version=str(data["version"]),
            created_at=str(data["created_at"]),
            management_type=ManagementType(data["management_type"]),
            size=data.get("size"),
            sha256=data.get("sha256"),
            is_directory=bool(data.get("is_directory", False)),
            snapshot=data.get("snapshot"),
        )


@attrs.frozen
class StateInfo:
    """The pin: for every key a load used, the exact version it used.

    A process that loads with ``load_defs(..., state_info=pin)`` sees the same state.
    """

    versions: Mapping[str, StateVersion] = attrs.field(factory=dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.versions)

    def __len__(self) -> int:
        return len(self.versions)

    def __contains__(self, key: object) -> bool:
        return key in self.versions

    def get(self, key: str) -> StateVersion | None:
        return self.versions.get(key)

    def to_json_dict(self) -> dict[str, Any]:
        return {key: self.versions[key].to_json_dict() for key in sorted(self.versions)}

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=True)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> StateInfo:
        """Accept the pin itself or a whole ``list defs --json`` document (its ``state``)."""
        if "state" in data and isinstance(data["state"], Mapping):
            data = data["state"]
        return cls({key: StateVersion.from_json_dict(key, value) for key, value in data.items()})

    @classmethod
    def from_json(cls, text: str) -> StateInfo:
        return cls.from_json_dict(json.loads(text))
