"""DatabaseTablesComponent: real SQLite and DuckDB databases, introspected read-only."""

from __future__ import annotations

import hashlib
import json
import runpy
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, ProjectFactory, run_cli
from defstate import AssetKey, ComponentLoadContext, LoadResult, load_defs, refresh_state
from defstate.contrib import sql as sql_contrib
from defstate.contrib.sql import (
    STATE_FORMAT,
    DatabaseStateError,
    DatabaseTablesComponent,
    DatabaseUrl,
    DatabaseUrlError,
    load_state,
)

EXAMPLE = REPO_ROOT / "examples" / "sql_tables"
STATE_KEY = "DatabaseTables[warehouse]"


def _copy_example(destination: Path) -> Path:
    """The example project with its database built from ``warehouse.sql``."""
    shutil.copytree(
        EXAMPLE, destination, ignore=shutil.ignore_patterns("*.db", ".local_defs_state")
    )
    make_database = runpy.run_path(str(destination / "make_db.py"))["make_database"]
    make_database(destination / "warehouse.db", destination / "warehouse.sql")
    return destination


def _ok(result: LoadResult) -> LoadResult:
    assert not result.errors, [str(e) for e in result.errors]
    return result


def _context(root: Path) -> ComponentLoadContext:
    return ComponentLoadContext(
        project_root=root,
        defs_dir=root / "defs",
        component_dir=root / "defs" / "db",
        source="defs/db/defs.yaml:1",
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return _copy_example(tmp_path / "sql_tables")


# --- the example (SQLite) ----------------------------------------------------------------


def test_example_assets_deps_columns_and_row_counts(example: Path) -> None:
    database = example / "warehouse.db"
    before = _digest(database)
    result = _ok(load_defs(example, dev=True))
    assert [r.key for r in result.refreshes] == [STATE_KEY]

    defs = result.definitions
    assert sorted(k.to_string() for k in defs.asset_keys) == [
        "sqlite/main/customer_revenue",
        "sqlite/main/customers",
        "sqlite/main/order_items",
        "sqlite/main/orders",
        "sqlite/main/products",
    ]
    items = defs.get_asset("sqlite/main/order_items")
    assert sorted(d.to_string() for d in items.deps) == [
        "sqlite/main/orders",
        "sqlite/main/products",
    ]
    assert items.kinds == ("sqlite", "table")
    assert items.group_name == "warehouse"
    assert items.metadata == {
        "columns": [
            {"name": "order_id", "type": "INTEGER"},
            {"name": "product_id", "type": "INTEGER"},
            {"name": "quantity", "type": "INTEGER"},
        ],
        "row_count": 5,
    }
    orders = defs.get_asset("sqlite/main/orders")
    assert orders.deps == (AssetKey(("sqlite", "main", "customers")),)
    assert orders.metadata["row_count"] == 4
    assert [c["name"] for c in orders.metadata["columns"]] == [
        "id",
        "customer_id",
        "ordered_at",
        "status",
    ]
    assert defs.get_asset("sqlite/main/customers").deps == ()
    view = defs.get_asset("sqlite/main/customer_revenue")
    assert view.kinds == ("sqlite", "view")
    assert view.metadata["row_count"] == 3
    # read-only: refreshing never changes the database
    assert _digest(database) == before


def test_example_readme_commands(tmp_path: Path) -> None:
    root = tmp_path / "sql_tables"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("*.db", ".local_defs_state"))
    subprocess.run([sys.executable, "make_db.py"], cwd=root, check=True, timeout=60)
    refreshed = run_cli("state", "refresh", cwd=root)
    assert refreshed.returncode == 0, refreshed.stderr
    assert f"refreshed {STATE_KEY}" in refreshed.stdout
    listed = run_cli("list", "defs", "--json", "--no-refresh", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assets = json.loads(listed.stdout)["assets"]
    assert len(assets) == 5
    orders = next(a for a in assets if a["key"] == "sqlite/main/orders")
    assert orders["deps"] == ["sqlite/main/customers"]


def test_loading_needs_only_the_state_not_the_database(example: Path) -> None:
    refreshed = _ok(load_defs(example, dev=True)).definitions
    (example / "warehouse.db").unlink()
    loaded = _ok(load_defs(example)).definitions
    assert loaded == refreshed


def test_state_is_normalised_and_byte_stable(example: Path) -> None:
    report = refresh_state(example)
    assert report.ok, report
    state_file = next((example / "defs" / ".local_defs_state").rglob("state"))
    first = state_file.read_bytes()
    state = load_state(state_file)
    assert state["format"] == STATE_FORMAT
    assert state["dialect"] == "sqlite"
    assert state["database"] == "warehouse.db"  # no absolute path: state fits any machine
    assert [(t["schema"], t["name"]) for t in state["tables"]] == sorted(
        (t["schema"], t["name"]) for t in state["tables"]
    )
    order_items = next(t for t in state["tables"] if t["name"] == "order_items")
    assert order_items["foreign_keys"] == [
        {
            "columns": ["order_id"],
            "references": {"columns": ["id"], "schema": "main", "table": "orders"},
        },
        {
            "columns": ["product_id"],
            "references": {"columns": ["id"], "schema": "main", "table": "products"},
        },
    ]
    assert refresh_state(example).ok
    assert state_file.read_bytes() == first


def test_views_can_be_left_out_and_schemas_filtered(example: Path) -> None:
    yaml_path = example / "defs" / "warehouse" / "defs.yaml"
    text = yaml_path.read_text()
    yaml_path.write_text(text.replace("include_views: true", "include_views: false"))
    keys = {k.to_string() for k in _ok(load_defs(example, dev=True)).definitions.asset_keys}
    assert "sqlite/main/customer_revenue" not in keys
    assert len(keys) == 4

    yaml_path.write_text(text.replace("include_views: true", "schemas: [other]"))
    assert _ok(load_defs(example, dev=True)).definitions.assets == ()


# --- errors ------------------------------------------------------------------------------


def test_missing_database_file_is_a_clear_error_and_creates_nothing(example: Path) -> None:
    database = example / "warehouse.db"
    database.unlink()
    result = load_defs(example, dev=True)
    assert len(result.errors) == 1
    message = str(result.errors[0])
    assert f"database file {database} does not exist" in message
    assert "refresh failed" in message
    assert not database.exists()  # read-only: no empty database appears
    assert result.definitions.assets == ()


def test_missing_database_keeps_previous_state(example: Path) -> None:
    first = _ok(load_defs(example, dev=True)).definitions
    (example / "warehouse.db").unlink()
    result = load_defs(example, dev=True)
    assert any("does not exist" in str(e) for e in result.errors)
    assert result.definitions == first


def test_a_file_that_is_not_a_database_is_reported(example: Path) -> None:
    (example / "warehouse.db").write_bytes(b"not a database at all" * 10)
    result = load_defs(example, dev=True)
    assert len(result.errors) == 1
    assert "cannot read SQLite database" in str(result.errors[0])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://host/db", "unsupported database URL"),
        ("sqlite://host/x.db", "has a host part"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///:memory:", "names no database file"),
        ("sqlite:///x.db?mode=rw", "query parameters are not supported"),
    ],
)
def test_invalid_urls_are_reported_at_their_line(
    make_project: ProjectFactory, url: str, expected: str
) -> None:
    root = make_project(
        {
            "defs/db/defs.yaml": f"""
            type: defstate.contrib.sql.DatabaseTablesComponent
            attributes:
              url: "{url}"
            """
        }
    )
    result = load_defs(root)
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.location is not None and error.location.line == 3
    assert expected in error.message


