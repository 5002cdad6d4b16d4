"""``include``/``exclude`` name patterns of the contrib components, applied at build time,
and the build step of components whose state is a list of tables (dlt, sql)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from defstate.definitions import AssetSpec, Definitions


def matches_any(names: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether one of ``patterns`` (``*``, ``?``, ``[...]``; case-sensitive) matches one of
    ``names`` (e.g. a table's name and its qualified ``schema.name``)."""
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def selected(names: Sequence[str], include: Sequence[str] | None, exclude: Sequence[str]) -> bool:
    """Included (no ``include`` list includes everything) and not excluded."""
    if include is not None and not matches_any(names, include):
        return False
    return not matches_any(names, exclude)


class TableSpecs(Protocol):
    """A module's ``asset_specs_from_state``: a state document (its ``tables`` narrowed to
    the selected ones) to asset specs."""

    def __call__(
        self,
        state: Mapping[str, Any],
        *,
        key_prefix: Sequence[str] = (),
        group_name: str | None = None,
    ) -> list[AssetSpec]: ...


def selected_tables_definitions(
    state_path: Path | None,
    *,
    load_state: Callable[[Path], Mapping[str, Any]],
    selects: Callable[[Mapping[str, Any]], bool],
    asset_specs: TableSpecs,
    key_prefix: Sequence[str],
    group_name: str | None,
) -> Definitions:
    """One asset per stored table that ``selects`` accepts; none without state. Instances
    sharing a key share the stored tables and differ in their filters."""
    if state_path is None:
        return Definitions()
    state = load_state(state_path)
    tables = [t for t in state["tables"] if selects(t)]
    specs = asset_specs({**state, "tables": tables}, key_prefix=key_prefix, group_name=group_name)
    return Definitions(assets=specs)
