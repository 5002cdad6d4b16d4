"""DltSourceComponent: a real dlt source, discovered and run offline into DuckDB."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, ProjectFactory, subprocess_env
from defstate import AssetKey, LoadResult, load_defs, refresh_state
from defstate.contrib.dlt import STATE_FORMAT, DltSourceComponent, load_state

pytest.importorskip("dlt", reason="dlt is not installed (pip install 'defstate[dlt]')")

_MODULES = itertools.count()

SOURCE = """
import dlt


@dlt.source(name="shop")
def shop_source(orders: int = 3):
    @dlt.resource(
        primary_key="id",
        write_disposition="merge",
        columns={"id": {"data_type": "bigint", "nullable": False, "description": "Order id"}},
    )
    def orders_resource():
        for i in range(orders):
            yield {
                "id": i,
                "customer": {"name": f"c{i}", "tags": ["new", "vip"]},
                "items": [{"sku": "x", "qty": i, "parts": [{"part": 1}]}],
            }

    @dlt.resource(name="customers", write_disposition="replace")
    def customers():
        yield {"cid": 1, "name": "x"}

    return orders_resource.with_name("orders"), customers


not_a_source = 42


@dlt.resource(name="events", write_disposition="append", primary_key="event_id")
def events(days: int = 1):
    yield {"event_id": 1, "day": days}
