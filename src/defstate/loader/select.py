"""Asset selections applied to a project: which assets, and which state keys define them."""

from __future__ import annotations

from pathlib import Path

import attrs

from defstate.definitions import Definitions
from defstate.loader.load import LoadResult, load_defs
from defstate.selection import AssetSelection


def select_from_load(result: LoadResult, selection: AssetSelection) -> LoadResult:
    """``result`` with only the selected assets and their checks (the pin and errors are
    kept whole)."""
    assets = selection.select(result.definitions.assets)
    keys = {spec.key for spec in assets}
    checks = [c for c in result.definitions.asset_checks if c.asset in keys]
    return attrs.evolve(result, definitions=Definitions(assets, checks))


def state_keys_for_selection(
    selection: AssetSelection, project_root: Path | str | None = None
) -> tuple[list[str], LoadResult]:
    """The state keys whose components define the selected assets, from the current state
    (nothing is refreshed, except what every load refreshes: code-server snapshots).

    A component without state yet defines no assets, so a selection cannot reach it: name
    its key instead.
    """
    result = load_defs(project_root, dev=False)
    keys_by_source = {
        instance.source: instance.state_key
        for instance in result.project.instances
        if instance.state_key is not None
    }
    selected = selection.resolve(result.definitions.assets)
    keys = {keys_by_source.get(result.asset_sources.get(key, "")) for key in selected}
    return sorted(k for k in keys if k is not None), result
