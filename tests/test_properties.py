"""Property-based tests (hypothesis) over defs.yaml documents, attribute values, state keys and
templates: every input loads, or is a defstate error with file and line; nothing else is
raised, nothing hangs (2 s deadline per example), no key leaves the state root, and nothing
but the allowed templates is expanded. About 11 000 examples in all (issue 13)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defstate.errors import DefstateError, InvalidStateKeyError, TemplateError
from defstate.loader.discovery import instantiate
from defstate.loader.project import ProjectConfig
from defstate.loader.yaml_source import expand_templates, read_yaml_file
from defstate.state_storage.keys import MAX_ENCODED_KEY_LENGTH, decode_key, encode_key


def _examples(count: int) -> int:
    """``count``, scaled by ``DEFSTATE_PROPERTY_SCALE`` (e.g. 0.1 while developing, 10 to hunt)."""
    return max(10, int(count * float(os.environ.get("DEFSTATE_PROPERTY_SCALE", "1"))))


PROPERTY = settings(
    deadline=2000,  # an example running past 2 s is a hang
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TYPES = [
    "fixture_components.PlainComponent",
    "fixture_components.ListComponent",
    "no_such_module.Thing",
    "os.path",
    "",
]
FRAGMENTS = [
    "type: ",
    *TYPES,
    "attributes:",
    "  assets: ",
    "  group: ",
    "  path: ",
    "  retries: ",
    "  ratio: ",
    "  enabled: ",
    "  deps: ",
    "  defs_state:",
    "    key: ",
    "    management_type: ",
    "LOCAL_FILESYSTEM",
    "[a, b]",
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    "- ",
    "\n",
    "  ",
    "&x ",
    "*x",
    "&y ",
    "*y",
    "<<: ",
    "? ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!str ",
    "!!null ",
    "!!timestamp ",
    "!!binary ",
    "!!set ",
    "!!python/object:os.system ",
    "!!python/name:os.system ",
    "!local ",
    "2020-13-45",
    "2020-02-29",
    "2001-12-14t21:59:43.10-05:00",
    "1_000x",
    "0x1F",
    "1:30",
    "9" * 60,
    ".inf",
    "maybe",
    "yes",
    "~",
    "'quoted'",
    '"dq\\x41"',
    '"',
    "'",
    "|\n  block\n",
    ">\n  folded\n",
    "# comment",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\t",
    "\x00",
    "\x85",
    "\ufeff",
    "é",
    "{{ env.A }}",
    "{{ env('A') }}",
    "{{ project_root }}",
    "{{ context.project_root }}",
    "{{ env.UNSET_PROPERTY_VAR }}",
    "{{ 1 + 1 }}",
    "{{ ''.__class__ }}",
    "{{",
    "}}",
]


def _yaml_texts() -> st.SearchStrategy[bytes]:
    text = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
    encoded = text.map(lambda t: t.encode("utf-8", "surrogatepass"))
    return st.one_of(encoded, encoded, st.binary(max_size=200))


def _assert_located(exc: DefstateError, path: Path) -> None:
    assert exc.location is not None, repr(exc)
    assert exc.location.path == path, repr(exc)
    assert exc.location.line >= 1, repr(exc)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    root = tmp_path_factory.mktemp("property_project")
    (root / "defs").mkdir()
    return ProjectConfig(root=root, defs_dir=root / "defs")


def _load_entries(config: ProjectConfig, path: Path) -> None:
    loaded = read_yaml_file(path)
    for error in loaded.errors:
        _assert_located(error, path)
    for document in loaded.documents:
        try:
            instance = instantiate(config, document)
        except DefstateError as exc:
            _assert_located(exc, path)
            continue
        key = instance.state_key
        if key is not None:
            target = (config.defs_dir / ".local_defs_state" / encode_key(key)).resolve()
            assert target.is_relative_to(config.defs_dir)


@settings(PROPERTY, max_examples=_examples(4000))
@given(data=_yaml_texts())
def test_any_defs_yaml_loads_or_is_a_located_error(
    project: ProjectConfig, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("A", "alpha")
    monkeypatch.delenv("UNSET_PROPERTY_VAR", raising=False)
    path = project.defs_dir / "defs.yaml"
    path.write_bytes(data)
    _load_entries(project, path)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["{{ env.A }}", "{{ env.NOPE_UNSET }}", "{{ nope }}", "a/b", "../.."]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ATTRIBUTE_NAMES = st.sampled_from(
    ["assets", "deps", "group", "path", "retries", "ratio", "enabled", "defs_state", "unknown"]
)


@settings(PROPERTY, max_examples=_examples(2000))
@given(
    type_name=st.sampled_from(TYPES[:2]),
    attributes=st.dictionaries(ATTRIBUTE_NAMES, JSON_VALUES, max_size=5),
)
def test_any_attribute_values_build_or_are_a_located_error(
    project: ProjectConfig,
    type_name: str,
    attributes: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("A", "alpha")
    path = project.defs_dir / "defs.yaml"
    path.write_text(yaml.safe_dump({"type": type_name, "attributes": attributes}))
    _load_entries(project, path)


KEY_CHARACTERS = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(["\ud800", "\udfff", "/", "\\", ".", "%", "+", "\x00", "é", "\U0001f600"]),
)


@settings(PROPERTY, max_examples=_examples(3000))
@given(key=st.one_of(st.text(KEY_CHARACTERS, max_size=30), st.text(KEY_CHARACTERS, max_size=400)))
def test_every_string_is_a_key_inside_the_root_or_an_invalid_state_key_error(
    key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    surrogate = any(0xD800 <= ord(c) < 0xE000 for c in key)
    too_long = not surrogate and len(encode_key_length(key)) > MAX_ENCODED_KEY_LENGTH
    try:
        encoded = encode_key(key)
    except InvalidStateKeyError as exc:
        assert not key or surrogate or too_long, (key, exc)
        assert len(str(exc)) < 300
        return
    assert key and not surrogate and not too_long
    assert decode_key(encoded) == key
    assert not encoded.is_absolute()
    assert all(p not in (".", "..") and not p.startswith(".") for p in encoded.parts)
    root = Path("/state-root")
    assert (root / encoded).resolve().is_relative_to(root)


def encode_key_length(key: str) -> str:
    """The percent-encoding of ``key``, computed independently of ``encode_key``."""
    from urllib.parse import quote

    return quote(key, safe="[]").replace(".", "%2E").replace("~", "%7E")


ALLOWED = re.compile(
    r"env\.([A-Za-z_][A-Za-z0-9_]*)|env\(\s*(?:'([A-Za-z_][A-Za-z0-9_]*)'|\"([A-Za-z_][A-Za-z0-9_]*)\")\s*\)"
)
TEMPLATE_PIECES = st.sampled_from(
    [
        "{{",
        "}}",
        "{{ ",
        " }}",
        "env",
        "env.",
        "A",
        "B",
        "_X1",
        "UNSET_T",
        ".",
        "(",
        ")",
        "'",
        '"',
        "project_root",
        "context.",
        "context.project_root",
        " ",
        "\n",
        "|",
        "__class__",
        "1+1",
        "x",
        "{",
        "}",
    ]
)


def _reference(text: str, env: dict[str, str], root: str) -> str | None:
    """What the allowed templates give, or None when anything else is between {{ }}."""
    out = []
    position = 0
    for match in re.finditer(r"\{\{(.*?)\}\}", text, re.DOTALL):
        expression = match.group(1).strip()
        if expression in ("project_root", "context.project_root"):
            value = root
        else:
            allowed = ALLOWED.fullmatch(expression)
            if allowed is None:
                return None
            name = next(g for g in allowed.groups() if g)
            if name not in env:
                return None
            value = env[name]
        out.append(text[position : match.start()] + value)
        position = match.end()
    return "".join(out) + text[position:]


@settings(PROPERTY, max_examples=_examples(2500))
@given(text=st.lists(TEMPLATE_PIECES, max_size=25).map("".join))
def test_only_the_allowed_templates_are_expanded(text: str) -> None:
    env = {"A": "<a>", "B": "{{ env.A }}", "_X1": "<x1>"}
    expected = _reference(text, env, "/root")
    try:
        expanded = expand_templates(text, Path("/root"), env)
    except TemplateError as exc:
        assert expected is None, (text, exc)
        assert exc.problems
        return
    assert expanded == expected
