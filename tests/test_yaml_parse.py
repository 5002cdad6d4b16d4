"""defs.yaml documents without anchors are checked and built in one pass (defstate.loader.
yaml_parse): the same values, lines and errors as with the separate measuring pass that
documents with anchors (aliases, merges of anchors) still get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from defstate.loader import yaml_parse
from defstate.loader.yaml_source import MAX_DEPTH, YamlFile

# a comment with '&' makes the parser measure a document first, changing nothing else
MEASURED = "\n# & forces the measuring pass\n"


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per document that went through the measuring pass."""
    seen: list[int] = []

    class Counting(yaml_parse._Measure):
        def check(self, root: yaml.Node) -> None:
            seen.append(root.start_mark.line + 1)
            super().check(root)

    monkeypatch.setattr(yaml_parse, "_Measure", Counting)
    return seen


def _parse(text: str) -> YamlFile:
    return yaml_parse.parse_documents(Path("defs.yaml"), text)


def _described(loaded: YamlFile) -> tuple[str, list[str]]:
    return repr(loaded.documents), [str(e) for e in loaded.errors]


def test_only_documents_with_anchors_are_measured_first(measured: list[int]) -> None:
    _parse("a: 1\n---\nb: [1, {c: 2}]\n")
    assert measured == []
    _parse("a: &x [1]\nb: *x\n---\nc: 1\n")
    assert measured == [1, 4]  # every document of a file with an anchor


BAD = [
    "a: !!python/object:os.system ls\n",
    "a:\n  - !secret x\n",
    "a: !!set {b, c}\n",
    "a: !!omap [b: 1]\n",
    "!!binary aGVsbG8=\n",
    "!!python/name:os.system : 1\n",  # a key with a bad tag
    "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
    "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n",  # at the limit: fine
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, MAX_DEPTH + 2)),
    "a: !!int 12x\nb: !!int 3\n",
    "a: 1\na: 2\n",
    "<<: {a: 1}\nb: 2\n",  # a merge without anchors
    "<<: [{a: 1}, {b: 2}]\nb: 3\n",
    "<<: 1\n",
    "a: <<\n",
    "? [a]\n: 1\n",
    "? !!str [a]\n: 1\n",  # a key with a collection tag that is not one
    "? [!!binary x]\n: 1\n",
    "<<: !!binary x\n",  # what is merged is checked before it is flattened
    "a:\n  <<: [{b: !secret x}]\n",
]


@pytest.mark.parametrize("text", BAD)
def test_one_pass_reports_what_the_measuring_pass_reports(text: str) -> None:
    one_pass, measured = _parse(text), _parse(text + MEASURED)
    assert _described(one_pass) == _described(measured)


def test_nesting_past_the_limit_is_an_error_at_its_line() -> None:
    deep = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, MAX_DEPTH + 2))
    (error,) = _parse(deep).errors
    assert str(error) == f"defs.yaml:{MAX_DEPTH + 1}: nested deeper than {MAX_DEPTH} levels"


_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), children, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=2000, database=None)
@given(values=st.lists(_VALUES, min_size=1, max_size=3), flow=st.booleans())
def test_one_pass_builds_what_the_measuring_pass_builds(values: list[Any], flow: bool) -> None:
    text = yaml.safe_dump_all(values, default_flow_style=flow, allow_unicode=True)
    assert "&" not in text or "&" in str(values)
    assert _described(_parse(text)) == _described(_parse(text + MEASURED))
