"""Choosing the state storage for a key's management type."""

from __future__ import annotations

import attrs

from defstate.errors import NotSupportedYetError
from defstate.loader.project import ProjectConfig
from defstate.state_storage.base import StateStorage
from defstate.state_storage.local import LocalStateStorage
from defstate.state_storage.management import ManagementType


@attrs.define
class StateStorages:
    """The storages of one project, created on first use (object storage is slow to set up)."""

    config: ProjectConfig
    _cache: dict[ManagementType, StateStorage] = attrs.field(factory=dict, init=False)

    def get(self, management_type: ManagementType, component: str) -> StateStorage:
        """The storage for ``management_type``; ``component`` names the asker in errors."""
        storage = self._cache.get(management_type)
        if storage is None:
            storage = self._create(management_type, component)
            self._cache[management_type] = storage
        return storage

    def _create(self, management_type: ManagementType, component: str) -> StateStorage:
        if management_type is ManagementType.LOCAL_FILESYSTEM:
            return LocalStateStorage.for_defs_dir(self.config.defs_dir)
        raise NotSupportedYetError(
            f"{component}: management_type {management_type.value} is not supported yet "
            "(only LOCAL_FILESYSTEM is implemented in this release)"
        )
