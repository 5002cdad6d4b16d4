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


class TableSelection(Protocol):
    """What a table-catalog component decides at build time: which stored tables it keeps,
    and the prefix and group of their asset keys."""

    @property
    def key_prefix(self) -> Sequence[str]: ...

    @property
    def group_name(self) -> str | None: ...

    def selects(self, table: Mapping[str, Any]) -> bool: ...


def selected_tables_definitions(
    component: TableSelection,
    state_path: Path | None,
    load_state: Callable[[Path], Mapping[str, Any]],
    asset_specs: TableSpecs,
) -> Definitions:
    """One asset per stored table ``component`` selects; none without state. Instances
    sharing a key share the stored tables and differ in their filters."""
    if state_path is None:
        return Definitions()
    state = load_state(state_path)
    tables = [t for t in state["tables"] if component.selects(t)]
    specs = asset_specs(
        {**state, "tables": tables},
        key_prefix=component.key_prefix,
        group_name=component.group_name,
    )
    return Definitions(assets=specs)