"""


@pytest.fixture(autouse=True)
def _dlt_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))


def _shop(make_project: ProjectFactory, attributes: str) -> tuple[Path, str]:
    """A project with a dlt source module of a fresh name; (root, module name)."""
    module = f"shop_sources_{next(_MODULES)}"
    root = make_project(
        {
            f"{module}.py": SOURCE,
            "defs/shop/defs.yaml": "type: defstate.contrib.dlt.DltSourceComponent\n"
            "attributes:\n" + attributes.format(module=module),
        }
    )
    return root, module


def _ok(result: LoadResult) -> LoadResult:
    assert not result.errors, [str(e) for e in result.errors]
    return result


def _state_file(project: Path) -> Path:
    return next((project / "defs" / ".local_defs_state").rglob("state"))


@pytest.fixture(scope="module")
def pipelines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real dlt pipeline run of the source into DuckDB, once for the module; its folder."""
    import importlib.util

    import dlt

    base = tmp_path_factory.mktemp("dlt_run")
    (base / "shop_run_source.py").write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("shop_run_source", base / "shop_run_source.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dlt reflects on the source function's module
    spec.loader.exec_module(module)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
        patch.setenv("DLT_DATA_DIR", str(base / "dlt_data"))
        pipeline = dlt.pipeline(
            pipeline_name="shop",
            pipelines_dir=str(base / "pipelines"),
            destination=dlt.destinations.duckdb(str(base / "shop.duckdb")),
            dataset_name="shop_data",
        )
        pipeline.run(module.shop_source())
    return base / "pipelines"


def test_discovered_source_tables_columns_and_write_dispositions(
    make_project: ProjectFactory,
) -> None:
    root, module = _shop(make_project, "  source: {module}:shop_source\n  group_name: ingest\n")
    result = _ok(load_defs(root, dev=True))
    assert [r.key for r in result.refreshes] == [f"DltSource[{module}:shop_source]"]
    specs = {s.key.to_string(): s for s in result.definitions.assets}
    assert sorted(specs) == ["shop/customers", "shop/orders"]  # nothing ran: no nested tables
    orders = specs["shop/orders"]
    assert orders.kinds == ("dlt",) or set(orders.kinds) == {"dlt"}
    assert orders.group_name == "ingest"
    assert orders.metadata["write_disposition"] == "merge"
    assert orders.metadata["columns"] == [
        {"name": "id", "data_type": "bigint", "nullable": False, "primary_key": True,
         "description": "Order id"}
    ]  # fmt: skip
    assert specs["shop/customers"].metadata["write_disposition"] == "replace"
    state = load_state(_state_file(root))
    assert state["format"] == STATE_FORMAT and state["origin"] == "source"
    assert state["schema"] == "shop"


@pytest.mark.parametrize("args", ["", "  source_args: {{days: 3}}\n"])
def test_a_resource_is_a_source_of_its_own(make_project: ProjectFactory, args: str) -> None:
    root, _ = _shop(make_project, "  source: {module}:events\n" + args)
    (spec,) = _ok(load_defs(root, dev=True)).definitions.assets
    assert spec.key == AssetKey(("events", "events"))
    assert spec.metadata["write_disposition"] == "append"


def test_pipeline_schema_has_nested_tables_with_parent_deps(
    make_project: ProjectFactory, pipelines_dir: Path
) -> None:
    root, _ = _shop(
        make_project,
        f"  pipeline_name: shop\n  pipelines_dir: {pipelines_dir}\n  key_prefix: [dlt]\n",
    )
    result = _ok(load_defs(root, dev=True))
    assert [r.key for r in result.refreshes] == ["DltPipeline[shop]"]
    specs = {s.key.to_string(): s for s in result.definitions.assets}
    assert sorted(specs) == [
        "dlt/shop/customers",
        "dlt/shop/orders",
        "dlt/shop/orders__customer__tags",
        "dlt/shop/orders__items",
        "dlt/shop/orders__items__parts",
    ]
    assert specs["dlt/shop/orders__items"].deps == (AssetKey(("dlt", "shop", "orders")),)
    parts = specs["dlt/shop/orders__items__parts"]
    assert parts.deps == (AssetKey(("dlt", "shop", "orders__items")),)
    assert parts.metadata["write_disposition"] == "merge"  # inherited from the root table
    assert parts.metadata["resource"] == "orders"
    assert parts.metadata["parent"] == "orders__items"
    assert set(parts.kinds) == {"dlt", "duckdb"}
    orders_columns = [c["name"] for c in specs["dlt/shop/orders"].metadata["columns"]]
    assert orders_columns[:2] == ["id", "customer__name"]  # inferred by the run
    state = load_state(_state_file(root))
    assert (state["origin"], state["destination"], state["dataset"]) == (
        "pipeline",
        "duckdb",
        "shop_data",
    )
    assert not any(t["name"].startswith("_dlt") for t in state["tables"])

    first = _state_file(root).read_bytes()
    assert refresh_state(root).ok
    assert _state_file(root).read_bytes() == first  # unchanged schema: identical bytes


def test_filters_apply_at_build_time_on_one_shared_state(make_project: ProjectFactory) -> None:
    module = f"shop_sources_{next(_MODULES)}"
    entry = (
        "type: defstate.contrib.dlt.DltSourceComponent\nattributes:\n"
        f"  source: {module}:shop_source\n  key_prefix: [{{prefix}}]\n"
        "  defs_state: {{key: shop-schema}}\n"
    )
    root = make_project(
        {
            f"{module}.py": SOURCE,
            "defs/all/defs.yaml": entry.format(prefix="all"),
            "defs/orders/defs.yaml": entry.format(prefix="only") + '  include: ["ord*"]\n',
            "defs/rest/defs.yaml": entry.format(prefix="rest") + '  exclude: ["orders"]\n',
        }
    )
    result = _ok(load_defs(root, dev=True))
    assert len(result.refreshes) == 1  # one key, one refresh: filters are not in the state
    keys = sorted(k.to_string() for k in result.definitions.asset_keys)
    assert keys == [
        "all/shop/customers",
        "all/shop/orders",
        "only/shop/orders",
        "rest/shop/customers",
    ]


def test_include_nested_false_keeps_root_tables(
    make_project: ProjectFactory, pipelines_dir: Path
) -> None:
    root, _ = _shop(
        make_project,
        f"  pipeline_name: shop\n  pipelines_dir: {pipelines_dir}\n  include_nested: false\n",
    )
    keys = {k.to_string() for k in _ok(load_defs(root, dev=True)).definitions.asset_keys}
    assert keys == {"shop/customers", "shop/orders"}


@pytest.mark.parametrize(
    ("attributes", "expected", "line"),
    [
        ("  group_name: x\n", "name a dlt source (source: module:attribute) or a pipeline_name", 2),
        ("  source: not a path\n", "expected module:attribute", 3),
        ("  pipeline_name: p\n  source_args: {{a: 1}}\n", "source_args needs a source", 4),
        ("  source: m:s\n  key_prefix: ['a/b']\n", "key parts must be non-empty", 4),
    ],
)
def test_bad_attributes_are_reported_at_their_line(
    make_project: ProjectFactory, attributes: str, expected: str, line: int
) -> None:
    root, _ = _shop(make_project, attributes)
    (error,) = load_defs(root).errors
    assert expected in error.message
    assert error.location is not None and error.location.line == line


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("  source: {module}:missing\n", "cannot import dlt source"),
        ("  source: {module}:not_a_source\n", "is int, not a dlt source"),
        ("  source: {module}:shop_source\n  source_args: {{nope: 1}}\n", "cannot call dlt source"),
        ("  pipeline_name: never_ran\n  pipelines_dir: pipelines\n", "never_ran"),
    ],
)
def test_refresh_errors_are_clear(
    make_project: ProjectFactory, attributes: str, expected: str
) -> None:
    root, _ = _shop(make_project, attributes)
    (error,) = load_defs(root, dev=True).errors
    assert expected in str(error)


