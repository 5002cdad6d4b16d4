"""defstate: state-backed components.

A component implements ``write_state_to_path`` (slow, rare) and ``build_defs_from_state``
(fast, every load); defstate decides when to refresh, where state lives and which version
each process sees.
"""

from defstate.components import (
    Component,
    ComponentLoadContext,
    DefsStateConfig,
    StateBackedComponent,
    register_component_type,
)
from defstate.definitions import AssetKey, AssetSpec, Definitions
from defstate.errors import DefstateError, TerminalRefreshError
from defstate.loader import LoadError, LoadResult, RefreshReport, load_defs, refresh_state
from defstate.state_storage import ManagementType, StateInfo, StateVersion

__version__ = "0.1.0"

DefsStateManagementType = ManagementType  # the name Dagster users know

__all__ = [
    "AssetKey",
    "AssetSpec",
    "Component",
    "ComponentLoadContext",
    "Definitions",
    "DefsStateConfig",
    "DefsStateManagementType",
    "DefstateError",
    "LoadError",
    "LoadResult",
    "ManagementType",
    "RefreshReport",
    "StateBackedComponent",
    "StateInfo",
    "StateVersion",
    "TerminalRefreshError",
    "__version__",
    "load_defs",
    "refresh_state",
    "register_component_type",
]
