"""Choosing the state storage for a key's management type."""

from __future__ import annotations

import threading

import attrs

from defstate.errors import ProjectConfigError, SourceLocation
from defstate.loader.project import ProjectConfig
from defstate.state_storage.base import StateStorage
from defstate.state_storage.local import LocalStateStorage
from defstate.state_storage.management import ManagementType


@attrs.define
class StateStorages:
    """The storages of one project, created on first use (object storage is slow to set up).

    One instance belongs to one load: code-server snapshots live in it.
    """

    config: ProjectConfig
    _cache: dict[ManagementType, StateStorage] = attrs.field(factory=dict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def get(self, management_type: ManagementType, component: str) -> StateStorage:
        """The storage for ``management_type``; ``component`` names the asker in errors.

        Thread-safe: keys are resolved concurrently.
        """
        with self._lock:
            storage = self._cache.get(management_type)
            if storage is None:
                storage = self._create(management_type, component)
                self._cache[management_type] = storage
            return storage

    def _create(self, management_type: ManagementType, component: str) -> StateStorage:
        if management_type is ManagementType.LOCAL_FILESYSTEM:
            return LocalStateStorage.for_defs_dir(self.config.defs_dir)
        if management_type is ManagementType.LEGACY_CODE_SERVER_SNAPSHOTS:
            from defstate.state_storage.snapshots import SnapshotStateStorage

            return SnapshotStateStorage(max_bytes=self.config.snapshot_max_bytes)
        settings = self.config.state_storage
        if settings is None:
            raise ProjectConfigError(
                f"{component} uses management_type VERSIONED_STATE_STORAGE but no state "
                "storage is configured: set url in [tool.defstate.state_storage] "
                "(or DEFSTATE_STATE_STORAGE_URL)",
                SourceLocation(self.config.pyproject),
            )
        from defstate.state_storage.versioned import VersionedStateStorage

        return VersionedStateStorage(settings.url, dict(settings.storage_options))
