"""Wording shared by everything that prints for people (the CLI, the dev server's log)."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 component``, ``2 components``, ``0 keys``."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {word}"
