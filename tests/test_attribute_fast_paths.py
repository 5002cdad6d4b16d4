"""The shortcuts of turning a defs.yaml entry into a component: plain scalar attributes are
checked by type alone, entries without templates are not copied; both give exactly what the
general path gives (values, types, errors)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defstate.components import attributes
from defstate.components.attributes import construct, convert_value
from defstate.errors import AttributeValueError
from defstate.loader.yaml_source import YamlDocument, render_templates


class Colour(enum.Enum):
    RED = "red"


@attrs.define
class Inner:
    level: int = 0


@attrs.define(kw_only=True)
class Many:
    text: str = ""
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    maybe: str | None = None
    either: float | int = 0
    other: int | float = 0
    path: Path = Path(".")
    anything: Any = None
    choice: Literal["a", "b"] = "a"
    colour: Colour = Colour.RED
    items: list[str] = attrs.field(factory=list)
    inner: Inner = attrs.field(factory=Inner)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The attributes that went through the general conversion."""
    seen: list[str] = []
    real = attributes.convert_value

    def counting(value: Any, hint: Any, path: tuple[str | int, ...]) -> Any:
        seen.append(".".join(map(str, path)))
        return real(value, hint, path)

    monkeypatch.setattr(attributes, "convert_value", counting)
    return seen


def test_plain_scalars_are_checked_by_their_type_alone(conversions: list[str]) -> None:
    built = construct(
        Many,
        {
            "text": "t",
            "count": 2,
            "ratio": 0.5,
            "flag": True,
            "maybe": None,
            "either": 1.5,
            "other": 3,
            "anything": {"a": [1]},
        },
    )
    assert conversions == []
    assert (built.text, built.count, built.ratio, built.flag, built.maybe) == (
        "t",
        2,
        0.5,
        True,
        None,
    )
    assert (built.either, built.other, built.anything) == (1.5, 3, {"a": [1]})


def test_values_that_convert_or_need_more_than_a_type_take_the_general_path(
    conversions: list[str],
) -> None:
    built = construct(
        Many,
        {
            "ratio": 2,  # an int for a float: converted
            "either": 3,  # float | int: the float arm comes first
            "path": "x/y",
            "choice": "b",
            "colour": "red",
            "items": ["a"],
            "inner": {"level": 4},
        },
    )
    # a nested attrs class given a mapping is built directly (its "level" is a plain int)
    assert sorted(conversions) == sorted(
        ["ratio", "either", "path", "choice", "colour", "items", "items.0"]
    )
    assert type(built.ratio) is float and type(built.either) is float
    assert built.path == Path("x/y") and built.colour is Colour.RED
    assert built.inner == Inner(4) and built.items == ["a"] and built.choice == "b"


@pytest.mark.parametrize(
    ("values", "where", "message"),
    [
        ({"count": True}, ("count",), "attribute 'count': expected int, got bool True"),
        ({"text": 1}, ("text",), "attribute 'text': expected str, got int 1"),
        ({"maybe": 1.5}, ("maybe",), "attribute 'maybe': expected str | null, got float 1.5"),
        (
            {"inner": {"level": "x"}},
            ("inner", "level"),
            "attribute 'inner.level': expected int, got str 'x'",
        ),
        ({"inner": 5}, ("inner",), "attribute 'inner': expected a mapping (Inner), got int 5"),
        (
            {"inner": {"depth": 1}},
            ("inner", "depth"),
            "unknown attribute 'depth' (known attributes: level)",
        ),
    ],
)
def test_errors_are_those_of_the_general_path(
    values: dict[str, Any], where: tuple[str, ...], message: str
) -> None:
    with pytest.raises(AttributeValueError) as caught:
        construct(Many, values)
    assert (caught.value.path, caught.value.message) == (where, message)  # path: the line


_HINTS = [str, int, float, bool, type(None), Path, Any, str | None, float | int, int | float]
_HINTS += [bool | int, int | bool, str | Path, Path | str, Any | None, None | float]
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3)
)


@settings(max_examples=500, deadline=None)
@given(hint=st.sampled_from(_HINTS), value=_VALUES)
def test_the_type_check_keeps_exactly_what_the_conversion_keeps(hint: Any, value: Any) -> None:
    try:
        converted = convert_value(value, hint, ("x",))
    except AttributeValueError:
        assert type(value) not in attributes._kept_types(hint)
        return
    if type(value) in attributes._kept_types(hint):
        assert converted is value


def _document(value: Any) -> YamlDocument:
    return YamlDocument(Path("defs.yaml"), value, {(): 1})


def test_an_entry_without_templates_is_given_as_it_is() -> None:
    value = {"a": ["x", 1, 2.5, True, None, {"b": "no { braces }"}]}
    assert render_templates(value, _document(value), Path("/root")) is value


def test_templates_anywhere_are_still_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHO", "me")
    value = {"a": [1, {"b": ["{{ env.WHO }}"]}], "c": "{{ project_root }}"}
    rendered = render_templates(value, _document(value), Path("/root"))
    assert rendered == {"a": [1, {"b": ["me"]}], "c": "/root"}
    assert value["a"][1] == {"b": ["{{ env.WHO }}"]}  # the input is not changed


def test_another_thread_never_sees_a_class_half_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    # two loads at once (serve's reload and its state view): the first to build a class's
    # fields must not show the others a table without the fields it has not resolved yet
    import threading

    @attrs.define
    class Pair:
        name: str
        size: int

    real = attributes._kept_types
    resolving, release = threading.Event(), threading.Event()

    def slow(hint: Any) -> frozenset[type[Any]]:
        if hint is int and threading.current_thread() is not threading.main_thread():
            resolving.set()  # the first field is resolved, the second not yet
            release.wait(10)
        return real(hint)

    monkeypatch.setattr(attributes, "_kept_types", slow)
    other = threading.Thread(target=construct, args=(Pair, {"name": "a", "size": 1}))
    other.start()
    try:
        assert resolving.wait(10)
        assert construct(Pair, {"name": "b", "size": 2}) == Pair("b", 2)
    finally:
        release.set()
        other.join(10)
