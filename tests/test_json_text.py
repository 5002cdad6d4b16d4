"""JSON text written piece by piece (``defstate.json_text``, ``LoadResult.to_json_text``) is
byte for byte what ``json.dumps(..., separators=(",", ":"))`` writes."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ProjectFactory, run_cli
from defstate import load_defs
from defstate.json_text import COMPACT, json_array, json_object, json_string, json_value


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Level(enum.IntEnum):
    HIGH = 3


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and the infinities too: json.dumps writes them
    | st.text()
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_json_value_writes_what_dumps_writes(value: Any) -> None:
    assert json_value(value) == dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_like, max_size=5))
def test_json_array_writes_what_dumps_writes(values: list[Any]) -> None:
    assert json_array(values) == dumps(values)
    assert json_array(tuple(values)) == dumps(tuple(values))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), json_like, max_size=5)
    | st.dictionaries(st.integers() | st.none() | st.booleans(), scalars, max_size=3)
)
def test_json_object_writes_what_dumps_writes(value: dict[Any, Any]) -> None:
    assert json_object(value) == dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        'quote " and \\ backslash',
        "line\nbreak\ttab\x00",
        "é ü 字 \U0001f600",
        "\ud800",
    ],
)
def test_json_string_escapes_like_dumps(value: str) -> None:
    assert json_string(value) == dumps(value)


def test_subclasses_and_the_rest_go_to_the_encoder() -> None:
    assert json_value(Level.HIGH) == dumps(Level.HIGH) == "3"
    assert json_value(1.5) == "1.5"
    assert json_object([]) == "[]"  # not a dict: written as json.dumps would
    for write in (json_value, json_array, json_object):
        with pytest.raises(TypeError):
            write({1, 2})  # not serialisable: the same error as json.dumps
    with pytest.raises(TypeError):
        json_value(object())


def test_cycles_still_fail() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(RecursionError):
        COMPACT.encode(cycle)


VARIED_COMPONENT = """
import enum

import attrs

from defstate import AssetCheckSpec, AssetSpec, Component, Definitions


class Level(enum.IntEnum):
    HIGH = 3


@attrs.define
class Varied(Component):
    def build_defs(self, context):
        return Definitions(
            [
                AssetSpec(key="plain"),
                AssetSpec(
                    key=["raw", "orders \\u00e9"],
                    deps=["plain", ["x", "y"], "plain"],
                    description='say "hi"\\n\\tbye \\u5b57',
                    group_name="g",
                    kinds=["table", "duckdb", "table"],
                    tags={"tier": "gold", "pii": ""},
                    owners=["team:data", "a@b.c"],
                    metadata={
                        "rows": 10,
                        "ratio": 0.25,
                        "big": 2**70,
                        "ok": True,
                        "none": None,
                        "level": Level.HIGH,
                        "nested": {"columns": [{"name": "id", "type": "int"}], "t": (1, 2)},
                        "dagster/table_name": '"db"."s"."t"',
                    },
                    code_version="abc123",
                ),
                AssetSpec(key="x/y", metadata={"3": "digits key"}),
            ],
            [AssetCheckSpec(name="not_null", asset="plain", description="checks")],
        )
"""


@pytest.fixture
def varied_project(make_project: ProjectFactory) -> Path:
    return make_project(
        {
            "defs/a/defs.yaml": "type: varied_component.Varied\n",
            "defs/b/defs.yaml": "type: varied_component.Varied\n",  # duplicates: errors too
            "varied_component.py": VARIED_COMPONENT,
        },
        name="variedproj",
    )


def test_load_result_text_is_the_dict_document_encoded(varied_project: Path) -> None:
    result = load_defs(varied_project)
    document = result.to_json_dict()
    assert len(document["assets"]) == 3 and document["errors"] and document["asset_checks"]
    assert result.to_json_text() == dumps(document)


def test_list_defs_json_through_a_pipe_is_unchanged(varied_project: Path) -> None:
    listed = run_cli("list", "defs", "--json", "--no-refresh", cwd=varied_project)
    assert listed.returncode == 1  # the duplicates
    expected = load_defs(varied_project).to_json_dict()
    assert json.loads(listed.stdout) == json.loads(dumps(expected))
    assert listed.stdout == dumps(expected) + "\n"


@pytest.mark.parametrize("per_chunk", [1, 2, 500])
def test_chunks_join_to_the_document(varied_project: Path, per_chunk: int) -> None:
    result = load_defs(varied_project)
    chunks = list(result.json_text_chunks(per_chunk))
    assert "".join(chunks) == dumps(result.to_json_dict())
    assert len(chunks) == 2 + -(-3 // per_chunk)  # head, one per chunk of assets, tail


def test_a_project_without_assets(make_project: ProjectFactory) -> None:
    result = load_defs(make_project({"defs/README.md": "nothing here\n"}, name="emptyproj"))
    assert result.to_json_text() == dumps(result.to_json_dict())
    assert json.loads(result.to_json_text())["assets"] == []
