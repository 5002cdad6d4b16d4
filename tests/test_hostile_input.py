"""Hostile and mistaken input: every defs.yaml problem is a file:line error of its entry, alias
bombs are bounded, every string is a key or an InvalidStateKeyError, templates are exactly the
allowed ones, and a user's failing component is named by file and line (issue 13)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli
from defstate import load_defs
from defstate.errors import DefstateError, InvalidStateKeyError, TemplateError
from defstate.loader.yaml_source import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    expand_templates,
    read_yaml_file,
)
from defstate.state_storage.keys import MAX_ENCODED_KEY_LENGTH, encode_key

GOOD = """
type: fixture_components.PlainComponent
attributes:
  assets: [good_one]
"""


def _entry(value: str) -> str:
    return f"type: fixture_components.PlainComponent\nattributes:\n  assets: [x]\n  path: {value}\n"


BAD_VALUES = {
    "date": ("2020-13-45", "month must be in 1..12"),
    "int": ("!!int 1_000x", "!!int"),
    "float": ("!!float fast", "!!float"),
    "bool": ("!!bool maybe", "!!bool"),
    "huge_int": ("9" * 5000, "integer too large"),
    "huge_hex_int": ("0x" + "f" * 5000, "integer too large"),  # its letters are digits too
    "timestamp": ("!!timestamp yesterday", "!!timestamp"),
    "python_tag": ("!!python/object:os.system ls", "unsupported tag"),
    "python_name": ("!!python/name:os.system ''", "unsupported tag"),
    "local_tag": ("!secret abc", "unsupported tag"),
    "binary": ("!!binary aGVsbG8=", "unsupported tag"),
    "set": ("!!set {a, b}", "unsupported tag"),
}


def test_every_bad_value_is_an_error_of_its_entry_and_the_others_load(
    make_project: ProjectFactory,
) -> None:
    files = {"defs/good/defs.yaml": GOOD}
    for name, (value, _) in BAD_VALUES.items():
        files[f"defs/{name}/defs.yaml"] = _entry(value)
    files["defs/dup/defs.yaml"] = GOOD.replace("[good_one]", "[a]\n  assets: [b]")
    files["defs/deep/defs.yaml"] = _entry("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))
    root = make_project(files)
    (root / "defs/latin1").mkdir()
    (root / "defs/latin1/defs.yaml").write_bytes(b"type: x\n# caf\xe9\n")
    result = load_defs(root)
    assert [a.key.to_string() for a in result.definitions.assets] == ["good_one"]
    by_file = {Path(str(e.location.path)).parent.name: e for e in result.errors if e.location}
    assert len(result.errors) == len(BAD_VALUES) + 3, [str(e) for e in result.errors]
    for name, (_, words) in BAD_VALUES.items():
        error = by_file[name]
        assert error.location is not None and error.location.line == 4, str(error)
        assert words in error.message, str(error)
    assert by_file["dup"].location.line == 4 and "duplicate key 'assets'" in by_file["dup"].message
    assert f"deeper than {MAX_DEPTH} levels" in by_file["deep"].message
    assert by_file["latin1"].location.line == 2 and "not UTF-8" in by_file["latin1"].message


def test_a_bad_document_hides_no_other_document_of_its_file(tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text("a: 1\n---\nb: 2020-02-30\n---\nc: [1, 2]\n---\nd: {e: !!float x}\n")
    loaded = read_yaml_file(path)
    assert [d.value for d in loaded.documents] == [{"a": 1}, {"c": [1, 2]}]
    assert [(e.location.line if e.location else 0) for e in loaded.errors] == [3, 7]


def test_cli_lists_the_good_component_and_exits_1_with_file_and_line(
    make_project: ProjectFactory,
) -> None:
    root = make_project({"defs/good/defs.yaml": GOOD, "defs/bad/defs.yaml": _entry("2020-13-45")})
    listed = run_cli("list", "defs", "--json", cwd=root)
    assert listed.returncode == 1
    document = json.loads(listed.stdout)
    assert [a["key"] for a in document["assets"]] == ["good_one"]
    (error,) = document["errors"]
    assert error["file"].endswith("bad/defs.yaml") and error["line"] == 4


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    + "type: fixture_components.PlainComponent\nattributes: {assets: *i}\n"
)
MERGE_BOMB = "a0: &a0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5, k5: 6, k6: 7, k7: 8, k8: 9}\n" + "".join(
    f"a{i + 1}: &a{i + 1} {{<<: [{', '.join([f'*a{i}'] * 9)}]}}\n" for i in range(9)
)


@pytest.mark.parametrize("bomb", [BILLION_LAUGHS, MERGE_BOMB], ids=["aliases", "merges"])
def test_alias_bombs_are_rejected_fast_with_file_and_line(tmp_path: Path, bomb: str) -> None:
    import resource

    path = tmp_path / "defs.yaml"
    path.write_text(bomb)
    assert len(bomb) < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    loaded = read_yaml_file(path)
    assert time.monotonic() - start < 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    (error,) = loaded.errors
    assert error.location is not None and error.location.line == 1
    assert f"{MAX_ALIAS_NODES} nodes" in error.message


def test_ordinary_aliases_and_merges_still_work(tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text(
        "base: &base {group: g, retries: 2}\nitems: [*base, *base]\none: {<<: *base, retries: 3}\n"
    )
    (document,) = read_yaml_file(path).documents
    assert document.value["items"] == [{"group": "g", "retries": 2}] * 2
    assert document.value["one"] == {"group": "g", "retries": 3}
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("a: &a [1, *a]\n")
    (error,) = read_yaml_file(recursive).errors
    assert "recursive alias" in error.message


@pytest.mark.parametrize(
    "key", ["\ud800", "a\udfffb", "x" * (MAX_ENCODED_KEY_LENGTH + 1), "\U0001f600" * 340]
)
def test_unencodable_keys_raise_a_short_invalid_state_key_error(key: str) -> None:
    with pytest.raises(InvalidStateKeyError) as info:
        encode_key(key)
    assert isinstance(info.value, DefstateError)
    assert len(str(info.value)) < 250
    if len(key) > 10:
        assert str(MAX_ENCODED_KEY_LENGTH) in str(info.value)


def test_an_invalid_key_is_an_error_of_its_entry(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/good/defs.yaml": GOOD,
            "defs/long/defs.yaml": """
                type: fixture_components.ListComponent
                attributes:
                  assets: [a]
                  defs_state:
                    key: "{{ env.LONG_KEY }}"
                """,
        }
    )
    import os

    os.environ["LONG_KEY"] = "k" * 1000
    try:
        result = load_defs(root)
    finally:
        del os.environ["LONG_KEY"]
    (error,) = result.errors
    assert error.location is not None and error.location.line == 5
    assert "too long" in error.message and len(error.message) < 250
    assert [a.key.to_string() for a in result.definitions.assets] == ["good_one"]


def test_dagster_template_spellings() -> None:
    env = {"A": "alpha", "B_2": "beta"}
    root = Path("/proj")
    text = (
        "{{ env.A }}|{{ env('A') }}|{{env(\"B_2\")}}|{{ project_root }}|{{ context.project_root }}"
    )
    assert expand_templates(text, root, env) == "alpha|alpha|beta|/proj|/proj"
    assert expand_templates(
        "{{ env.A }}{{ env.B_2 }}", root, {"A": "{{ env.B_2 }}", "B_2": "x"}
    ) == (
        "{{ env.B_2 }}x"  # an expanded value is never expanded again
    )


@pytest.mark.parametrize(
    "template",
    [
        "{{ env }}",
        "{{ env.A.B }}",
        "{{ env['A'] }}",
        "{{ 1 + 1 }}",
        "{{ ''.__class__ }}",
        "{{ project_root() }}",
        "{{ context.defs_dir }}",
        "{{ env('A') | upper }}",
        "{{ env(A) }}",
        "{{ env.A }} {{ env.\nA }}",
    ],
)
def test_anything_else_is_rejected_saying_what_is_allowed(template: str) -> None:
    with pytest.raises(TemplateError, match=r"unsupported template .*allowed: \{\{ env\.NAME"):
        expand_templates(template, Path("/p"), {"A": "a"})


def test_every_unset_variable_is_reported(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": """
                type: fixture_components.PlainComponent
                attributes:
                  assets: ["{{ env.UNSET_ONE_13 }}"]
                  group: "{{ env('UNSET_TWO_13') }}-{{ env.UNSET_THREE_13 }}"
                """
        }
    )
    (error,) = load_defs(root).errors
    assert error.location is not None and error.location.line == 3
    for name in ("UNSET_ONE_13", "UNSET_TWO_13", "UNSET_THREE_13"):
        assert f"environment variable {name} is not set" in error.message
    assert "(line 4)" in error.message


USER_COMPONENTS = """
from pathlib import Path

