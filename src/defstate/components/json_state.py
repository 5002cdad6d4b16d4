"""Canonical JSON state files, for components whose state is one JSON document."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def dump_json_state(state: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, 2-space indent, trailing newline): equal state gives
    byte-identical files, so versions and checksums change only when the content does."""
    text = json.dumps(state, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def load_json_state(
    state_path: Path, *, state_format: str, what: str, error: type[Exception]
) -> dict[str, Any]:
    """Read a file written by :func:`dump_json_state` whose ``format`` is ``state_format``.

    Raises ``error`` naming the file and ``what`` it should hold, and asks for a refresh when
    the format is another one (state written by an older or newer component version).
    """
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} state {state_path}: {exc}") from None
    if not isinstance(state, dict):
        raise error(f"{what} state {state_path} is not a JSON object")
    found = state.get("format")
    if found != state_format:
        raise error(
            f"{state_path} is not {what} state in format {state_format!r} (found {found!r}); "
            "refresh it with `defstate state refresh`"
        )
    return state
