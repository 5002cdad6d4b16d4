"""A state-backed component that turns an external table catalog into assets.

``external/catalog.json`` stands in for a slow API (an ingestion tool's connection list, a
warehouse's information schema): ``write_state_to_path`` fetches it and keeps only what the
definitions need; ``build_defs_from_state`` turns that into one asset per table.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from defstate import AssetSpec, ComponentLoadContext, Definitions, StateBackedComponent


@attrs.define(kw_only=True)
class CatalogComponent(StateBackedComponent):
    """One asset per table of a JSON catalog; ``upstream`` tables become deps."""

    catalog_path: str
    group_name: str = "catalog"

    def get_defs_state_key(self) -> str:
        return f"Catalog[{self.group_name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        catalog = json.loads(Path(self.catalog_path).read_text())
        tables = [
            {
                "schema": table["schema"],
                "name": table["name"],
                "description": table.get("description"),
                "upstream": sorted(table.get("upstream", [])),
                "owner": table.get("owner"),
                "columns": [c["name"] for c in table.get("columns", [])],
            }
            for table in catalog["tables"]
        ]
        state_path.write_text(json.dumps({"tables": tables}, indent=1, sort_keys=True))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:
            return Definitions()  # not refreshed yet: no assets, not an error
        tables = json.loads(state_path.read_text())["tables"]
        return Definitions(
            assets=[
                AssetSpec(
                    key=f"{t['schema']}/{t['name']}",
                    deps=t["upstream"],
                    description=t["description"],
                    group_name=self.group_name,
                    kinds=["table"],
                    owners=[t["owner"]] if t["owner"] else [],
                    metadata={"columns": t["columns"]},
                )
                for t in tables
            ]
        )
