from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from defstate import AssetKey, AssetSpec, Definitions
from defstate.definitions import merge_definitions


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