def test_loading_from_state_imports_neither_dlt_nor_the_source(
    make_project: ProjectFactory,
) -> None:
    root, module = _shop(make_project, "  source: {module}:shop_source\n")
    assert refresh_state(root).ok
    code = (
        "import sys, defstate\n"
        "result = defstate.load_defs('.')\n"
        "assert result.ok and len(result.definitions.assets) == 2, result.errors\n"
        f"loaded = [m for m in ('dlt', {module!r}) if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=subprocess_env(), check=True, timeout=60
    )


def test_no_state_gives_empty_definitions(tmp_path: Path) -> None:
    component: Any = DltSourceComponent(source="m:s")
    assert component.build_defs_from_state(None, None).assets == ()
    assert component.defs_state_key == "DltSource[m:s]"


def test_default_keys_differ_where_the_stored_schema_would() -> None:
    def key(**attributes: Any) -> str:
        return str(DltSourceComponent(**attributes).defs_state_key)

    # arguments and schemas decide what is stored; filters (include, ...) do not
    assert key(source="m:s", include=["a*"]) == "DltSource[m:s]"
    first, second = (
        key(source="m:s", source_args={"api_key": "k-1"}),
        key(source="m:s", source_args={"api_key": "k-2"}),
    )
    assert first.startswith("DltSource[m:s,args=") and first != second
    assert "k-1" not in first
    assert key(source="m:s", source_args={"a": 1, "b": 2}) == key(
        source="m:s", source_args={"b": 2, "a": 1}
    )
    assert key(pipeline_name="shop") == "DltPipeline[shop]"
    assert key(pipeline_name="shop", schema_name="other") == "DltPipeline[shop,schema=other]"


def test_example_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import shutil

    example = tmp_path / "dlt_source"
    shutil.copytree(REPO_ROOT / "examples" / "dlt_source", example)
    spec = importlib.util.spec_from_file_location("shop_pipeline", example / "shop_pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shop_pipeline", module)
    spec.loader.exec_module(module)
    module.run(example)  # the README's `python shop_pipeline.py`, in this process
    result = _ok(load_defs(example, dev=True))
    assert sorted(r.key for r in result.refreshes) == [
        "DltPipeline[shop]",
        "DltSource[shop_pipeline:shop_source,args=882d88ca]",
    ]
    keys = sorted(k.to_string() for k in result.definitions.asset_keys)
    assert keys == [
        "declared/shop/customers",
        "declared/shop/orders",
        "shop/customers",
        "shop/orders",
        "shop/orders__items",
    ]  # customers__tags is excluded at build time
    items = result.definitions.get_asset("shop/orders__items")
    assert items.deps == (AssetKey(("shop", "orders")),)
    assert items.group_name == "shop"
