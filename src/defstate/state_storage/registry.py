"""The one map from a management type to the class of its storage.

A new storage is one module with a class implementing
:class:`~defstate.state_storage.base.StateStorage` plus one line here. Classes are imported
on first use, so a load imports only the storages it uses (object-storage code stays out of
a local load).
"""

from __future__ import annotations

import importlib

from defstate.state_storage.base import StateStorage
from defstate.state_storage.management import ManagementType

_STORAGE_CLASSES: dict[ManagementType, str] = {
    ManagementType.LOCAL_FILESYSTEM: "defstate.state_storage.local:LocalStateStorage",
    ManagementType.VERSIONED_STATE_STORAGE: (
        "defstate.state_storage.versioned:VersionedStateStorage"
    ),
    ManagementType.LEGACY_CODE_SERVER_SNAPSHOTS: (
        "defstate.state_storage.snapshots:SnapshotStateStorage"
    ),
}


def storage_class(management_type: ManagementType) -> type[StateStorage]:
    """The storage class of ``management_type`` (imported on first use)."""
    module_name, _, class_name = _STORAGE_CLASSES[management_type].partition(":")
    cls: type[StateStorage] = getattr(importlib.import_module(module_name), class_name)
    return cls
