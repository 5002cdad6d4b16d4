"""Dotted field paths into JSON documents (``stats.rows``, ``owners.0``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What :func:`lookup` returns for a path that is not in the document."""


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` (numbers index lists), or :data:`MISSING`."""
    value = document
    for segment in path.split("."):
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value


def is_field_path(path: str) -> bool:
    """Whether ``path`` is a dotted path of non-empty segments."""
    return bool(path) and all(path.split("."))


def json_type(value: Any) -> str:
    """``an object``, ``a list``, ``a string``, ... for messages."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")
