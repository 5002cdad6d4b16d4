"""DbtProjectComponent: the mapping from stored state (fast, no dbt), and real ``dbt parse``
runs (slow; one parse of each project is shared by the tests that read it)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from defstate import AssetKey, ComponentLoadContext
from defstate.components.json_state import dump_json_state
from defstate.contrib.dbt import (
    STATE_FORMAT,
    DbtParseError,
    DbtProjectComponent,
    DbtSelectionError,
    DbtStateError,
    DbtTranslationError,
    DbtTranslationWarning,
    dbt_parse_command,
    load_state,
    summarize_dbt_output,
    trim_manifest,
)
from defstate.errors import AttributeValueError


def _context(root: Path) -> ComponentLoadContext:
    return ComponentLoadContext(
        project_root=root,
        defs_dir=root / "defs",
        component_dir=root / "defs" / "dbt",
        source="defs/dbt/defs.yaml:1",
    )


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
        "raw_code": f"select 1 as {name}",
        "database": "db",
        "schema": "main",
        "alias": name,
    }
    node.update(fields)
    return node


def _source(source_name: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "unique_id": f"source.p.{source_name}.{name}",
        "resource_type": "source",
        "source_name": source_name,
        "name": name,
        "package_name": "p",
        "fqn": ["p", source_name, name],
        "description": "",
        "tags": [],
        "meta": {},
        "config": {"meta": {}},
        "database": "db",
        "schema": source_name,
        "identifier": name,
        "created_at": 1700000000.5,
        **fields,
    }


def _manifest(*nodes: dict[str, Any], sources: list[dict[str, Any]] | None = None, **extra: Any):  # type: ignore[no-untyped-def]
    return {
        "metadata": {
            "project_name": "p",
            "project_id": "f00",
            "adapter_type": "postgres",
            "dbt_version": "1.11.0",
            "generated_at": "2024-05-01T00:00:00Z",
            "invocation_id": "1234",
        },
        "nodes": {n["unique_id"]: n for n in nodes},
        "sources": {s["unique_id"]: s for s in (sources or [_source("app", "events")])},
        "macros": {"macro.dbt.x": {"macro_sql": "..."}},
        "parent_map": {},
        **extra,
    }


def _defs(
    manifest: Mapping[str, Any],
    tmp_path: Path,
    component: DbtProjectComponent | None = None,
    **attributes: Any,
):  # type: ignore[no-untyped-def]
    path = tmp_path / f"state-{len(list(tmp_path.iterdir()))}"
    path.write_bytes(dump_json_state(trim_manifest(manifest)))
    if component is None:
        component = DbtProjectComponent.from_attributes(
            {"project_dir": "dbt", **attributes}, _context(tmp_path)
        )
    return component.build_defs_from_state(_context(tmp_path), path)


def _keys(defs: Any) -> list[str]:
    return sorted(k.to_string() for k in defs.asset_keys)


# --- state ---------------------------------------------------------------------------------


def test_trim_keeps_the_whole_project_and_drops_what_is_volatile() -> None:
    manifest = _manifest(
        _node("model.p.orders", depends_on=["source.p.app.events", "model.p.base"]),
        _node("model.p.base", materialized="ephemeral", depends_on=["seed.p.raw"]),
        _node("seed.p.raw", materialized="seed"),
        _node(
            "test.p.not_null_orders_id",
            depends_on=["model.p.orders"],
            attached_node="model.p.orders",
        ),
        _node("semantic_model.p.sm", depends_on=["model.p.orders"]),
        selectors={"nightly": {"name": "nightly", "definition": "tag:nightly", "description": "x"}},
    )
    state = trim_manifest(manifest)
    assert state["format"] == STATE_FORMAT
    assert set(state["nodes"]) == set(manifest["nodes"])  # selection happens when building
    assert state["nodes"]["semantic_model.p.sm"] == {  # only a graph edge
        "unique_id": "semantic_model.p.sm",
        "name": "sm",
        "resource_type": "semantic_model",
        "package_name": "p",
        "depends_on": {"nodes": ["model.p.orders"]},
    }
    assert state["nodes"]["model.p.orders"]["raw_code"] == "select 1 as orders"  # code version
    assert state["selectors"] == {"nightly": {"name": "nightly", "definition": "tag:nightly"}}
    text = dump_json_state(state).decode()
    for volatile in ("generated_at", "invocation_id", "created_at", "macro."):
        assert volatile not in text
    reordered = dict(reversed(list(manifest["nodes"].items())))
    assert dump_json_state(trim_manifest({**manifest, "nodes": reordered})) == dump_json_state(
        state
    )


def test_a_ref_cycle_fails_with_dbts_wording() -> None:
    manifest = _manifest(
        _node("model.p.a", depends_on=["model.p.c"]),
        _node("model.p.b", depends_on=["model.p.a"]),
        _node("model.p.c", depends_on=["model.p.b", "source.p.app.events"]),
    )
    with pytest.raises(
        DbtParseError,
        match=r"^Found a cycle: model\.p\.\w --> model\.p\.\w --> model\.p\.\w --> model\.p\.\w$",
    ):
        trim_manifest(manifest)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "cannot read dbt state"),
        ("[]", "is not a JSON object"),
        ('{"format": "defstate.dbt/1"}', "found 'defstate.dbt/1'"),
        (json.dumps({"format": STATE_FORMAT}), "lacks 'nodes' or 'sources'"),
    ],
)
def test_unreadable_state_is_reported(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "state"
    path.write_text(content)
    with pytest.raises(DbtStateError, match=re.escape(fragment)):
        load_state(path)


def test_no_state_gives_empty_definitions(tmp_path: Path) -> None:
    defs = DbtProjectComponent(project_dir="x").build_defs_from_state(_context(tmp_path), None)
    assert defs.assets == () and defs.asset_checks == ()


# --- keys and attributes -------------------------------------------------------------------


def test_attributes_never_read_the_dbt_project(tmp_path: Path) -> None:
    """A deployed image has state but no dbt project: checking attributes must not need it."""
    component = DbtProjectComponent.from_attributes(
        {"project_dir": "dbt/warehouse", "profiles_dir": "dbt/profiles"}, _context(tmp_path)
    )
    assert component.project_dir == str(tmp_path / "dbt/warehouse")
    assert component.profiles_dir == str(tmp_path / "dbt/profiles")
    assert component.defs_state_key == "DbtProject[warehouse]"


def test_targets_and_vars_get_distinct_keys(tmp_path: Path) -> None:
    def key(**attributes: Any) -> str:
        component = DbtProjectComponent.from_attributes(
            {"project_dir": "warehouse", **attributes}, _context(tmp_path)
        )
        return component.defs_state_key

    keys = {
        key(),
        key(target="prod"),
        key(target="dev"),
        key(vars={"a": 1}),
        key(target="prod", vars={"a": 1}),
    }
    assert len(keys) == 5
    assert key(target="prod") == "DbtProject[warehouse,target=prod]"
    assert key(vars={"a": 1, "b": 2}) == key(vars={"b": 2, "a": 1})
    # selection and translation never change the key: one parse serves them all
    assert key(select="tag:x", key_prefix=["p"]) == key()
    custom = DbtProjectComponent.from_attributes(
        {"project_dir": "warehouse", "defs_state": {"key": "analytics"}}, _context(tmp_path)
    )
    assert custom.defs_state_key == "analytics"


@pytest.mark.parametrize(
    ("attributes", "field", "fragment"),
    [
        ({"vars": [1]}, "vars", "expected dict"),
        ({"key_prefix": ["a", "b/c"]}, "key_prefix", "without '/'"),
        ({"key_prefix": "a//b"}, "key_prefix", "empty key part"),
        ({"translation": {"key": "{{ node.name | upper }}"}}, "translation", "only field lookups"),
        ({"translation": {"group_name": "{{ env.X }}"}}, "translation", "unsupported template"),
    ],
)
def test_bad_attributes_are_rejected(
    tmp_path: Path, attributes: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(AttributeValueError) as raised:
        DbtProjectComponent.from_attributes({"project_dir": "x", **attributes}, _context(tmp_path))
    assert raised.value.path[0] == field
    assert fragment in raised.value.message


def test_same_name_in_a_package_keeps_the_root_models_key(tmp_path: Path) -> None:
    manifest = _manifest(
        _node("model.p.users"),
        _node("model.pkg.users", schema="pkg_schema"),
        _node("model.p.report", depends_on=["model.pkg.users", "model.p.users"]),
    )
    defs = _defs(manifest, tmp_path)
    assert _keys(defs) == ["pkg/users", "report", "users"]
    assert [d.to_string() for d in defs.get_asset("report").deps] == ["pkg/users", "users"]


def test_two_root_nodes_with_one_key_are_an_error(tmp_path: Path) -> None:
    manifest = _manifest(
        _node("model.p.users"),
        _node("model.p.other", meta={"dagster": {"asset_key": ["users"]}}),
    )
    with pytest.raises(
        DbtTranslationError,
        match=re.escape("model.p.other and model.p.users both have the asset key users"),
    ):
        _defs(manifest, tmp_path)


def test_source_whose_relation_a_seed_builds_resolves_to_the_seed(tmp_path: Path) -> None:
    manifest = _manifest(
        _node("seed.p.raw_orders", materialized="seed", schema="app", alias="RAW_ORDERS"),
        _node("model.p.orders", depends_on=["source.p.app.raw_orders"]),
        sources=[_source("app", "raw_orders"), _source("app", "events")],
    )
    defs = _defs(manifest, tmp_path, include_all_sources=True)
    assert _keys(defs) == ["app/events", "orders", "raw_orders"]
    assert [d.to_string() for d in defs.get_asset("orders").deps] == ["raw_orders"]


def test_sources_only_where_referenced_unless_all_are_asked_for(tmp_path: Path) -> None:
    manifest = _manifest(
        _node("model.p.orders", depends_on=["source.p.app.events"]),
        sources=[_source("app", "events"), _source("app", "unused")],
    )
    assert _keys(_defs(manifest, tmp_path)) == ["app/events", "orders"]
    assert _keys(_defs(manifest, tmp_path, include_all_sources=True)) == [
        "app/events",
        "app/unused",
        "orders",
    ]
    assert _keys(
        _defs(manifest, tmp_path, select="source:app.unused", include_all_sources=True)
    ) == ["app/unused"]


# --- translation ---------------------------------------------------------------------------


def _translation_manifest() -> dict[str, Any]:
    return _manifest(
        _node(
            "model.p.orders",
            depends_on=["source.p.app.events"],
            fqn=["p", "marts", "orders"],
            tags=["nightly"],
        ),
        _node(
            "test.p.not_null_orders_id",
            depends_on=["model.p.orders"],
            attached_node="model.p.orders",
            config={"severity": "warn"},
        ),
    )


def test_key_prefix_and_translation_templates(tmp_path: Path) -> None:
    defs = _defs(
        _translation_manifest(),
        tmp_path,
        key_prefix=["warehouse"],
        translation={
            "key": "{{ node.fqn[1] }}/{{ spec.key }}",
            "group_name": "{{ node.fqn[1] }}",
            "owners": ["team:{{ node.package_name }}", "{{ node.meta.nobody }}"],
            "tags": {"layer": "{{ node.fqn[1] }}", "{{ node.meta.none }}": "dropped"},
            "description": "{{ node.name }} in {{ node.schema }}",
            "metadata": {"dbt/path": "{{ node.original_file_path }}"},
        },
    )
    # a source's fqn is [package, source, table]: fqn[1] is its source name
    assert _keys(defs) == ["warehouse/app/app/events", "warehouse/marts/orders"]
    orders = defs.get_asset("warehouse/marts/orders")
    assert orders.deps == (AssetKey(("warehouse", "app", "app", "events")),)
    assert orders.group_name == "marts"
    assert orders.owners == ("team:p",)
    assert orders.tags == {"nightly": "", "layer": "marts"}
    assert orders.description == "orders in main"
    assert orders.metadata["dbt/path"] == "models/orders.sql"
    assert defs.get_asset("warehouse/app/app/events").group_name == "app"
    (check,) = defs.asset_checks
    assert check.asset == orders.key and check.blocking is False


def test_translation_comes_through_defs_yaml_templates(tmp_path: Path) -> None:
    """``{{ node.x }}`` in a defs.yaml is left for the component; ``{{ env.X }}`` is still
    expanded when the file is loaded."""
    from defstate.loader.yaml_source import expand_templates

    text = "key: '{{ node.fqn[1] }}/{{ spec.key }}' in {{ project_root }}"
    assert (
        expand_templates(text, tmp_path, {})
        == f"key: '{{{{ node.fqn[1] }}}}/{{{{ spec.key }}}}' in {tmp_path}"
    )
    assert expand_templates("{{ env.TEAM }}", tmp_path, {"TEAM": "data"}) == "data"


class PrefixingDbt(DbtProjectComponent):
    """A subclass customising keys, groups and owners like a dagster-dbt translator."""

    def get_asset_key(self, node: Mapping[str, Any]) -> AssetKey:
        key = super().get_asset_key(node)
        if node["resource_type"] == "source":
            return AssetKey(("ingest", *key.path))
        return key

    def get_group_name(self, node: Mapping[str, Any]) -> str | None:
        return "sources" if node["resource_type"] == "source" else str(node["fqn"][1])

    def get_owners(self, node: Mapping[str, Any]) -> list[str]:
        return ["team:data"]


def test_subclass_hooks_replace_the_default_translator(tmp_path: Path) -> None:
    component = PrefixingDbt.from_attributes({"project_dir": "x"}, _context(tmp_path))
    defs = _defs(_translation_manifest(), tmp_path, component)
    assert _keys(defs) == ["ingest/app/events", "orders"]
    orders = defs.get_asset("orders")
    assert orders.deps == (AssetKey(("ingest", "app", "events")),)
    assert orders.group_name == "marts" and orders.owners == ("team:data",)
    assert defs.get_asset("ingest/app/events").group_name == "sources"


def test_tags_and_owners_dagster_rejects_are_dropped_with_a_warning(tmp_path: Path) -> None:
    manifest = _manifest(
        _node(
            "model.p.orders",
            tags=["ok", "bad tag!", "x" * 64],
            meta={"dagster": {"owners": ["not an owner", "a@b.io"]}},
        ),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs = _defs(manifest, tmp_path)
    orders = defs.get_asset("orders")
    assert orders.tags == {"ok": ""} and orders.owners == ("a@b.io",)
    messages = [str(w.message) for w in caught if issubclass(w.category, DbtTranslationWarning)]
    assert len(messages) == 2
    assert all(m.startswith("dbt node model.p.orders: dropped") for m in messages)
    assert "bad tag!" in messages[0] and "not an owner" in messages[1]


# --- selection -----------------------------------------------------------------------------


def _graph_manifest() -> dict[str, Any]:
    return _manifest(
        _node("model.p.a", depends_on=["source.p.app.events"], tags=["core"]),
        _node("model.p.b", depends_on=["model.p.a"]),
        _node("model.p.c", depends_on=["model.p.b"], config={"materialized": "table"}),
        _node("model.p.d", depends_on=["model.p.c"]),
        _node("test.p.t_b", depends_on=["model.p.b"], attached_node="model.p.b"),
    )


@pytest.mark.parametrize(
    ("select", "exclude", "expected"),
    [
        ("b+1", "", ["b", "c"]),
        ("2+c", "", ["a", "app/events", "b", "c"]),
        ("@b", "", ["a", "app/events", "b", "c", "d"]),
        ("config.materialized:table", "", ["c"]),
        ("tag:core,b+", "", []),
        ("a+", "c+", ["a", "app/events", "b"]),
        ("file:d.sql models/a.sql", "", ["a", "app/events", "d"]),
        ("resource_type:model,package:this", "d", ["a", "app/events", "b", "c"]),
    ],
)
def test_dbt_selection_syntax(
    tmp_path: Path, select: str, exclude: str, expected: list[str]
) -> None:
    assert _keys(_defs(_graph_manifest(), tmp_path, select=select, exclude=exclude)) == expected


def test_excluding_a_node_excludes_its_tests(tmp_path: Path) -> None:
    assert len(_defs(_graph_manifest(), tmp_path, select="b").asset_checks) == 1
    assert (
        _defs(_graph_manifest(), tmp_path, select="b", exclude="resource_type:test").asset_checks
        == ()
    )
    assert _defs(_graph_manifest(), tmp_path, exclude="b").asset_checks == ()


@pytest.mark.parametrize(
    ("attributes", "fragment"),
    [
        ({"select": "state:modified"}, "'state' is not supported"),
        ({"select": "colour:red"}, "unknown dbt selection method 'colour'"),
        ({"selector": "nope"}, "no selector named 'nope'"),
    ],
)
def test_bad_selections_are_clear_errors(
    tmp_path: Path, attributes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(DbtSelectionError, match=re.escape(fragment)):
        _defs(_graph_manifest(), tmp_path, **attributes)


# --- running dbt (without running it) ------------------------------------------------------


def test_parse_command_keeps_output_out_of_the_project(tmp_path: Path) -> None:
    command = dbt_parse_command(
        tmp_path / "proj",
        tmp_path / "cache",
        profiles_dir=tmp_path / "profiles",
        target="prod",
        dbt_vars={"b": 1, "a": datetime.date(2024, 1, 2)},
    )
    assert command[0] == sys.executable and command[3] == "parse"

    def option(name: str) -> str:
        return command[command.index(name) + 1]

    assert option("--target-path") == str(tmp_path / "cache" / "target")
    assert option("--log-path") == str(tmp_path / "cache" / "logs")
    assert option("--profiles-dir") == str(tmp_path / "profiles")
    assert option("--target") == "prod"
    assert json.loads(option("--vars")) == {"a": "2024-01-02", "b": 1}
    assert "--no-send-anonymous-usage-stats" in command and "--partial-parse" in command


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
    stderr = "Traceback (most recent call last):\n" + "  frame\n" * 50 + "KeyError: 'x'\n"
    assert summarize_dbt_output("", stderr, 3).splitlines() == [
        "  frame",
        "  frame",
        "KeyError: 'x'",
    ]
    assert summarize_dbt_output("", "") == "(dbt printed nothing)"


def test_importing_the_package_does_not_import_dbt() -> None:
    code = (
        "import sys, defstate.contrib.dbt; "
        "print(sorted(m for m in sys.modules if m == 'dbt' or m.startswith('dbt.')))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "[]"
