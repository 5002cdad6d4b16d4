"""DbtProjectComponent: real ``dbt parse`` runs (slow) and the manifest-to-assets mapping."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, ProjectFactory, run_cli
from defstate import AssetKey, ComponentLoadContext, TerminalRefreshError, load_defs, refresh_state
from defstate.contrib import dbt as dbt_contrib
from defstate.contrib.dbt import (
    STATE_FORMAT,
    DbtParseError,
    DbtProjectComponent,
    DbtStateError,
    asset_specs_from_state,
    dbt_parse_command,
    dump_state,
    load_state,
    summarize_dbt_output,
    trim_manifest,
)
from defstate.errors import AttributeValueError

EXAMPLE = REPO_ROOT / "examples" / "dbt_project"


def _context(root: Path) -> ComponentLoadContext:
    return ComponentLoadContext(
        project_root=root,
        defs_dir=root / "defs",
        component_dir=root / "defs" / "dbt",
        source="defs/dbt/defs.yaml:1",
    )


def _tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its mtime: shows whether anything wrote there."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _copy_example(destination: Path) -> Path:
    # A developer may have run dbt in the example: its output is no part of the project.
    ignore = shutil.ignore_patterns("target", "logs", "*.duckdb*", "dbt_packages")
    shutil.copytree(EXAMPLE, destination, ignore=ignore)
    return destination


@pytest.fixture(scope="module")
def example_tree_before() -> dict[str, int]:
    return _tree(EXAMPLE)


@pytest.fixture(scope="module")
def example_state(
    tmp_path_factory: pytest.TempPathFactory, example_tree_before: dict[str, int]
) -> Path:
    """The bundled example refreshed once; shared because each ``dbt parse`` takes seconds."""
    path = tmp_path_factory.mktemp("example") / "state"
    DbtProjectComponent(project_dir=str(EXAMPLE)).write_state_to_path(path)
    return path


# --- real dbt ----------------------------------------------------------------------------


@pytest.mark.slow
def test_refresh_writes_trimmed_state_without_volatile_fields(example_state: Path) -> None:
    text = example_state.read_text(encoding="utf-8")
    state = json.loads(text)
    assert state["format"] == STATE_FORMAT
    assert state["project_name"] == "shop"
    assert state["adapter_type"] == "duckdb"
    assert {n["name"] for n in state["nodes"].values()} == {
        "stg_customers",
        "stg_orders",
        "stg_payments",
        "customers",
        "orders",
        "daily_revenue",
        "raw_customers",
        "raw_orders",
        "raw_payments",
        "customers_snapshot",
    }
    assert set(state["sources"]) == {
        "source.shop.shop_raw.customers",
        "source.shop.shop_raw.orders",
    }
    # No timestamps, invocation ids, absolute paths, macros, SQL or tests.
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
    for needle in ("invocation_id", "generated_at", "created_at", "macro.", "raw_code", "test."):
        assert needle not in text
    assert str(EXAMPLE) not in text and str(REPO_ROOT) not in text
    assert text.endswith("}\n")


@pytest.mark.slow
def test_unchanged_project_refreshes_byte_identical_and_stays_clean(
    example_state: Path, example_tree_before: dict[str, int], tmp_path: Path
) -> None:
    again = tmp_path / "state"
    DbtProjectComponent(project_dir=str(EXAMPLE)).write_state_to_path(again)
    assert again.read_bytes() == example_state.read_bytes()
    # dbt wrote its target/ and logs/ elsewhere: refreshing never dirties the project.
    assert _tree(EXAMPLE) == example_tree_before


@pytest.mark.slow
def test_build_defs_maps_the_example(example_state: Path) -> None:
    component = DbtProjectComponent(project_dir=str(EXAMPLE))
    defs = component.build_defs_from_state(_context(EXAMPLE), example_state)
    by_key = {spec.key.to_string(): spec for spec in defs.assets}
    assert set(by_key) == {
        "stg_customers",
        "stg_orders",
        "stg_payments",
        "customers",
        "orders",
        "daily_revenue",
        "raw_customers",
        "raw_orders",
        "raw_payments",
        "customers_snapshot",
        "shop_raw/customers",
        "shop_raw/orders",
    }

    def deps(key: str) -> set[str]:
        return {d.to_string() for d in by_key[key].deps}

    assert deps("customers") == {"stg_customers", "stg_orders", "stg_payments"}
    assert deps("daily_revenue") == {"orders"}
    assert deps("stg_orders") == {"shop_raw/orders"}
    assert deps("stg_payments") == {"raw_payments"}
    assert deps("customers_snapshot") == {"shop_raw/customers"}
    assert deps("shop_raw/orders") == set() and deps("raw_payments") == set()

    customers = by_key["customers"]
    assert customers.owners == ("alice@example.com",)  # config(meta=...) beats the folder's
    assert customers.tags == {"marts": "", "pii": ""}
    assert customers.group_name == "shop"
    assert customers.kinds == ("dbt", "duckdb")
    assert customers.description and "lifetime value" in customers.description
    assert customers.metadata == {
        "dbt/unique_id": "model.shop.customers",
        "dbt/resource_type": "model",
        "dbt/materialization": "table",
        "dbt/original_file_path": "models/marts/customers.sql",
        "dbt/relation_name": '"shop"."main"."customers"',
    }
    assert by_key["orders"].owners == ("team:analytics",)  # from dbt_project.yml
    assert by_key["daily_revenue"].owners == ("team:finance", "bob@example.com")
    assert by_key["daily_revenue"].metadata["dbt/materialization"] == "incremental"
    assert by_key["stg_orders"].metadata["dbt/materialization"] == "view"
    assert by_key["stg_orders"].owners == ()
    assert by_key["raw_payments"].metadata["dbt/resource_type"] == "seed"
    assert by_key["customers_snapshot"].metadata["dbt/materialization"] == "snapshot"

    source = by_key["shop_raw/orders"]
    assert source.kinds == ("dbt", "duckdb", "source")
    assert source.description == "One row per order, with its current status."
    assert source.metadata["dbt/resource_type"] == "source"
    assert source.metadata["dbt/relation_name"] == '"shop"."main_raw"."raw_orders"'
    assert "dbt/materialization" not in source.metadata


@pytest.mark.slow
def test_broken_model_fails_with_dbts_message(tmp_path: Path) -> None:
    project = _copy_example(tmp_path / "shop")
    (project / "models" / "marts" / "orders.sql").write_text("select {{ ref('stg_orders' }}\n")
    state = tmp_path / "state"
    with pytest.raises(DbtParseError) as raised:
        DbtProjectComponent(project_dir=str(project)).write_state_to_path(state)
    message = str(raised.value)
    assert isinstance(raised.value, TerminalRefreshError)  # retrying cannot fix a typo
    assert "Compilation Error in model orders (models/marts/orders.sql)" in message
    assert "unexpected '}'" in message
    assert len(message.splitlines()) < 20  # dbt's error, not its whole log
    assert not state.exists()


@pytest.mark.slow
def test_broken_yaml_fails_the_refresh_and_keeps_the_previous_state(tmp_path: Path) -> None:
    """Through the loader: a refresh that dbt rejects leaves the last good state loadable."""
    project = _copy_example(tmp_path / "shop")
    (project / "pyproject.toml").write_text("[tool.defstate]\n")
    (project / "defs" / "shop").mkdir(parents=True, exist_ok=True)
    (project / "defs" / "shop" / "defs.yaml").write_text(
        "type: defstate.contrib.dbt.DbtProjectComponent\nattributes:\n  project_dir: .\n"
    )
    assert refresh_state(project).ok
    before = load_defs(project).definitions
    (project / "models" / "staging" / "_staging.yml").write_text("version: 2\nmodels: [oops\n")
    (result,) = refresh_state(project).results
    assert not result.ok and result.attempts == 1
    assert "_staging.yml" in (result.error or "")
    assert load_defs(project).definitions == before


DBT_PROJECT_YML = """
    name: warehouse
    version: "1.0.0"
    config-version: 2
    profile: warehouse
    models:
      warehouse:
        +materialized: "{{ var('default_materialization', 'view') }}"
