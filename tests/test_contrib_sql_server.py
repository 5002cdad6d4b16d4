"""DatabaseTablesComponent on a real PostgreSQL server, through SQLAlchemy's Inspector."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO_ROOT, ProjectFactory, run_cli, subprocess_env, write_files
from defstate import AssetKey, LoadResult, load_defs, refresh_state
from defstate.contrib.sql import DatabaseTablesComponent, load_state
from defstate.contrib.sqlalchemy import ServerUrl, ServerUrlError
from defstate.redaction import redact_url
from postgres_server import PostgresServer

pytestmark = pytest.mark.postgres

_NAMES = itertools.count()

SHOP_SQL = """
CREATE SCHEMA raw;
CREATE SCHEMA marts;
CREATE TABLE raw.customers (id integer PRIMARY KEY, name varchar(40) NOT NULL, email text);
COMMENT ON TABLE raw.customers IS 'One row per customer';
COMMENT ON COLUMN raw.customers.email IS 'Lower-cased';
CREATE TABLE raw.orders (
    id bigint, line integer, customer_id integer REFERENCES raw.customers (id),
    placed_at timestamp, amount numeric(10, 2), PRIMARY KEY (id, line)
);
CREATE TABLE marts.order_totals (
    order_id bigint, order_line integer, total numeric,
    FOREIGN KEY (order_id, order_line) REFERENCES raw.orders (id, line)
);
CREATE VIEW marts.big_orders AS SELECT * FROM raw.orders WHERE amount > 100;
CREATE MATERIALIZED VIEW marts.daily AS SELECT placed_at::date AS day, sum(amount) AS total
    FROM raw.orders GROUP BY 1;
INSERT INTO raw.customers SELECT g, 'c' || g, NULL FROM generate_series(1, 30) g;
INSERT INTO raw.orders SELECT g, 1, 1 + g % 30, now(), g FROM generate_series(1, 200) g;
ANALYZE raw.customers;
ANALYZE raw.orders;
"""


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with the shop schema; its name."""
    name = f"shop_{next(_NAMES)}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    postgres_server.execute(SHOP_SQL, database=name)
    yield name
    postgres_server.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _project(make_project: ProjectFactory, extra: str = "") -> Path:
    return make_project(
        {
            "defs/shop/defs.yaml": f"""
                type: defstate.contrib.sql.DatabaseTablesComponent
                attributes:
                  url: "postgresql+psycopg://postgres:{{{{ env.SHOP_PG_PASSWORD }}}}@127.0.0.1:{{{{ env.SHOP_PG_PORT }}}}/{{{{ env.SHOP_PG_DB }}}}"
                  group_name: shop
                  timeout: 20
                {extra}
            """
        }
    )