import attrs

from defstate import ComponentLoadContext, Definitions, StateBackedComponent


@attrs.define(kw_only=True)
class Flaky(StateBackedComponent):
    where: str = "refresh"

    def get_defs_state_key(self) -> str:
        return "Flaky"

    def write_state_to_path(self, state_path: Path) -> None:
        if self.where == "refresh":
            _fetch()
        state_path.write_text("[]")

    def build_defs_from_state(self, context: ComponentLoadContext, state_path: Path | None) -> Definitions:
        if self.where == "build":
            raise KeyError("missing column")
        return Definitions()


def _fetch() -> None:
    raise ConnectionError("catalog unreachable")
"""


def _line_of(code: str) -> int:
    """The line of ``code`` in the written ``userpkg/components.py``."""
    lines = USER_COMPONENTS.lstrip("\n").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.strip() == code)


def _user_project(make_project: ProjectFactory, where: str) -> Path:
    return make_project(
        {
            "userpkg/__init__.py": "",
            "userpkg/components.py": USER_COMPONENTS,
            "defs/flaky/defs.yaml": f"type: userpkg.components.Flaky\nattributes:\n  where: {where}\n",
        }
    )


def test_a_failing_refresh_names_the_users_file_and_line_and_debug_shows_the_traceback(
    make_project: ProjectFactory,
) -> None:
    root = _user_project(make_project, "refresh")
    line = _line_of('raise ConnectionError("catalog unreachable")')
    plain = run_cli("state", "refresh", cwd=root)
    assert plain.returncode == 1
    assert f"(raised at userpkg/components.py:{line})" in plain.stderr
    assert "Traceback" not in plain.stderr
    for args in (("--debug", "state", "refresh"), ("state", "refresh", "--debug")):
        debug = run_cli(*args, cwd=root)
        assert debug.returncode == 1, debug.stderr
        assert "Traceback" in debug.stderr and "in _fetch" in debug.stderr, debug.stderr
        assert "userpkg/components.py" in debug.stderr


def test_a_failing_build_names_the_users_file_and_line(make_project: ProjectFactory) -> None:
    root = _user_project(make_project, "build")
    line = _line_of('raise KeyError("missing column")')
    listed = run_cli("list", "defs", "--debug", cwd=root)
    assert listed.returncode == 1
    assert (
        f"defs/flaky/defs.yaml:1: [Flaky] KeyError: 'missing column' (raised at userpkg/components.py:{line})"
        in listed.stderr
    )
    assert "Traceback" in listed.stderr and "in build_defs_from_state" in listed.stderr
