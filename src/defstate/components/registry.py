"""Resolving a ``defs.yaml`` ``type:`` to a component class."""

from __future__ import annotations

import importlib

from defstate.components.component import Component
from defstate.errors import ComponentTypeError

_REGISTERED: dict[str, type[Component]] = {}


def register_component_type(name: str, cls: type[Component]) -> None:
    """Make ``type: <name>`` resolve to ``cls`` (short names for well-known components)."""
    _REGISTERED[name] = cls


def registered_component_types() -> dict[str, type[Component]]:
    """The short names made by :func:`register_component_type`."""
    return dict(_REGISTERED)


def resolve_component_type(name: str) -> type[Component]:
    """Import ``package.module.Class`` (or look up a registered short name)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, _, class_name = name.rpartition(".")
    # every part an identifier: no relative imports (".x"), empty parts or other characters,
    # which importlib would reject with TypeError or ValueError rather than ImportError
    if not module_name or not all(part.isidentifier() for part in name.split(".")):
        raise ComponentTypeError(
            f"unknown component type {name!r}: expected a dotted import path 'package.module.Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComponentTypeError(
            f"unknown component type {name!r}: cannot import module {module_name!r} ({exc})"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ComponentTypeError(
            f"unknown component type {name!r}: module {module_name!r} has no {class_name!r}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ComponentTypeError(f"component type {name!r} is not a subclass of defstate.Component")
    return cls
