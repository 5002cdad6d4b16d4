"""``include``/``exclude`` name patterns of the contrib components, applied at build time."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def matches_any(names: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether one of ``patterns`` (``*``, ``?``, ``[...]``; case-sensitive) matches one of
    ``names`` (e.g. a table's name and its qualified ``schema.name``)."""
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def selected(names: Sequence[str], include: Sequence[str] | None, exclude: Sequence[str]) -> bool:
    """Included (no ``include`` list includes everything) and not excluded."""
    if include is not None and not matches_any(names, include):
        return False
    return not matches_any(names, exclude)
