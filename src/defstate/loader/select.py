"""Asset selections applied to a project: which assets, and which state keys define them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.definitions import Definitions
from defstate.loader.load import LoadResult, load_defs
from defstate.selection import AssetSelection
from defstate.state_storage.state_info import StateInfo


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


def modified_since(result: LoadResult, previous: Mapping[str, Any]) -> LoadResult:
    """``result`` with only the assets that are new or whose definition changed since
    ``previous``, like dbt's ``state:modified``.

    ``previous`` is a saved ``list defs --json`` document: its assets are compared as saved
    (so code changes count). A bare pin (only ``state``) is reconstructed instead: the assets
    the current code builds from the pinned state versions.
    """
    if "assets" in previous:
        before = {a["key"]: _comparable(a) for a in previous["assets"]}
    else:
        pin = StateInfo.from_json_dict(previous)
        pinned = load_defs(result.project.config.root, state_info=pin)
        before = {
            s.key.to_string(): _comparable(s.to_json_dict()) for s in pinned.definitions.assets
        }
    changed = [
        spec
        for spec in result.definitions.assets
        if before.get(spec.key.to_string()) != _comparable(spec.to_json_dict())
    ]
    keys = {spec.key for spec in changed}
    checks = [c for c in result.definitions.asset_checks if c.asset in keys]
    return attrs.evolve(result, definitions=Definitions(changed, checks))


def _comparable(asset: Mapping[str, Any]) -> dict[str, Any]:
    # where an asset is defined (file:line) is not part of its definition
    return {k: v for k, v in asset.items() if k != "component"}
