"""defstate: state-backed components.

A component implements ``write_state_to_path`` (slow, rare) and ``build_defs_from_state``
(fast, every load); defstate decides when to refresh, where state lives and which version
each process sees.

The loader (YAML, project discovery) is imported on first use of ``load_defs`` and friends,
so component modules that only ``from defstate import StateBackedComponent`` stay cheap.
"""

from typing import TYPE_CHECKING, Any

from defstate.components import (
    Component,
    ComponentLoadContext,
    DefsStateConfig,
    RefreshGuard,
    RefreshNotes,
    RetryPolicy,
    StateBackedComponent,
    register_component_type,
)
from defstate.definitions import AssetCheckKey, AssetCheckSpec, AssetKey, AssetSpec, Definitions
from defstate.errors import DefstateError, TerminalRefreshError
from defstate.state_storage import ManagementType, StateInfo, StateVersion

if TYPE_CHECKING:
    from defstate.loader import (
        LoadProblem,
        LoadResult,
        RefreshReport,
        Shard,
        load_defs,
        refresh_state,
    )
    from defstate.loader.check import CheckReport, check_project
    from defstate.loader.history import StateHistory, state_history
    from defstate.loader.refresh import RefreshOptions
    from defstate.selection import AssetSelection, SelectionSyntaxError

DefsStateManagementType = ManagementType  # the name Dagster users know

_LAZY = {
    "LoadProblem": "defstate.loader",
    "LoadResult": "defstate.loader",
    "RefreshReport": "defstate.loader",
    "load_defs": "defstate.loader",
    "refresh_state": "defstate.loader",
    "Shard": "defstate.loader",
    "RefreshOptions": "defstate.loader.refresh",
    "StateHistory": "defstate.loader.history",
    "state_history": "defstate.loader.history",
    "AssetSelection": "defstate.selection",
    "SelectionSyntaxError": "defstate.selection",
    "CheckReport": "defstate.loader.check",
    "check_project": "defstate.loader.check",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata costs milliseconds: only when asked
        from importlib.metadata import version

        globals()[name] = version("defstate")
        return globals()[name]
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'defstate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


__all__ = [
    "AssetCheckKey",
    "AssetCheckSpec",
    "AssetKey",
    "AssetSelection",
    "AssetSpec",
    "CheckReport",
    "Component",
    "ComponentLoadContext",
    "Definitions",
    "DefsStateConfig",
    "DefsStateManagementType",
    "DefstateError",
    "LoadProblem",
    "LoadResult",
    "ManagementType",
    "RefreshGuard",
    "RefreshNotes",
    "RefreshOptions",
    "RefreshReport",
    "RetryPolicy",
    "SelectionSyntaxError",
    "Shard",
    "StateBackedComponent",
    "StateHistory",
    "StateInfo",
    "StateVersion",
    "TerminalRefreshError",
    "__version__",
    "check_project",
    "load_defs",
    "refresh_state",
    "register_component_type",
    "state_history",
]
