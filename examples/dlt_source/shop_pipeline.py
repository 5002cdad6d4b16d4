"""A small dlt source (generated data, no network) and the pipeline that loads it into DuckDB.

`python shop_pipeline.py` runs it: dlt creates the tables, infers the columns and unnests the
nested lists into child tables (`orders__items`, ...), and stores the schema with the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt

HERE = Path(__file__).resolve().parent


@dlt.source(name="shop")
def shop_source(orders: int = 20) -> Any:
    """Orders with nested line items, and customers."""

    @dlt.resource(
        name="orders",
        primary_key="id",
        write_disposition="merge",
        columns={"id": {"data_type": "bigint", "nullable": False, "description": "Order number"}},
    )
    def orders_resource() -> Iterator[dict[str, Any]]:
        for i in range(orders):
            yield {
                "id": i,
                "customer_id": i % 5,
                "items": [{"sku": f"sku-{j}", "quantity": j + 1} for j in range(i % 3 + 1)],
            }

    @dlt.resource(name="customers", primary_key="id", write_disposition="replace")
    def customers() -> Iterator[dict[str, Any]]:
        for i in range(5):
            yield {"id": i, "name": f"customer {i}", "tags": ["new"] if i % 2 else []}

    return orders_resource, customers


def run(base: Path = HERE) -> None:
    """Load the source into `shop.duckdb`; the pipeline's state goes to `.dlt_pipelines/`."""
    pipeline = dlt.pipeline(
        pipeline_name="shop",
        pipelines_dir=str(base / ".dlt_pipelines"),
        destination=dlt.destinations.duckdb(str(base / "shop.duckdb")),
        dataset_name="shop_data",
    )
    print(pipeline.run(shop_source()))


if __name__ == "__main__":
    run()
