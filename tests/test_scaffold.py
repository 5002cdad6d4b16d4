"""defstate init / scaffold / list component-types / the defs.yaml schema, as a new user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from conftest import run_cli


def test_init_creates_a_project_that_refreshes_and_lists_at_once(tmp_path: Path) -> None:
    done = run_cli("init", "My-Shop", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "My-Shop"
    assert "created pyproject.toml" in done.stdout
    assert "[tool.defstate]" in (root / "pyproject.toml").read_text()
    assert (root / ".gitignore").exists()
    assert (root / "my_shop/defs/tables/defs.yaml").exists()
    refreshed = run_cli("state", "refresh", cwd=root)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith("refreshed TableCatalog[example]  version=local")
    listed = run_cli("list", "defs", "--json", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assets = {a["key"]: a["deps"] for a in json.loads(listed.stdout)["assets"]}
    assert assets == {
        "marts/revenue": ["raw/orders", "raw/customers"],
        "raw/customers": [],
        "raw/orders": [],
    }
    again = run_cli("init", "My-Shop", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_scaffold_component_and_defs_then_refresh(tmp_path: Path) -> None:
    assert run_cli("init", "shop", cwd=tmp_path).returncode == 0
    root = tmp_path / "shop"
    component = run_cli("scaffold", "component", "OrdersApiComponent", cwd=root)
    assert component.returncode == 0, component.stderr
    assert component.stdout.splitlines() == [
        "created shop/orders_api_component.py",
        "next: defstate scaffold defs shop.orders_api_component.OrdersApiComponent PATH",
    ]
    type_name = "shop.orders_api_component.OrdersApiComponent"
    defs = run_cli("scaffold", "defs", type_name, "orders", cwd=root)
    assert defs.returncode == 0, defs.stderr
    path = root / "shop/defs/orders/defs.yaml"
    text = path.read_text()
    assert f"type: {type_name}" in text and "# names: []  # list[str]" in text
    path.write_text(text.replace("  # names: []", "  names: [a, b]"))
    refreshed = run_cli("state", "refresh", "OrdersApi[default]", cwd=root)
    assert refreshed.returncode == 0, refreshed.stderr
    listed = json.loads(run_cli("list", "defs", "--no-refresh", "--json", cwd=root).stdout)
    assert {"a", "b"} <= {a["key"] for a in listed["assets"]}
    taken = run_cli("scaffold", "defs", type_name, "orders", cwd=root)
    assert taken.returncode == 2 and "already exists" in taken.stderr
    outside = run_cli("scaffold", "defs", type_name, "../../x", cwd=root)
    assert outside.returncode == 2 and "outside the defs folder" in outside.stderr

    sql = run_cli(
        "scaffold", "defs", "defstate.contrib.sql.DatabaseTablesComponent", "wh", cwd=root
    )
    assert sql.returncode == 0, sql.stderr
    document = yaml.safe_load((root / "shop/defs/wh/defs.yaml").read_text())
    assert document == {
        "type": "defstate.contrib.sql.DatabaseTablesComponent",
        "attributes": {"url": "TODO"},  # required; the optional ones are commented out
    }
    unknown = run_cli("scaffold", "defs", "nope.Missing", "x", cwd=root)
    assert unknown.returncode == 1 and "cannot import module 'nope'" in unknown.stderr


def test_list_component_types_and_the_defs_yaml_schema(tmp_path: Path) -> None:
    assert run_cli("init", "shop", cwd=tmp_path).returncode == 0
    root = tmp_path / "shop"
    listed = run_cli("list", "component-types", "--json", cwd=root)
    assert listed.returncode == 0, listed.stderr
    types = {t["type"]: t for t in json.loads(listed.stdout)["component_types"]}
    assert {
        "defstate.contrib.dbt.DbtProjectComponent",
        "defstate.contrib.sql.DatabaseTablesComponent",
        "defstate.contrib.http.HttpCatalogComponent",
        "shop.components.TableCatalogComponent",
    } <= set(types)
    example = types["shop.components.TableCatalogComponent"]
    assert example["state_backed"] is True
    assert example["summary"].startswith("One asset per table of a JSON catalog")
    attributes = {a["name"]: a for a in example["attributes"]}
    assert attributes["catalog_path"] == {
        "name": "catalog_path",
        "type": "str",
        "required": True,
        "default": None,
    }
    assert attributes["group_name"]["default"] == "example"
    text = run_cli("list", "component-types", cwd=root).stdout
    assert "shop.components.TableCatalogComponent  (state-backed)" in text
    assert "    catalog_path: str  (required)" in text

    schema = json.loads(run_cli("utils", "defs-yaml-json-schema", cwd=root).stdout)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    branches = {b["if"]["properties"]["type"]["const"]: b["then"] for b in schema["allOf"]}
    attrs_schema = branches["shop.components.TableCatalogComponent"]["properties"]["attributes"]
    assert attrs_schema["required"] == ["catalog_path"]
    assert attrs_schema["properties"]["catalog_path"] == {"type": "string"}
    defs_state = attrs_schema["properties"]["defs_state"]
    assert defs_state["properties"]["management_type"]["enum"] == [
        "LOCAL_FILESYSTEM",
        "VERSIONED_STATE_STORAGE",
        "LEGACY_CODE_SERVER_SNAPSHOTS",
    ]
    assert attrs_schema["additionalProperties"] is False


def test_the_schema_accepts_real_defs_yaml_and_rejects_typos(tmp_path: Path) -> None:
    import pytest

    jsonschema = pytest.importorskip("jsonschema")  # present via moto's cfn-lint in the dev extra
    assert run_cli("init", "shop", cwd=tmp_path).returncode == 0
    root = tmp_path / "shop"
    schema = json.loads(run_cli("utils", "defs-yaml-json-schema", cwd=root).stdout)
    good = yaml.safe_load((root / "shop/defs/tables/defs.yaml").read_text())
    jsonschema.validate(good, schema)
    typo = {**good, "attributes": {**good["attributes"], "group_nmae": "x"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, schema)
    wrong = {**good, "attributes": {**good["attributes"], "defs_state": {"management_type": "S3"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema)