def test_duckdb_url_without_duckdb_installed_is_a_clear_error(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_contrib, "duckdb_available", lambda: False)
    root = make_project(
        {
            "defs/db/defs.yaml": """
            type: defstate.contrib.sql.DatabaseTablesComponent
            attributes:
              url: duckdb:///w.duckdb
            """
        }
    )
    (error,) = load_defs(root).errors
    assert "needs the duckdb package" in error.message


def test_url_paths_relative_to_project_root_or_absolute(tmp_path: Path) -> None:
    context = _context(tmp_path)
    relative = DatabaseTablesComponent.from_attributes({"url": "sqlite:///data/w.db"}, context)
    assert relative.url == f"sqlite:///{tmp_path}/data/w.db"
    assert relative.database == DatabaseUrl("sqlite", tmp_path / "data" / "w.db")
    assert relative.defs_state_key == "DatabaseTables[w]"
    absolute = DatabaseTablesComponent.from_attributes({"url": "sqlite:////srv/x/w2.db"}, context)
    assert absolute.database.path == Path("/srv/x/w2.db")
    with pytest.raises(DatabaseUrlError):
        DatabaseUrl.parse("mysql://x")


def test_no_state_gives_empty_definitions(tmp_path: Path) -> None:
    component = DatabaseTablesComponent(url=f"sqlite:///{tmp_path}/none.db")
    assert component.build_defs_from_state(_context(tmp_path), None).assets == ()


