"""Turning the ``attributes:`` of a ``defs.yaml`` entry into constructor arguments.

Values are checked against the attrs fields' type hints; the supported hints are those a YAML
document can express: ``str``, ``int``, ``float``, ``bool``, ``Path``, ``Any``, ``None``,
``Literal``, enums, ``list``/``tuple``/``set``/``dict`` of those, unions (``X | None``), and
nested attrs classes (given as mappings).
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import AttributeValueError


def describe_type(hint: Any) -> str:
    """A short, human name for a type hint (``list[str]``, ``int | None``, ...)."""
    if hint is Any:
        return "any value"
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe_type(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " | ".join(repr(m.value) for m in hint)
    if isinstance(hint, type) and attrs.has(hint):
        return f"a mapping ({hint.__name__})"
    if origin is not None:
        args = ", ".join(describe_type(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Mismatch(Exception):
    """``value`` does not fit ``hint``; the message is built only then (loads are hot)."""


def convert_value(value: Any, hint: Any, path: tuple[str | int, ...]) -> Any:
    """Check ``value`` against ``hint`` and convert it (e.g. ``str`` to ``Path``)."""
    try:
        return _convert(value, hint, path)
    except _Mismatch:
        where = f"attribute {'.'.join(map(str, path))!r}: " if path else ""
        raise AttributeValueError(
            path, f"{where}expected {describe_type(hint)}, got {_type_name(value)} {value!r}"
        ) from None


_UNHANDLED: Any = object()  # a step's answer for a hint it does not handle

_SCALARS: dict[Any, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    Path: lambda v: isinstance(v, str),
}


def _convert(value: Any, hint: Any, path: tuple[str | int, ...]) -> Any:
    """Dispatch on the kind of hint; each step raises ``_Mismatch`` for a value that does
    not fit, or answers ``_UNHANDLED`` for a hint that is not its kind."""
    fits = _SCALARS.get(hint)
    if fits is not None:
        if not fits(value):
            raise _Mismatch
        return float(value) if hint is float else Path(value) if hint is Path else value
    for step in (_convert_typing, _convert_collection):
        result = step(value, hint, path)
        if result is not _UNHANDLED:
            return result
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    where = f"attribute {'.'.join(map(str, path))!r}: " if path else ""
    raise AttributeValueError(path, f"{where}unsupported field type {hint!r}")


def _convert_typing(value: Any, hint: Any, path: tuple[str | int, ...]) -> Any:
    """``Any``, ``None``, unions, literals, enums and nested attrs classes."""
    if hint is Any or hint is object:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _convert(value, arg, path)  # no message for the arms that do not fit
            except (_Mismatch, AttributeValueError):
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise _Mismatch
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise _Mismatch from None
    if isinstance(hint, type) and attrs.has(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch
        return construct(hint, value, path)
    return _UNHANDLED


def _convert_collection(value: Any, hint: Any, path: tuple[str | int, ...]) -> Any:
    """Lists, tuples (fixed and variadic), sets and mappings, item by item."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        container = origin or hint
        if not isinstance(value, list):
            raise _Mismatch
        if container is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],)
        if container is tuple and len(args) > 1:
            if len(value) != len(args):
                raise _Mismatch
            return tuple(
                convert_value(v, a, (*path, i))
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item = args[0] if args else Any
        return container(convert_value(v, item, (*path, i)) for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch
        key_hint, value_hint = args if args else (Any, Any)
        return {
            convert_value(k, key_hint, (*path, str(k))): convert_value(
                v, value_hint, (*path, str(k))
            )
            for k, v in value.items()
        }
    return _UNHANDLED


# the value types _convert returns unchanged whatever the value: a check of the type is the
# whole conversion (the hints of most attributes: str, int, bool, float, X | None, Any)
_SAMPLES: dict[type[Any], Any] = {str: "", int: 0, float: 0.0, bool: False, type(None): None}
_TYPE_DECIDED = frozenset([*_SAMPLES, Path, Any, object])  # hints that look at the type only


def _kept_types(hint: Any) -> frozenset[type[Any]]:
    """The value types ``hint`` keeps as they are (``str`` for ``str | None``, not ``int``
    for ``float``, which converts it). Other values, and every hint whose answer depends on
    more than a value's type (literals, enums, collections, attrs classes), go through
    :func:`convert_value`."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    arms = typing.get_args(hint) if union else (hint,)
    if not all(arm in _TYPE_DECIDED for arm in arms):
        return frozenset()
    kept = set()
    for kind, sample in _SAMPLES.items():
        try:
            if _convert(sample, hint, ()) is sample:
                kept.add(kind)
        except (_Mismatch, AttributeValueError):
            continue
    return frozenset(kept)


@attrs.frozen
class _Field:
    """One init field of an attrs class, as :func:`construct` checks it (by its alias)."""

    hint: Any
    required: bool
    kept_types: frozenset[type[Any]]
    keeps_any: bool  # ``Any``: every value as it is
    nested: type[Any] | None  # an attrs class, built from a mapping by construct()


_FIELDS: dict[type[Any], dict[str, _Field]] = {}


def _fields(cls: type[Any]) -> dict[str, _Field]:
    """The init fields (by alias) of an attrs class, with their hints, resolved once."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = {}
        for field in attrs.fields(cls):
            if field.init:
                hint = hints.get(field.name, Any)
                alias = field.alias or field.name
                required = field.default is attrs.NOTHING
                kept, keeps_any = _kept_types(hint), hint is Any or hint is object
                nested = hint if isinstance(hint, type) and attrs.has(hint) else None
                found[alias] = _Field(hint, required, kept, keeps_any, nested)
        _FIELDS[cls] = found  # whole: another thread never sees a class half resolved
    return found


def construct(cls: type[Any], values: Mapping[str, Any], path: tuple[str | int, ...] = ()) -> Any:
    """Build an attrs class from a mapping, checking unknown, missing and ill-typed fields."""
    fields = _fields(cls)
    for name in values:
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise AttributeValueError(
                (*path, str(name)), f"unknown attribute {name!r} (known attributes: {known})"
            )
    kwargs: dict[str, Any] = {}
    for alias, field in fields.items():
        if alias not in values:
            if field.required:
                raise AttributeValueError(
                    (*path, alias),
                    f"missing required attribute {alias!r} ({describe_type(field.hint)})",
                )
            continue
        value = values[alias]
        if field.keeps_any or type(value) in field.kept_types:  # the whole conversion
            kwargs[alias] = value
        elif field.nested is not None and type(value) is dict:  # e.g. every defs_state
            kwargs[alias] = construct(field.nested, value, (*path, alias))
        else:
            kwargs[alias] = convert_value(value, field.hint, (*path, alias))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise AttributeValueError(path, f"invalid attributes for {cls.__name__}: {exc}") from None


def check_key_parts(parts: Sequence[str], path: tuple[str | int, ...] = ("key_prefix",)) -> None:
    """Raise :class:`AttributeValueError` for a key part that is empty or contains ``/``
    (``key_prefix`` attributes: ``/`` separates parts in the text form of a key)."""
    for index, part in enumerate(parts):
        if not part or "/" in part:
            raise AttributeValueError(
                (*path, index), f"key parts must be non-empty, without '/': {part!r}"
            )
