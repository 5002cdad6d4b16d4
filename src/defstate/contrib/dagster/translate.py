"""defstate's definitions as Dagster objects (public Dagster API only)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from defstate.definitions import AssetCheckSpec, AssetKey, AssetSpec
from defstate.errors import DefstateError


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
        code_version=spec.code_version,
    )


def dagster_check_spec(check: AssetCheckSpec) -> dg.AssetCheckSpec:
    """One defstate asset check as a Dagster ``AssetCheckSpec``."""
    return dg.AssetCheckSpec(
        name=check.name,
        asset=dagster_key(check.asset),
        description=check.description,
        blocking=check.blocking,
        additional_deps=[dagster_key(dep) for dep in check.additional_deps],
        metadata=dagster_metadata(check.metadata),
    )


class CheckNotExecutableError(DefstateError):
    """A defstate asset check was run in Dagster, which has no code to run it."""


def dagster_asset_checks(
    checks: list[AssetCheckSpec], op_name: str
) -> list[dg.AssetChecksDefinition]:
    """The checks as one Dagster checks definition named ``op_name``.

    defstate describes checks; running them is Dagster's job and needs code defstate does not
    have (dagster-dbt's ``dbt build``, for example). Executing these raises a clear error.
    """
    if not checks:
        return []
    specs = [dagster_check_spec(check) for check in checks]

    @dg.multi_asset_check(specs=specs, can_subset=True, name=op_name)
    def defstate_checks() -> Iterator[dg.AssetCheckResult]:  # a generator: several outputs
        raise CheckNotExecutableError(
            "these asset checks come from a defstate project: defstate describes them, but "
            "has no code to run them in Dagster. Run them with the tool that owns them (e.g. "
            "dagster-dbt for dbt tests) or report results through Dagster's API"
        )
        yield

    return [defstate_checks]
