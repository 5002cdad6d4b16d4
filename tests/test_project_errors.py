"""Bad input names the file and the line, and one bad entry hides no other."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ProjectFactory
from defstate import load_defs
from defstate.errors import ProjectConfigError

GOOD = """
type: fixture_components.PlainComponent
attributes:
  assets: [good]
"""


def _only_error(root: Path, relative: str) -> str:
    result = load_defs(root)
    assert [str(k) for k in result.definitions.asset_keys] == ["good"], "good entry still loads"
    (error,) = result.errors
    text = str(error)
    assert str(root / relative) in text
    return text


@pytest.mark.parametrize(
    ("yaml_text", "line", "fragment"),
    [
        ("type: fixture_components.PlainComponent\nattributes:\n  assets: [a\n", 4, "invalid YAML"),
        ("type: nope.Missing\nattributes: {}\n", 1, "cannot import module 'nope'"),
        ("type: fixture_components.Nope\n", 1, "has no 'Nope'"),
        ("type: json.JSONDecoder\n", 1, "not a subclass of defstate.Component"),
        (
            "type: fixture_components.PlainComponent\nattributes:\n  assets: [a]\n  colour: red\n",
            4,
            "unknown attribute 'colour'",
        ),
        (
            "type: fixture_components.PlainComponent\nattributes:\n  group: g\n",
            2,
            "missing required attribute 'assets'",
        ),
        (
            "type: fixture_components.PlainComponent\nattributes:\n  assets: [a]\n  retries: many\n",
            4,
            "attribute 'retries': expected int, got str 'many'",
        ),
        (
            "type: fixture_components.PlainComponent\nattributes:\n  assets:\n    - a\n    - 3\n",
            5,
            "attribute 'assets.1': expected str, got int 3",
        ),
        (
            "type: fixture_components.ListComponent\nattributes:\n  defs_state:\n"
            "    management_type: SOMEWHERE\n",
            4,
            "expected 'LOCAL_FILESYSTEM' | 'VERSIONED_STATE_STORAGE'",
        ),
        (
            "type: fixture_components.PlainComponent\nattributes:\n  assets: [a]\n"
            '  path: "{{ env.DEFSTATE_TEST_UNSET_VAR }}/x"\n',
            4,
            "environment variable DEFSTATE_TEST_UNSET_VAR is not set",
        ),
        (
            "type: fixture_components.PlainComponent\nattributes:\n  assets: [a]\n"
            "  path: \"{{ __import__('os').system('touch pwned') }}\"\n",
            4,
            "unsupported template",
        ),
        ("type: fixture_components.PlainComponent\nattrs: {}\n", 2, "unknown top-level key"),
        ("- just\n- a list\n", 1, "must be a mapping"),
    ],
)
def test_error_names_file_and_line(
    make_project: ProjectFactory, yaml_text: str, line: int, fragment: str
) -> None:
    root = make_project({"defs/good/defs.yaml": GOOD, "defs/bad/defs.yaml": yaml_text})
    text = _only_error(root, "defs/bad/defs.yaml")
    assert f"defs/bad/defs.yaml:{line}:" in text, text
    assert fragment in text
    assert not (root / "pwned").exists()


def test_templates_expand_env_and_project_root(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAREHOUSE", "prod")
    root = make_project(
        {
            "defs/a/defs.yaml": """
            type: fixture_components.PlainComponent
            attributes:
              assets: ["{{ env.WAREHOUSE }}_orders"]
              path: "{{project_root}}/data"
            """
        }
    )
    result = load_defs(root)
    assert result.ok, result.errors
    (spec,) = result.definitions.assets
    assert str(spec.key) == "prod_orders"
    assert spec.metadata == {"path": f"{root.resolve()}/data"}


def test_several_documents_and_nested_folders(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": """
            type: fixture_components.PlainComponent
            attributes: {assets: [one]}
            ---
            type: fixture_components.PlainComponent
            attributes: {assets: [two], deps: {two: [one]}}
            """,
            "defs/b/deeper/defs.yaml": GOOD,
        }
    )
    result = load_defs(root)
    assert result.ok, result.errors
    assert sorted(str(k) for k in result.definitions.asset_keys) == ["good", "one", "two"]
    assert result.asset_sources[result.definitions.asset_keys[1]] == "defs/a/defs.yaml:4"
    assert [str(d) for d in result.definitions.get_asset("two").deps] == ["one"]


def test_duplicate_asset_names_both_files(make_project: ProjectFactory) -> None:
    root = make_project({"defs/a/defs.yaml": GOOD, "defs/b/defs.yaml": GOOD})
    result = load_defs(root)
    (error,) = result.errors
    assert "defs/a/defs.yaml:1" in str(error) and "defs/b/defs.yaml:1" in str(error)


def test_component_exception_is_isolated(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": "type: fixture_components.BrokenComponent\n",
            "defs/b/defs.yaml": GOOD,
        }
    )
    result = load_defs(root)
    assert [str(k) for k in result.definitions.asset_keys] == ["good"]
    (error,) = result.errors
    assert error.component == "defs/a/defs.yaml:1"
    assert "boom while building" in str(error) and "defs/a/defs.yaml:1" in str(error)


def test_bad_pyproject_is_reported_with_its_path(make_project: ProjectFactory) -> None:
    root = make_project({}, pyproject_extra="defs_dirr = 'x'")
    with pytest.raises(ProjectConfigError, match=r"unknown key.*defs_dirr") as info:
        load_defs(root)
    assert str(root / "pyproject.toml") in str(info.value)


def test_missing_defs_dir_is_an_error(make_project: ProjectFactory) -> None:
    root = make_project({}, pyproject_extra='defs_dir = "nowhere"')
    (error,) = load_defs(root).errors
    assert "nowhere" in str(error) and "does not exist" in str(error)


def test_yaml_merge_keys_can_be_overridden(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": """
            type: fixture_components.PlainComponent
            attributes:
              <<: &base {assets: [one], group: base}
              group: mine
            """
        }
    )
    result = load_defs(root)
    assert result.ok, result.errors
    assert result.definitions.assets[0].group_name == "mine"


def test_recursive_alias_is_an_error_of_its_file(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/good/defs.yaml": GOOD,
            "defs/bad/defs.yaml": "type: fixture_components.PlainComponent\nattributes:\n"
            "  assets: &x [a, *x]\n",
        }
    )
    text = _only_error(root, "defs/bad/defs.yaml")
    assert "recursive alias" in text