def test_no_state_yet_loads_without_error(example: Path) -> None:
    result = _ok(load_defs(example))  # not dev: no refresh, no state
    assert result.definitions.assets == ()


def test_foreign_state_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text('{"format": "something/else"}')
    with pytest.raises(DatabaseStateError, match="refresh it with"):
        load_state(path)


def test_self_references_and_composite_keys(tmp_path: Path) -> None:
    database = tmp_path / "org.db"
    with sqlite3.connect(database) as connection:
        connection.executescript(
            '''
            CREATE TABLE people (id INTEGER PRIMARY KEY, manager_id INTEGER REFERENCES people (id));
            CREATE TABLE slots (day TEXT, room TEXT, PRIMARY KEY (day, room));
            CREATE TABLE "odd ""name""" (
                day TEXT, room TEXT, who INTEGER REFERENCES people,
                FOREIGN KEY (day, room) REFERENCES slots (day, room)
            );
            CREATE VIEW broken AS SELECT * FROM does_not_exist;
            '''
        )
    connection.close()
    component = DatabaseTablesComponent(url=f"sqlite:///{database}")
    state_path = tmp_path / "state"
    component.write_state_to_path(state_path)
    defs = component.build_defs_from_state(_context(tmp_path), state_path)
    assert defs.get_asset("main/people").deps == ()  # no dep on itself
    odd = defs.get_asset(AssetKey(("main", 'odd "name"')))
    assert sorted(d.to_string() for d in odd.deps) == ["main/people", "main/slots"]
    assert defs.get_asset("main/broken").metadata["row_count"] is None
    fks = next(t for t in load_state(state_path)["tables"] if t["name"] == 'odd "name"')[
        "foreign_keys"
    ]
    assert {
        "columns": ["day", "room"],
        "references": {"schema": "main", "table": "slots", "columns": ["day", "room"]},
    } in fks
    # `REFERENCES people` names no column: the primary key is implied
    assert {
        "columns": ["who"],
        "references": {"schema": "main", "table": "people", "columns": []},
    } in fks


# --- DuckDB ------------------------------------------------------------------------------


def _make_duckdb(path: Path) -> None:
    duckdb: Any = pytest.importorskip("duckdb")
    connection = duckdb.connect(str(path))
    try:
        connection.execute(
            """
            CREATE SCHEMA raw;
            CREATE SCHEMA marts;
            CREATE TABLE raw.customers (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL);
            CREATE TABLE raw.orders (
                id INTEGER PRIMARY KEY,
                customer_id INTEGER REFERENCES raw.customers (id),
                amount DECIMAL(10, 2)
            );
            INSERT INTO raw.customers VALUES (1, 'Ada'), (2, 'Grace');
            INSERT INTO raw.orders VALUES (10, 1, 9.5), (11, 1, 3), (12, 2, 7.25);
            CREATE TABLE marts.revenue AS
                SELECT customer_id, sum(amount) AS total FROM raw.orders GROUP BY 1;
            CREATE VIEW marts.big_orders AS SELECT * FROM raw.orders WHERE amount > 5;
            """
        )
    finally:
        connection.close()