@pytest.fixture
def shop(
    make_project: ProjectFactory,
    postgres_server: PostgresServer,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("SHOP_PG_PASSWORD", postgres_server.password)
    monkeypatch.setenv("SHOP_PG_PORT", str(postgres_server.port))
    monkeypatch.setenv("SHOP_PG_DB", database)
    return _project(make_project)


def _ok(result: LoadResult) -> LoadResult:
    assert not result.errors, [str(e) for e in result.errors]
    return result


def _state_file(project: Path) -> Path:
    return next((project / "defs" / ".local_defs_state").rglob("state"))


def test_tables_views_materialized_views_keys_and_deps(shop: Path, database: str) -> None:
    result = _ok(load_defs(shop, dev=True))
    assert [r.key for r in result.refreshes] == [f"DatabaseTables[{database}]"]
    specs = {s.key.to_string(): s for s in result.definitions.assets}
    assert sorted(specs) == [
        "marts/big_orders",
        "marts/daily",
        "marts/order_totals",
        "raw/customers",
        "raw/orders",
    ]
    assert specs["raw/orders"].deps == (AssetKey(("raw", "customers")),)
    # a composite foreign key across schemas
    assert specs["marts/order_totals"].deps == (AssetKey(("raw", "orders")),)
    assert set(specs["raw/orders"].kinds) == {"postgres", "table"}
    assert set(specs["marts/big_orders"].kinds) == {"postgres", "view"}
    assert set(specs["marts/daily"].kinds) == {"postgres", "materialized_view"}
    assert {s.group_name for s in specs.values()} == {"shop"}


def test_columns_types_comments_primary_keys_and_row_estimates(shop: Path) -> None:
    specs = {s.key.to_string(): s for s in _ok(load_defs(shop, dev=True)).definitions.assets}
    customers = specs["raw/customers"]
    assert customers.description == "One row per customer"
    assert customers.metadata["columns"] == [
        {"name": "id", "type": "INTEGER", "nullable": False},
        {"name": "name", "type": "VARCHAR(40)", "nullable": False},
        {"name": "email", "type": "TEXT", "nullable": True, "comment": "Lower-cased"},
    ]
    assert customers.metadata["primary_key"] == ["id"]
    assert customers.metadata["row_count_estimate"] == 30
    orders = specs["raw/orders"].metadata
    assert orders["primary_key"] == ["id", "line"]
    assert [c["type"] for c in orders["columns"]] == [
        "BIGINT",
        "INTEGER",
        "INTEGER",
        "TIMESTAMP WITHOUT TIME ZONE",
        "NUMERIC(10, 2)",
    ]
    assert orders["row_count_estimate"] == 200
    assert "row_count" not in orders  # an estimate is never passed off as a count
    # never analysed (a table with no statistics) and views: unknown, not counted
    assert specs["marts/order_totals"].metadata["row_count_estimate"] is None
    assert specs["marts/big_orders"].metadata["row_count_estimate"] is None
    assert "primary_key" not in specs["marts/big_orders"].metadata


def test_row_counts_come_from_statistics_never_from_counting(
    shop: Path, postgres_server: PostgresServer, database: str
) -> None:
    # autovacuum is off: the statistics say 30 rows until the next ANALYZE, whatever count(*) says
    postgres_server.execute(
        "INSERT INTO raw.customers SELECT g, 'c' || g FROM generate_series(31, 40) g", database
    )
    state = load_state(_state_file(_after_refresh(shop)))
    customers = next(t for t in state["tables"] if t["name"] == "customers")
    assert customers["row_count"] == 30
    postgres_server.execute("ANALYZE raw.customers", database)
    state = load_state(_state_file(_after_refresh(shop)))
    assert next(t for t in state["tables"] if t["name"] == "customers")["row_count"] == 40


def _after_refresh(project: Path) -> Path:
    report = refresh_state(project)
    assert report.ok, report
    return project


def test_state_is_byte_stable_and_holds_no_credentials(
    shop: Path, postgres_server: PostgresServer, database: str
) -> None:
    first = _state_file(_after_refresh(shop)).read_bytes()
    assert _state_file(_after_refresh(shop)).read_bytes() == first
    state = json.loads(first)
    assert state["dialect"] == "postgresql"
    assert state["database"] == database
    assert state["row_counts"] == "estimate"
    text = first.decode()
    assert postgres_server.password not in text
    assert "127.0.0.1" not in text and str(postgres_server.port) not in text
    for record in (shop / "defs" / ".local_defs_state").rglob("record-*.json"):
        assert postgres_server.password not in record.read_text()


def test_loading_needs_only_the_state_not_the_server(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshed = _ok(load_defs(shop, dev=True)).definitions
    monkeypatch.setenv("SHOP_PG_PORT", "1")  # nothing listens there
    assert _ok(load_defs(shop)).definitions == refreshed


def test_wrong_password_fails_clearly_without_showing_it(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = _ok(load_defs(shop, dev=True)).definitions
    monkeypatch.setenv("SHOP_PG_PASSWORD", "Wrong-Pw-123")
    done = run_cli("state", "refresh", "--json", cwd=shop)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "password authentication failed" in output
    assert "postgresql+psycopg://postgres:***@127.0.0.1" in output
    assert "Wrong-Pw-123" not in output
    records = list((shop / "defs" / ".local_defs_state").rglob("record-*.json"))
    failed = [json.loads(r.read_text()) for r in records]
    assert any(r["status"] == "failed" for r in failed)
    assert all("Wrong-Pw-123" not in r.read_text() for r in records)
    assert _ok(load_defs(shop)).definitions == previous  # the previous state stays


def test_unreachable_server_is_a_failed_refresh_naming_the_url(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_PG_PASSWORD", "pw-not-shown")
    monkeypatch.setenv("SHOP_PG_PORT", "1")
    monkeypatch.setenv("SHOP_PG_DB", "nowhere")
    result = load_defs(_project(make_project), dev=True)
    (error,) = result.errors
    # every value from the environment is masked (the port "1" is too short to be a secret)
    assert "cannot read postgresql+psycopg://postgres:***@127.0.0.1:1/***" in str(error)
    assert "pw-not-shown" not in str(error)


def test_schemas_filter_and_views_left_out(shop: Path) -> None:
    yaml_path = shop / "defs" / "shop" / "defs.yaml"
    yaml_path.write_text(yaml_path.read_text() + "  schemas: [marts]\n  include_views: false\n")
    keys = {k.to_string() for k in _ok(load_defs(shop, dev=True)).definitions.asset_keys}
    assert keys == {"marts/order_totals"}


# --- URLs, without a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:pw1234@h/db", "SQLAlchemy calls this dialect 'postgresql'"),
        ("postgresql+psycopg://u:pw1234@h", "names no database"),
        ("postgresql+psycopg://u:pw1234@h:port/db", "invalid database URL"),
        ("Bad Scheme://u:pw1234@h/db", "unsupported database URL"),
    ],
)
def test_invalid_server_urls_are_reported_at_their_line_without_the_password(
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
    (error,) = load_defs(root).errors
    assert error.location is not None and error.location.line == 3
    assert expected in error.message
    assert "pw1234" not in str(error)


def test_server_url_parts_key_and_redaction() -> None:
    url = ServerUrl.parse("mysql+pymysql://app:p%40ss@db.internal:3306/sales?ssl_ca=/x.pem")
    assert (url.dialect, url.database) == ("mysql", "sales")
    assert url.shown == "mysql+pymysql://app:***@db.internal:3306/sales?ssl_ca=***"
    assert url.mask("denied: p@ss and p%40ss") == "denied: *** and ***"
    assert "p%40ss" not in repr(url)
    component = DatabaseTablesComponent(url="postgresql://u:secret@h/analytics")
    assert component.defs_state_key == "DatabaseTables[analytics]"
    assert "secret" not in repr(component)
    assert redact_url("no url at all") == "no url at all"
    with pytest.raises(ServerUrlError):
        ServerUrl.parse("postgresql://h/")


def test_loading_from_state_imports_no_sqlalchemy(shop: Path) -> None:
    _after_refresh(shop)
    code = (
        "import sys, defstate\n"
        "result = defstate.load_defs('.')\n"
        "assert result.ok and len(result.definitions.assets) == 5, result.errors\n"
        "loaded = [m for m in ('sqlalchemy', 'psycopg') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=shop, env=subprocess_env(), check=True, timeout=60
    )


def test_example_project(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = tmp_path / "postgres_tables"
    shutil.copytree(REPO_ROOT / "examples" / "postgres_tables", example)
    name = f"warehouse_{next(_NAMES)}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    postgres_server.execute((example / "warehouse.sql").read_text(), database=name)
    env = {
        "PGUSER": "postgres",
        "PGPASSWORD": postgres_server.password,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres_server.port),
        "PGDATABASE": name,
    }
    refreshed = run_cli("state", "refresh", cwd=example, env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert postgres_server.password not in refreshed.stdout + refreshed.stderr
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=example, env=env)
    assert listed.returncode == 0, listed.stderr
    assets = {a["key"]: a for a in json.loads(listed.stdout)["assets"]}
    assert sorted(assets) == [
        "marts/customer_revenue",
        "marts/daily_revenue",
        "marts/large_orders",
        "raw/customers",
        "raw/orders",
    ]
    assert assets["marts/customer_revenue"]["deps"] == ["raw/customers"]
    assert assets["raw/orders"]["metadata"]["row_count_estimate"] == 1000
    assert assets["raw/customers"]["description"].startswith("Customers, one row each")


def test_include_exclude_patterns_at_build_time_on_one_shared_state(
    shop: Path, database: str
) -> None:
    url = (shop / "defs" / "shop" / "defs.yaml").read_text().split("url: ")[1].splitlines()[0]
    entry = (
        "type: defstate.contrib.sql.DatabaseTablesComponent\nattributes:\n"
        f"  url: {url}\n  key_prefix: [PREFIX]\n"
    )
    write_files(
        shop,
        {
            "defs/orders_only/defs.yaml": entry.replace("PREFIX", "o") + '  include: ["*order*"]\n',
            "defs/no_raw/defs.yaml": entry.replace("PREFIX", "m")
            + '  exclude: ["raw.*", "daily"]\n  include_views: false\n',
        },
    )
    result = _ok(load_defs(shop, dev=True))
    assert [r.key for r in result.refreshes] == [f"DatabaseTables[{database}]"]  # one refresh
    keys = {k.to_string() for k in result.definitions.asset_keys}
    assert {k for k in keys if k.startswith("o/")} == {
        "o/raw/orders",
        "o/marts/order_totals",
        "o/marts/big_orders",
    }
    assert {k for k in keys if k.startswith("m/")} == {"m/marts/order_totals"}
    assert len(keys) == 5 + 3 + 1


def test_a_server_that_never_answers_times_out(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import time

    pytest.importorskip("psycopg")
    with socket.socket() as silent:  # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("SHOP_PG_PASSWORD", "pw-not-shown")
        monkeypatch.setenv("SHOP_PG_PORT", str(silent.getsockname()[1]))
        monkeypatch.setenv("SHOP_PG_DB", "silent")
        root = _project(make_project)
        yaml_path = root / "defs" / "shop" / "defs.yaml"
        yaml_path.write_text(yaml_path.read_text().replace("timeout: 20", "timeout: 1"))
        started = time.monotonic()
        (error,) = load_defs(root, dev=True).errors
        assert time.monotonic() - started < 30  # bounded by `timeout`, not by the OS
    assert "cannot read postgresql+psycopg://postgres:***@127.0.0.1:" in str(error)
    assert "timeout" in str(error).lower()
