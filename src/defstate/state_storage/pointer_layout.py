"""Where versioned state keeps each key's latest pointer: the layout versions, and a local
cache of pointers read before.

Layout 1 (defstate before the marker existed) keeps a key's pointer inside the key's folder,
``<url>/<encoded key>/latest.json``: a load reads one object per key. Layout 2 keeps every
pointer under one prefix, ``<url>/_pointers.d/<encoded key>.json``, so that one listing
(1000 objects per page) returns each pointer's content token (S3 ETag, GCS generation, a
local file's inode, mtime and size) and only pointers whose token changed since the last
load are read. The marker ``<url>/_layout.json`` (``{"layout": 2}``) says a storage uses
layout 2; a storage without it is layout 1 and is read as such.

``_pointers.d`` and ``_layout.json`` contain a ``.``, which the key encoding always escapes,
so no key's folder can ever have these names.

``defstate state migrate-layout`` moves a layout-1 storage to layout 2 key by key: it copies
the pointer to its new place, then replaces the old one with a *tombstone* (a conditional
write, so a pointer moved meanwhile is copied again), and writes the marker last. Which of
the two objects is a key's pointer, at every moment, is decided by one rule
(``VersionedStateStorage._locate_pointer``), used by readers and writers alike.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import StateIntegrityError
from defstate.state_storage.cache import CachedEntries
from defstate.state_storage.keys import decode_key, encode_key

LAYOUT_MARKER_NAME = "_layout.json"
POINTERS_DIRNAME = "_pointers.d"
LEGACY_POINTER_NAME = "latest.json"
CURRENT_LAYOUT = 2
_POINTER_SUFFIX = ".json"
#: the fields of a pointer a load needs (the rest is for people and tools)
_VERSION_FIELDS = ("version", "created_at", "size", "sha256", "is_directory")


def pointer_name(key: str) -> str:
    """The layout-2 pointer of ``key``, relative to ``_pointers.d/``."""
    return "/".join(encode_key(key).parts) + _POINTER_SUFFIX


def key_of_pointer(name: str) -> str | None:
    """The key whose layout-2 pointer is ``name`` (relative to ``_pointers.d/``), or
    ``None`` for anything else found there (temporary files, locks)."""
    if not name.endswith(_POINTER_SUFFIX):
        return None
    with contextlib.suppress(ValueError):
        return decode_key(name[: -len(_POINTER_SUFFIX)])
    return None


def layout_marker(layout: int = CURRENT_LAYOUT) -> bytes:
    return json.dumps({"layout": layout}).encode() + b"\n"


def parse_layout(data: bytes | None, where: str) -> int:
    """The layout a marker's bytes declare (no marker: layout 1)."""
    if data is None:
        return 1
    try:
        layout = json.loads(data)["layout"]
        if not isinstance(layout, int) or isinstance(layout, bool) or layout < 1:
            raise ValueError(f"layout {layout!r} is not a positive integer")
    except (ValueError, KeyError, TypeError) as exc:
        raise StateIntegrityError(
            f"{where} is not a valid layout marker ({type(exc).__name__}: {exc}); it should "
            'read {"layout": 2}'
        ) from None
    if layout > CURRENT_LAYOUT:
        raise StateIntegrityError(
            f"{where} says layout {layout}, which this defstate cannot read (it knows layouts "
            f"1 to {CURRENT_LAYOUT}): upgrade defstate"
        )
    return layout


def tombstone(moved_to: str) -> bytes:
    """What replaces a layout-1 pointer once ``migrate-layout`` copied it. Not a manifest:
    a defstate that knows only layout 1 fails on it with a clear error instead of reading a
    stale version."""
    return json.dumps(
        {
            "moved_to_layout": CURRENT_LAYOUT,
            "pointer": moved_to,
            "note": "this key's latest pointer moved (see _layout.json, defstate state "
            "migrate-layout)",
        },
        indent=1,
    ).encode()


def is_tombstone(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and "moved_to_layout" in doc


def version_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pointer document a load needs (what the pointer cache keeps)."""
    return {name: doc.get(name) for name in _VERSION_FIELDS}


@attrs.frozen
class CachedPointer:
    """A pointer read before: the listing token it had, and its version fields."""

    token: str
    fields: Mapping[str, Any]


@attrs.frozen
class PointerCache:
    """``<download cache>/<storage id>/.pointers.json``: the pointers a previous load read,
    with the token each had, so an unchanged one need not be read again.

    Only a speed-up: a missing, damaged or unwritable cache means more reads, never a wrong
    answer or a failed load (a token changes whenever its object's content does).
    """

    path: Path

    def load(self) -> dict[str, CachedPointer]:
        found = {}
        for name, entry in CachedEntries(self.path, "pointers").load().items():
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and isinstance(entry[1], dict)
            ):
                found[name] = CachedPointer(entry[0], entry[1])
        return found

    def save(self, entries: Mapping[str, CachedPointer]) -> None:
        pointers = {n: [e.token, dict(e.fields)] for n, e in entries.items()}
        CachedEntries(self.path, "pointers").save(pointers)
