"""Write what dagster-dbt's default translator makes of the ``fidelity`` dbt project.

Not run by ``make test`` (it needs dagster and dagster-dbt, which defstate does not depend
on). Regenerate the committed reference after changing the project::

    uv venv /tmp/ref && uv pip install --python /tmp/ref/bin/python dagster==1.13.27 \\
        dagster-dbt 'dbt-core>=1.11,<1.12' dbt-duckdb
    cp -r tests/dbt_projects/fidelity /tmp/fid && cd /tmp/fid && \\
        DBT_SEND_ANONYMOUS_USAGE_STATS=false /tmp/ref/bin/dbt deps --profiles-dir . && \\
        DBT_SEND_ANONYMOUS_USAGE_STATS=false /tmp/ref/bin/dbt parse --profiles-dir .
    cd /tmp/fid && /tmp/ref/bin/python $REPO/tests/dbt_projects/generate_dagster_dbt_reference.py \\
        target/manifest.json $REPO/tests/dbt_projects/fidelity_dagster_dbt.json

(run inside the project: dbt resolves ``path:`` selectors from the working directory).

Each case is one ``(select, exclude, selector)`` of ``@dbt_assets``: its asset specs, asset
check specs, and the specs of the sources its assets depend on, reduced to JSON.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from collections.abc import Mapping
from typing import Any

CASES: list[dict[str, Any]] = [
    {"select": "fqn:*", "exclude": "", "selector": ""},
    {"select": "fqn:*", "exclude": "", "selector": "", "source_tests_as_checks": True},
    {"select": "tag:nightly", "exclude": "", "selector": ""},
    {"select": "+orders", "exclude": "stg_payments", "selector": ""},
    {"select": "path:models/staging resource_type:seed", "exclude": "", "selector": ""},
    {"select": "config.materialized:view,tag:staging", "exclude": "", "selector": ""},
    {"select": "1+revenue", "exclude": "", "selector": ""},
    {"select": "@stg_orders", "exclude": "", "selector": ""},
    {"select": "package:util_pkg", "exclude": "", "selector": ""},
    {"select": "source:shop+", "exclude": "", "selector": ""},
    {"select": "stg_contacts+ raw_customers", "exclude": "", "selector": ""},
    {"select": "fidelity.marts.*", "exclude": "tag:nightly", "selector": ""},
    {"select": "", "exclude": "", "selector": "marts_and_parents"},
    {"select": "", "exclude": "", "selector": "only_seeds"},
]


def _metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    from dagster import TableSchema
    from dagster._core.definitions.metadata import MetadataValue

    result: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, MetadataValue):
            value = value.value
        if isinstance(value, TableSchema):
            value = {
                "columns": [
                    {
                        "name": c.name,
                        "type": c.type,
                        "description": c.description,
                        "tags": dict(c.tags),
                    }
                    for c in value.columns
                ]
            }
        if isinstance(value, (str, int, float, bool, dict, list)) or value is None:
            result[key] = value
    return result


def _spec(spec: Any) -> dict[str, Any]:
    return {
        "key": spec.key.to_user_string(),
        "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
        "description": spec.description,
        "group": spec.group_name,
        "owners": list(spec.owners),
        "tags": {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
        "kinds": sorted(spec.kinds),
        "code_version": spec.code_version,
        "metadata": _metadata(spec.metadata),
    }


def _check(check: Any) -> dict[str, Any]:
    return {
        "asset": check.asset_key.to_user_string(),
        "name": check.name,
        "description": check.description,
        "blocking": check.blocking,
        "additional_deps": sorted(d.asset_key.to_user_string() for d in check.additional_deps),
        "metadata": _metadata(check.metadata),
    }


def main(manifest_path: str, output_path: str) -> None:
    from dagster_dbt.asset_utils import build_dbt_specs
    from dagster_dbt.dagster_dbt_translator import (
        DagsterDbtTranslator,
        DagsterDbtTranslatorSettings,
    )

    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    cases = []
    for case in CASES:
        settings = DagsterDbtTranslatorSettings(
            enable_source_tests_as_checks=case.get("source_tests_as_checks", False)
        )
        translator = DagsterDbtTranslator(settings)
        specs, checks = build_dbt_specs(
            translator=translator,
            manifest=manifest,
            select=case["select"],
            exclude=case["exclude"],
            selector=case["selector"],
            io_manager_key=None,
            project=None,
        )
        source_ids = {
            parent
            for spec in specs
            for parent in manifest["parent_map"][spec.metadata["dagster_dbt/unique_id"]]
            if parent.startswith("source.")
        }
        sources = [_spec(translator.get_asset_spec(manifest, uid, None)) for uid in source_ids]
        cases.append(
            {
                **case,
                "assets": sorted((_spec(s) for s in specs), key=lambda s: s["key"]),
                "asset_checks": sorted(
                    (_check(c) for c in checks), key=lambda c: (c["asset"], c["name"])
                ),
                "sources": sorted(sources, key=lambda s: s["key"]),
            }
        )
    document = {
        "dagster_dbt_version": importlib.metadata.version("dagster-dbt"),
        "dbt_version": manifest["metadata"]["dbt_version"],
        "cases": cases,
    }
    with open(output_path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
