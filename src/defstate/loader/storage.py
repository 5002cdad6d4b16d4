"""Choosing the state storage for a key's management type."""

from __future__ import annotations

import threading

import attrs

from defstate.loader.project import ProjectConfig
from defstate.state_storage.base import StateStorage
from defstate.state_storage.management import ManagementType
from defstate.state_storage.registry import storage_class


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
        return storage_class(management_type).for_project(self.config, component)
