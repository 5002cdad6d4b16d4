"""defstate's definitions as Dagster objects (public Dagster API only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from defstate.definitions import AssetKey, AssetSpec


def dagster_key(key: AssetKey) -> dg.AssetKey:
    return dg.AssetKey(list(key.path))


def dagster_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """defstate's JSON metadata as Dagster metadata: plain values stay plain (Dagster wraps
    them), ``dagster/column_schema`` becomes the ``TableSchema`` Dagster expects."""
    schema = metadata.get("dagster/column_schema")
    if schema is None:
        return dict(metadata)
    columns = [
        dg.TableColumn(
            name=column["name"],
            type=column.get("type") or "string",
            description=column.get("description"),
        )
        for column in schema["columns"]
    ]
    return {**metadata, "dagster/column_schema": dg.TableSchema(columns=columns)}


def dagster_asset_spec(spec: AssetSpec) -> dg.AssetSpec:
    """One defstate asset as a Dagster ``AssetSpec`` (key, deps, group, owners, tags, kinds,
    metadata, description). ``spec`` must satisfy :mod:`defstate.contrib.dagster.rules`."""
    return dg.AssetSpec(
        key=dagster_key(spec.key),
        deps=[dagster_key(dep) for dep in spec.deps],
        description=spec.description,
        group_name=spec.group_name,
        owners=list(spec.owners),
        tags=dict(spec.tags),
        kinds=set(spec.kinds),
        metadata=dagster_metadata(spec.metadata),
    )
