"""Compact JSON text written piece by piece: for documents too large to build as dicts first.

Every function returns exactly what ``json.dumps(value, separators=(",", ":"))`` writes for
its argument (ASCII only, ``NaN`` allowed, keys in insertion order), and raises what it
raises. Plain strings, ``None``, booleans and integers are written here; anything else
(floats, nested containers, subclasses) goes to the standard encoder, so no JSON rule is
written twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

COMPACT = json.JSONEncoder(separators=(",", ":"), check_circular=False)
"""``json.dumps(value, separators=(",", ":"))`` without the check for reference cycles (a
lookup per container); a cycle still fails, with a ``RecursionError``."""

json_string = encode_basestring_ascii
"""A ``str`` as a JSON string (the standard library's C encoder)."""


def json_value(value: Any) -> str:
    """Any JSON-serialisable ``value``."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    return COMPACT.encode(value)


def json_array(values: Iterable[Any]) -> str:
    """A list or tuple of JSON-serialisable values."""
    if type(values) not in (list, tuple):
        return COMPACT.encode(values)  # json.dumps writes no other iterable
    return "[" + ",".join(map(json_value, values)) + "]"


def json_object(value: Any) -> str:
    """A dict with string keys and JSON-serialisable values (anything else: the encoder)."""
    if type(value) is not dict:
        return COMPACT.encode(value)
    if not value:
        return "{}"
    for key in value:
        if type(key) is not str:  # json.dumps converts numbers, booleans, None to text
            return COMPACT.encode(value)
    return (
        "{"
        + ",".join([f"{encode_basestring_ascii(k)}:{json_value(v)}" for k, v in value.items()])
        + "}"
    )
