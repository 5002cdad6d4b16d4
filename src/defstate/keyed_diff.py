"""What changed between two collections keyed by name: the one asset/check diff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class KeyedChanges(NamedTuple):
    """Names added, removed and changed (equal name, different value), each sorted."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


def diff_by_key(before: Mapping[str, Any], after: Mapping[str, Any]) -> KeyedChanges:
    """Compare two ``{name: value}`` mappings (e.g. assets by key, as JSON documents)."""
    return KeyedChanges(
        tuple(sorted(after.keys() - before.keys())),
        tuple(sorted(before.keys() - after.keys())),
        tuple(sorted(k for k in after.keys() & before.keys() if after[k] != before[k])),
    )