"""

PROFILES_YML = """
    warehouse:
      target: dev
      outputs:
        dev: {type: duckdb, path: dev.duckdb, schema: dev}
        prod: {type: duckdb, path: prod.duckdb, schema: analytics}
"""

MODELS_YML = """
    version: 2
    groups:
      - name: finance
        owner: {name: Finance, email: finance@example.com}
    sources:
      - name: app
        meta: {owner: "team:platform"}
        tables:
          - name: events
    models:
      - name: revenue
        description: Revenue from events.
        config: {group: finance, tags: [finance]}
      - name: dim_users
        latest_version: 2
        versions:
          - v: 1
          - v: 2
"""


@pytest.mark.slow
def test_an_ordinary_project_through_the_loader(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/dbt/defs.yaml": """
                type: defstate.contrib.dbt.DbtProjectComponent
                attributes:
                  project_dir: dbt/warehouse
                  profiles_dir: dbt/profiles
                  target: prod
                  vars: {default_materialization: table, as_of: 2024-01-01}
            """,
            "dbt/profiles/profiles.yml": PROFILES_YML,
            "dbt/warehouse/dbt_project.yml": DBT_PROJECT_YML,
            "dbt/warehouse/models/models.yml": MODELS_YML,
            "dbt/warehouse/models/base_events.sql": """
                {{ config(materialized='ephemeral') }}
                select * from {{ source('app', 'events') }}
            """,
            "dbt/warehouse/models/revenue.sql": "select * from {{ ref('base_events') }}\n",
            "dbt/warehouse/models/dim_users_v1.sql": "select 1 as id\n",
            "dbt/warehouse/models/dim_users_v2.sql": "select 1 as id, 'a' as name\n",
        }
    )
    report = refresh_state(root)
    assert report.ok, (report.errors, [r.error for r in report.results])
    assert [r.key for r in report.results] == ["DbtProject[warehouse]"]

    result = load_defs(root)
    assert result.ok, result.errors
    defs = result.definitions
    assert sorted(k.to_string() for k in defs.asset_keys) == [
        "app/events",
        "dim_users_v1",
        "dim_users_v2",
        "revenue",
    ]
    revenue = defs.get_asset("revenue")
    # The ephemeral model is no asset: revenue reads the source through it.
    assert revenue.deps == (AssetKey(("app", "events")),)
    assert revenue.group_name == "finance"
    assert revenue.owners == ("finance@example.com",)
    assert revenue.tags == {"finance": ""}
    assert revenue.metadata["dbt/materialization"] == "table"  # from --vars
    assert revenue.metadata["dbt/relation_name"] == '"prod"."analytics"."revenue"'  # target
    assert defs.get_asset("dim_users_v2").group_name == "warehouse"
    assert defs.get_asset("app/events").owners == ("team:platform",)
    assert not (root / "dbt" / "warehouse" / "target").exists()


# --- without dbt -------------------------------------------------------------------------


def test_no_state_gives_empty_definitions(tmp_path: Path) -> None:
    component = DbtProjectComponent(project_dir=str(EXAMPLE))
    assert component.build_defs_from_state(_context(tmp_path), None).assets == ()


def test_from_attributes_resolves_paths_and_names_the_key(tmp_path: Path) -> None:
    project = _copy_example(tmp_path / "dbt" / "shop")
    component = DbtProjectComponent.from_attributes(
        {"project_dir": "dbt/shop", "profiles_dir": "dbt/shop", "target": "dev"},
        _context(tmp_path),
    )
    assert component.project_dir == str(project)
    assert component.profiles_dir == str(project)
    assert component.defs_state_key == "DbtProject[shop]"
    custom = DbtProjectComponent.from_attributes(
        {"project_dir": str(project), "defs_state": {"key": "analytics"}}, _context(tmp_path)
    )
    assert custom.defs_state_key == "analytics"
    assert custom.profiles_dir == str(project)  # default: the project's own profiles.yml
    (project / "profiles.yml").unlink()
    bare = DbtProjectComponent.from_attributes({"project_dir": str(project)}, _context(tmp_path))
    assert bare.profiles_dir is None  # dbt's own lookup: $DBT_PROFILES_DIR, ~/.dbt


@pytest.mark.parametrize(
    ("attributes", "field", "fragment"),
    [
        ({"project_dir": "missing"}, "project_dir", "dbt_project.yml does not exist"),
        ({"project_dir": "shop", "profiles_dir": "nope"}, "profiles_dir", "is not a folder"),
        ({"project_dir": "shop", "vars": [1]}, "vars", "expected dict"),
    ],
)
def test_from_attributes_rejects_bad_paths(
    tmp_path: Path, attributes: dict[str, Any], field: str, fragment: str
) -> None:
    _copy_example(tmp_path / "shop")
    with pytest.raises(AttributeValueError) as raised:
        DbtProjectComponent.from_attributes(attributes, _context(tmp_path))
    assert raised.value.path == (field,)
    assert fragment in raised.value.message


def test_project_without_name_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("version: 2\n")
    with pytest.raises(AttributeValueError, match="has no 'name:'"):
        DbtProjectComponent.from_attributes({"project_dir": "."}, _context(tmp_path))


def test_parse_command_keeps_output_out_of_the_project(tmp_path: Path) -> None:
    command = dbt_parse_command(
        EXAMPLE,
        tmp_path,
        profiles_dir=tmp_path / "profiles",
        target="prod",
        dbt_vars={"b": 1, "a": datetime.date(2024, 1, 2)},
    )
    assert command[0] == sys.executable and command[3] == "parse"

    def option(name: str) -> str:
        return command[command.index(name) + 1]

    assert option("--target-path") == str(tmp_path / "target")
    assert option("--log-path") == str(tmp_path / "logs")
    assert option("--profiles-dir") == str(tmp_path / "profiles")
    assert option("--target") == "prod"
    assert json.loads(option("--vars")) == {"a": "2024-01-02", "b": 1}
    assert "--no-send-anonymous-usage-stats" in command
    bare = dbt_parse_command(EXAMPLE, tmp_path)
    assert not {"--profiles-dir", "--target", "--vars"} & set(bare)


def _event(level: str, msg: str) -> str:
    return json.dumps({"info": {"level": level, "msg": msg, "ts": "2024-01-01T00:00:00Z"}})


def test_summary_prefers_dbts_error_events() -> None:
    stdout = "\n".join(
        [
            _event("info", "Running with dbt=1.11"),
            _event("warn", "a deprecation"),
            _event("error", "Encountered an error:\nParsing Error\n  bad yaml"),
        ]
    )
    summary = summarize_dbt_output(stdout, "some warning on stderr\n")
    assert summary == "Encountered an error:\nParsing Error\n  bad yaml"
    long = summarize_dbt_output(_event("error", "\n".join(map(str, range(100)))), "", 5)
    assert long.splitlines() == ["0", "1", "2", "3", "4", "... (95 more lines)"]


def test_summary_without_error_events_keeps_the_last_lines() -> None:
    stderr = "Traceback (most recent call last):\n" + "  frame\n" * 50 + "KeyError: 'x'\n"
    summary = summarize_dbt_output(_event("info", "Running"), stderr, 3)
    assert summary.splitlines() == ["  frame", "  frame", "KeyError: 'x'"]
    assert summarize_dbt_output("", "") == "(dbt printed nothing)"


def test_missing_dbt_is_reported_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What a refresh sees in an environment without dbt-core, without uninstalling it.
    monkeypatch.setattr(dbt_contrib, "_DBT_ENTRY_POINT", "import dbt_is_not_installed_here")
    with pytest.raises(DbtParseError) as raised:
        DbtProjectComponent(project_dir=str(EXAMPLE)).write_state_to_path(tmp_path / "s")
    message = str(raised.value)
    assert "ModuleNotFoundError: No module named 'dbt_is_not_installed_here'" in message
    assert "exit code 1" in message


def _node(unique_id: str, *, depends_on: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    resource_type, package, name = unique_id.split(".")[:3]
    config = {"materialized": fields.pop("materialized", "view"), "meta": fields.pop("meta", {})}
    config.update(fields.pop("config", {}))
    node: dict[str, Any] = {
        "unique_id": unique_id,
        "name": name,
        "resource_type": resource_type,
        "package_name": package,
        "fqn": [package, name],
        "description": "",
        "tags": [],
        "config": config,
        "meta": config["meta"],
        "depends_on": {"macros": ["macro.dbt.x"], "nodes": depends_on or []},
        "original_file_path": f"models/{name}.sql",
        "created_at": 1700000000.123,
        "checksum": {"name": "sha256", "checksum": "abc"},
        "raw_code": "select 1",
    }
    node.update(fields)
    return node


def _manifest(*nodes: dict[str, Any], groups: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "project_name": "p",
            "adapter_type": "postgres",
            "dbt_version": "1.11.0",
            "generated_at": "2024-05-01T00:00:00Z",
            "invocation_id": "1234",
        },
        "nodes": {n["unique_id"]: n for n in nodes},
        "sources": {
            "source.p.app.events": {
                "unique_id": "source.p.app.events",
                "source_name": "app",
                "name": "events",
                "package_name": "p",
                "description": "",
                "source_description": "The app database.",
                "tags": ["b", "a"],
                "meta": {},
                "source_meta": {"owner": "team:app"},
                "config": {"meta": {}},
                "relation_name": '"db"."app"."events"',
            }
        },
        "macros": {"macro.dbt.x": {"macro_sql": "..."}},
        "groups": groups or {},
        "parent_map": {},
    }


def test_trim_manifest_keeps_only_what_definitions_need() -> None:
    manifest = _manifest(
        _node(
            "model.p.orders",
            depends_on=["source.p.app.events", "model.p.base", "source.p.app.events"],
            tags=["z", "a", "z"],
            meta={"owner": " alice@example.com "},
        ),
        _node("model.p.base", materialized="ephemeral", depends_on=["seed.p.raw"]),
        _node("seed.p.raw", materialized="seed"),
        _node("test.p.not_null_orders_id", materialized="test", depends_on=["model.p.orders"]),
    )
    state = trim_manifest(manifest)
    assert set(state["nodes"]) == {"model.p.orders", "model.p.base", "seed.p.raw"}
    orders = state["nodes"]["model.p.orders"]
    assert orders["depends_on"] == ["model.p.base", "source.p.app.events"]
    assert orders["tags"] == ["a", "z"]
    assert orders["owners"] == ["alice@example.com"]
    text = dump_state(state).decode()
    for volatile in ("generated_at", "invocation_id", "created_at", "checksum", "macro", "select"):
        assert volatile not in text
    # Key order in the manifest does not matter: the bytes are canonical.
    reordered = dict(reversed(list(manifest["nodes"].items())))
    assert dump_state(trim_manifest({**manifest, "nodes": reordered})) == dump_state(state)


def test_mapping_collapses_ephemeral_models_and_names_versions() -> None:
    manifest = _manifest(
        _node("model.p.orders", depends_on=["model.p.base", "model.p.users.v2"]),
        _node("model.p.base", materialized="ephemeral", depends_on=["model.p.deeper"]),
        _node("model.p.deeper", materialized="ephemeral", depends_on=["source.p.app.events"]),
        _node("model.p.users.v2", name="users", version=2, config={"group": "core"}),
        groups={"group.p.core": {"name": "core", "owner": {"email": "core@example.com"}}},
    )
    specs = {s.key.to_string(): s for s in asset_specs_from_state(trim_manifest(manifest))}
    assert set(specs) == {"orders", "users_v2", "app/events"}
    assert [d.to_string() for d in specs["orders"].deps] == ["app/events", "users_v2"]
    assert specs["users_v2"].group_name == "core"
    assert specs["users_v2"].owners == ("core@example.com",)  # the dbt group's owner
    assert specs["orders"].group_name == "p"
    events = specs["app/events"]
    assert events.description == "The app database."  # the source's, for lack of the table's
    assert events.owners == ("team:app",)
    assert events.tags == {"a": "", "b": ""}
    assert events.kinds == ("dbt", "postgres", "source")


def test_same_name_in_two_packages_gets_package_prefixed_keys() -> None:
    manifest = _manifest(
        _node("model.p.users"),
        _node("model.pkg.users"),
        _node("model.pkg.only_here", depends_on=["model.pkg.users"]),
    )
    specs = {s.key.to_string(): s for s in asset_specs_from_state(trim_manifest(manifest))}
    assert set(specs) == {"p/users", "pkg/users", "only_here", "app/events"}
    assert [d.to_string() for d in specs["only_here"].deps] == ["pkg/users"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "cannot read dbt state"),
        ("[]", "is not a JSON object"),
        ('{"format": "defstate.dbt/0"}', "found 'defstate.dbt/0'"),
        (json.dumps({"format": STATE_FORMAT}), "lacks 'nodes' or 'sources'"),
    ],
)
def test_unreadable_state_is_reported(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "state"
    path.write_text(content)
    with pytest.raises(DbtStateError, match=re.escape(fragment)):
        load_state(path)


def test_importing_the_module_does_not_import_dbt() -> None:
    code = (
        "import sys, defstate.contrib.dbt; "
        "print(sorted(m for m in sys.modules if m == 'dbt' or m.startswith('dbt.')))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "[]"


@pytest.fixture(autouse=True)
def _no_dbt_output_in_the_example() -> Iterator[None]:
    """A refresh that wrote dbt's target/ or logs/ into the example would dirty the repo."""
    before = {p.name for p in EXAMPLE.iterdir()}
    yield
    assert {p.name for p in EXAMPLE.iterdir()} - before == set()


@pytest.mark.slow
def test_example_project_through_the_cli(tmp_path: Path) -> None:
    """The README's commands on a copy of examples/dbt_project (a dbt and defstate project)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "examples/dbt_project",
        project,
        ignore=shutil.ignore_patterns("target", "logs", ".local_defs_state", "*.duckdb"),
    )
    refreshed = run_cli("state", "refresh", cwd=project, timeout=300)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith("refreshed DbtProject[shop]  version=local")
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    keys = {a["key"] for a in data["assets"]}
    assert len(keys) == 12 and {"customers", "shop_raw/orders"} <= keys
    assert data["state"]["DbtProject[shop]"]["management_type"] == "LOCAL_FILESYSTEM"
