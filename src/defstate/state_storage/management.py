"""The three ways a state-backed component's state can be managed."""

from __future__ import annotations

import enum


class ManagementType(enum.Enum):
    """Where a key's state lives and when it is refreshed (docs/architecture.md, "Storages")."""

    LOCAL_FILESYSTEM = "LOCAL_FILESYSTEM"
    VERSIONED_STATE_STORAGE = "VERSIONED_STATE_STORAGE"
    LEGACY_CODE_SERVER_SNAPSHOTS = "LEGACY_CODE_SERVER_SNAPSHOTS"

    @property
    def label(self) -> str:
        """The short name tables show (``local``, ``versioned``, ``snapshot``)."""
        return _LABELS[self]


_LABELS = {
    ManagementType.LOCAL_FILESYSTEM: "local",
    ManagementType.VERSIONED_STATE_STORAGE: "versioned",
    ManagementType.LEGACY_CODE_SERVER_SNAPSHOTS: "snapshot",
}
