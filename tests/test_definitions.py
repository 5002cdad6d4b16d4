from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from defstate import AssetCheckKey, AssetCheckSpec, AssetKey, AssetSpec, Definitions
from defstate.definitions import merge_definitions
from defstate.errors import AssetCheckError


def test_asset_key_text_round_trip() -> None:
    key = AssetKey.from_string("raw/orders")
    assert key.path == ("raw", "orders")
    assert str(key) == "raw/orders"
    assert AssetKey.from_user(["raw", "orders"]) == key
    assert AssetKey.from_user(key) is key


@pytest.mark.parametrize("bad", [(), ("",), ("a/b",)])
def test_asset_key_rejects_bad_parts(bad: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        AssetKey(bad)


def test_spec_normalises_user_input() -> None:
    spec = AssetSpec(
        key="a/b",
        deps=["x", ["y", "z"], "x"],
        kinds=["table", "duckdb", "table"],
        tags={"tier": "gold"},
        owners=["team-a"],
        metadata={"rows": 3},
    )
    assert spec.key == AssetKey(("a", "b"))
    assert [str(d) for d in spec.deps] == ["x", "y/z"]
    assert spec.kinds == ("duckdb", "table")
    assert spec.to_json_dict()["deps"] == ["x", "y/z"]


@pytest.mark.parametrize(
    "metadata",
    [
        {"when": object()},
        {"rows": float("nan")},
        {"nested": {"columns": [1, {"bad": {1, 2}}]}},
        {"path": Path("x")},
    ],
    ids=["object", "nan", "nested-set", "path"],
)
def test_spec_metadata_must_be_json(metadata: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="metadata must be JSON-serialisable"):
        AssetSpec(key="a", metadata=metadata)


@pytest.mark.parametrize(
    "metadata",
    [
        {"rows": 3, "name": "t", "ok": True, "none": None},
        {"ratio": 0.5, "columns": ["a", "b"], "nested": {"x": [1, 2.5, None]}},
        {1: "int keys are written as strings"},
    ],
    ids=["flat", "nested", "int-key"],
)
def test_spec_metadata_accepts_json(metadata: dict[Any, Any]) -> None:
    assert AssetSpec(key="a", metadata=metadata).metadata == metadata


def test_merge_reports_duplicates_naming_both_sources() -> None:
    merged = merge_definitions(
        [
            ("defs/one/defs.yaml:1", Definitions([AssetSpec(key="a"), AssetSpec(key="b")])),
            ("defs/two/defs.yaml:1", Definitions([AssetSpec(key="b"), AssetSpec(key="c")])),
        ]
    )
    assert [str(k) for k in merged.definitions.asset_keys] == ["a", "b", "c"]
    assert merged.sources[AssetKey(("b",))] == "defs/one/defs.yaml:1"
    (error,) = merged.errors
    assert "defs/one/defs.yaml:1" in str(error)
    assert "defs/two/defs.yaml:1" in str(error)
    assert "asset b" in str(error)


def test_asset_check_spec_shape_and_key() -> None:
    check = AssetCheckSpec(
        name="not_null_id",
        asset=["shop", "orders"],
        description="id is never null",
        blocking=True,
        additional_deps=["customers", "customers"],
        metadata={"dbt/unique_id": "test.shop.not_null_id"},
    )
    assert check.key == AssetCheckKey(AssetKey(("shop", "orders")), "not_null_id")
    assert str(check.key) == "shop/orders:not_null_id"
    assert check.to_json_dict() == {
        "asset": "shop/orders",
        "name": "not_null_id",
        "description": "id is never null",
        "blocking": True,
        "additional_deps": ["customers"],
        "metadata": {"dbt/unique_id": "test.shop.not_null_id"},
    }
    with pytest.raises(ValueError, match="check name"):
        AssetCheckSpec(name="", asset="a")
    with pytest.raises(ValueError, match="metadata must be JSON-serialisable"):
        AssetCheckSpec(name="c", asset="a", metadata={"x": object()})
    defs = Definitions(assets=[AssetSpec(key="shop/orders")], asset_checks=[check])
    assert defs.get_asset_check("shop/orders", "not_null_id") is check
    with pytest.raises(KeyError):
        defs.get_asset_check("shop/orders", "other")


def test_code_version_is_part_of_the_spec() -> None:
    spec = AssetSpec(key="a", code_version="abc123")
    assert spec.to_json_dict()["code_version"] == "abc123"
    assert spec != AssetSpec(key="a", code_version="def456")


def test_merge_checks_across_sources_and_reports_bad_ones() -> None:
    one = Definitions(
        [AssetSpec(key="a")],
        [AssetCheckSpec(name="fresh", asset="a"), AssetCheckSpec(name="rows", asset="b")],
    )
    two = Definitions(
        [AssetSpec(key="b")],
        [AssetCheckSpec(name="fresh", asset="a"), AssetCheckSpec(name="x", asset="nowhere")],
    )
    merged = merge_definitions([("defs/one/defs.yaml:1", one), ("defs/two/defs.yaml:1", two)])
    # a check of an asset another source defines is fine
    assert [str(c.key) for c in merged.definitions.asset_checks] == ["a:fresh", "b:rows"]
    assert merged.check_sources[AssetCheckKey("b", "rows")] == "defs/one/defs.yaml:1"
    duplicate, unknown = merged.errors
    assert isinstance(duplicate, AssetCheckError) and isinstance(unknown, AssetCheckError)
    assert str(duplicate) == (
        "asset check a:fresh is defined twice: by defs/one/defs.yaml:1 and by defs/two/defs.yaml:1"
    )
    assert "nowhere:x" in str(unknown) and "defs/two/defs.yaml:1" in str(unknown)
    assert "targets asset nowhere, which no component defines" in str(unknown)
