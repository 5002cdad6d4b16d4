"""What a component type accepts: its attributes (type, default, required) and docstring, and
a JSON Schema of them, for ``defstate list component-types``, ``scaffold defs`` and editors.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import attrs

from defstate.components.attributes import describe_type
from defstate.components.component import Component
from defstate.components.state_backed import StateBackedComponent


@attrs.frozen
class AttributeInfo:
    """One attribute a ``defs.yaml`` entry may set."""

    name: str
    type: str
    required: bool
    default: Any  # JSON-compatible; None when required or without a plain default
    schema: Mapping[str, Any]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
        }


@attrs.frozen
class ComponentTypeInfo:
    """A component class as ``defs.yaml`` sees it."""

    name: str
    state_backed: bool
    doc: str
    attributes: tuple[AttributeInfo, ...]

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n\n", 1)[0].replace("\n", " ") if self.doc else ""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "state_backed": self.state_backed,
            "summary": self.summary,
            "doc": self.doc,
            "attributes": [a.to_json_dict() for a in self.attributes],
        }

    def attributes_schema(self) -> dict[str, Any]:
        """A JSON Schema of this type's ``attributes:`` mapping."""
        return {
            "type": "object",
            "properties": {a.name: dict(a.schema) for a in self.attributes},
            "required": [a.name for a in self.attributes if a.required],
            "additionalProperties": False,
        }


def describe_component_type(name: str, cls: type[Component]) -> ComponentTypeInfo:
    """The attributes and docstring of ``cls``, registered or imported as ``name``."""
    return ComponentTypeInfo(
        name=name,
        state_backed=issubclass(cls, StateBackedComponent),
        doc=inspect.getdoc(cls) or "",
        attributes=_attributes(cls),
    )


def _attributes(cls: type[Any]) -> tuple[AttributeInfo, ...]:
    hints = typing.get_type_hints(cls)
    infos = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        hint = hints.get(field.name, Any)
        required = field.default is attrs.NOTHING
        infos.append(
            AttributeInfo(
                name=field.alias or field.name,
                type=describe_type(hint),
                required=required,
                default=None if required else _plain(_default_of(field)),
                schema=json_schema(hint),
            )
        )
    return tuple(infos)


def _default_of(field: attrs.Attribute[Any]) -> Any:
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return None if default.takes_self else default.factory()
    return default


def _plain(value: Any) -> Any:
    """``value`` as JSON/YAML would write it (enums by value, attrs classes as mappings)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if attrs.has(type(value)):
        # an alias field (RetryPolicy.kind, of type) is accepted, never written out
        fields = [f for f in attrs.fields(type(value)) if "alias_of" not in f.metadata]
        return {f.alias or f.name: _plain(getattr(value, f.name)) for f in fields}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    Path: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of what a field with type hint ``hint`` accepts in YAML."""
    if hint is Any or hint is object:
        return {}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    if isinstance(hint, type) and attrs.has(hint):
        info = _attributes(hint)
        return {
            "type": "object",
            "properties": {a.name: dict(a.schema) for a in info},
            "required": [a.name for a in info if a.required],
            "additionalProperties": False,
        }
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        if (origin or hint) is tuple and len(args) > 1 and args[1] is not Ellipsis:
            return {
                "type": "array",
                "prefixItems": [json_schema(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": json_schema(value)}
    return {}
