"""The component model: ``Component``, ``StateBackedComponent`` and their configuration."""

from defstate.components.component import Component
from defstate.components.context import ComponentLoadContext
from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.components.registry import register_component_type, resolve_component_type
from defstate.components.state_backed import DefsStateConfig, RefreshNotes, StateBackedComponent

__all__ = [
    "Component",
    "ComponentLoadContext",
    "DefsStateConfig",
    "RefreshGuard",
    "RefreshNotes",
    "RetryPolicy",
    "StateBackedComponent",
    "register_component_type",
    "resolve_component_type",
]