def test_duckdb_database(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/lake/defs.yaml": """
            type: defstate.contrib.sql.DatabaseTablesComponent
            attributes:
              url: duckdb:///lake.duckdb
              key_prefix: [lake]
              group_name: lake
            """
        }
    )
    database = root / "lake.duckdb"
    _make_duckdb(database)
    before = _digest(database)
    result = _ok(load_defs(root, dev=True))
    assert [r.key for r in result.refreshes] == ["DatabaseTables[lake]"]
    defs = result.definitions
    assert sorted(k.to_string() for k in defs.asset_keys) == [
        "lake/marts/big_orders",
        "lake/marts/revenue",
        "lake/raw/customers",
        "lake/raw/orders",
    ]
    orders = defs.get_asset("lake/raw/orders")
    assert orders.deps == (AssetKey(("lake", "raw", "customers")),)
    assert orders.kinds == ("duckdb", "table")
    assert orders.group_name == "lake"
    assert orders.metadata == {
        "columns": [
            {"name": "id", "type": "INTEGER"},
            {"name": "customer_id", "type": "INTEGER"},
            {"name": "amount", "type": "DECIMAL(10,2)"},
        ],
        "row_count": 3,
    }
    view = defs.get_asset("lake/marts/big_orders")
    assert view.kinds == ("duckdb", "view")
    assert view.metadata["row_count"] == 2
    assert defs.get_asset("lake/marts/revenue").metadata["row_count"] == 2
    assert _digest(database) == before


def test_duckdb_schema_filter_and_missing_file(tmp_path: Path) -> None:
    database = tmp_path / "lake.duckdb"
    _make_duckdb(database)
    component = DatabaseTablesComponent(
        url=f"duckdb:///{database}", schemas=["raw"], include_views=False
    )
    state_path = tmp_path / "state"
    component.write_state_to_path(state_path)
    keys = component.build_defs_from_state(_context(tmp_path), state_path).asset_keys
    assert [k.to_string() for k in keys] == ["raw/customers", "raw/orders"]

    missing = DatabaseTablesComponent(url=f"duckdb:///{tmp_path}/nope.duckdb")
    with pytest.raises(sql_contrib.DatabaseNotFoundError, match=r"nope\.duckdb does not exist"):
        missing.write_state_to_path(tmp_path / "other")
    assert not (tmp_path / "nope.duckdb").exists()


def test_two_instances_on_one_database_share_a_key_and_filter_at_build_time(
    make_project: ProjectFactory,
) -> None:
    root = make_project({})
    _make_duckdb(root / "lake.duckdb")
    for name, extra in (
        ("raw", "schemas: [raw]"),
        ("marts", "schemas: [marts]\n  include_views: false"),
    ):
        path = root / "defs" / name / "defs.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(
            "type: defstate.contrib.sql.DatabaseTablesComponent\nattributes:\n"
            f"  url: duckdb:///lake.duckdb\n  {extra}\n  key_prefix: [{name}_instance]\n"
        )
    report = refresh_state(root)
    assert report.ok
    assert [r.key for r in report.results] == ["DatabaseTables[lake]"]  # one key, one refresh
    result = _ok(load_defs(root))
    by_source: dict[str, list[str]] = {}
    for spec in result.definitions.assets:
        by_source.setdefault(result.asset_sources[spec.key], []).append(spec.key.to_string())
    assert sorted(by_source["defs/raw/defs.yaml:1"]) == [
        "raw_instance/raw/customers",
        "raw_instance/raw/orders",
    ]
    assert by_source["defs/marts/defs.yaml:1"] == ["marts_instance/marts/revenue"]


# --- cheap import ------------------------------------------------------------------------


def test_import_does_not_load_database_drivers() -> None:
    code = (
        "import sys, defstate.contrib.sql\n"
        "loaded = [m for m in ('sqlite3', 'duckdb', 'sqlalchemy', 'psycopg') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
