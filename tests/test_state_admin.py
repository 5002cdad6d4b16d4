"""``defstate state ls / show / diff / rollback / gc`` on versioned (file://) and local state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli
from defstate import load_defs, refresh_state
from defstate.errors import DefstateError
from defstate.loader.state_admin import diff_state, gc_state, list_state, rollback_state


def _project(make_project: ProjectFactory, tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "api.json"
    source.write_text(json.dumps(["a", "b", "c"]))
    root = make_project(
        {
            "defs/api/defs.yaml": (
                "type: fixture_components.ListComponent\nattributes:\n  name: api\n"
                f"  source_file: {source}\n"
                "  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n"
            ),
            "defs/local/defs.yaml": (
                "type: fixture_components.ListComponent\nattributes:\n  name: here\n  assets: [x]\n"
            ),
        },
        pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path}/store"\n',
    )
    return root, source


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))


def _publish(root: Path, source: Path, names: list[str]) -> str:
    source.write_text(json.dumps(names))
    (result,) = refresh_state(root, keys=["List[api]"]).results
    assert result.ok and result.version is not None
    return result.version.version


def test_ls_show_and_diff(make_project: ProjectFactory, tmp_path: Path) -> None:
    root, source = _project(make_project, tmp_path)
    rows = {r.key: r for r in list_state(root)}
    assert rows["List[api]"].latest is None and rows["List[here]"].latest is None
    v1 = _publish(root, source, ["a", "b", "c"])
    v2 = _publish(root, source, ["b", "c", "d"])
    assert refresh_state(root, keys=["List[here]"]).ok

    listed = run_cli("state", "ls", "--json", cwd=root)
    assert listed.returncode == 0, listed.stderr
    keys = {k["key"]: k for k in json.loads(listed.stdout)["keys"]}
    assert keys["List[api]"]["latest"]["version"] == v2
    assert keys["List[here]"]["latest"]["version"] == "local"
    assert keys["List[api]"]["components"] == ["defs/api/defs.yaml:1"]

    shown = json.loads(run_cli("state", "show", "List[api]", "--version", v1, cwd=root).stdout)
    assert shown["version"] == v1 and shown["size"] == len(json.dumps(["a", "b", "c"]))

    diff = diff_state(root, "List[api]")  # latest against the one before it
    assert (diff.old, diff.new) == (v1, v2)
    assert diff.added == ("d",) and diff.removed == ("a",) and diff.changed == ()
    text = run_cli("state", "diff", "List[api]", v2, v1, cwd=root)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [f"List[api]: {v2} -> {v1}: +1 -1 ~0", "  + a", "  - d"]


def test_diff_reports_asset_checks(make_project: ProjectFactory, tmp_path: Path) -> None:
    root, source = _project(make_project, tmp_path)
    v1 = _publish(root, source, ["a", "b", "a:fresh", "b:rows"])
    v2 = _publish(root, source, ["a", "b", "a:fresh", "a:unique"])
    diff = diff_state(root, "List[api]", v1, v2)
    assert (diff.added, diff.removed, diff.changed) == ((), (), ())
    assert (diff.checks_added, diff.checks_removed, diff.checks_changed) == (
        ("a:unique",),
        ("b:rows",),
        (),
    )
    assert diff.to_json_dict()["checks_added"] == ("a:unique",)
    text = run_cli("state", "diff", "List[api]", v1, v2, cwd=root)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        f"List[api]: {v1} -> {v2}: +0 -0 ~0",
        "asset checks: +1 -1 ~0",
        "  + a:unique",
        "  - b:rows",
    ]
    as_json = json.loads(run_cli("state", "diff", "List[api]", v1, v2, "--json", cwd=root).stdout)
    assert as_json["checks_removed"] == ["b:rows"]


def test_rollback_moves_latest_back(make_project: ProjectFactory, tmp_path: Path) -> None:
    root, source = _project(make_project, tmp_path)
    v1 = _publish(root, source, ["a", "b", "c"])
    _publish(root, source, [])  # a bad refresh got through
    assert [str(k) for k in load_defs(root).definitions.asset_keys] == []
    done = run_cli("state", "rollback", "List[api]", v1, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"rolled back List[api]  latest={v1}")
    assert sorted(str(k) for k in load_defs(root).definitions.asset_keys) == ["a", "b", "c"]

    unknown = run_cli("state", "rollback", "List[api]", "no-such-version", cwd=root)
    assert unknown.returncode == 2 and "has no stored version 'no-such-version'" in unknown.stderr
    by_prefix = run_cli("state", "rollback", "List[api]", v1[:8], cwd=root)  # like git
    assert by_prefix.returncode == 0 and f"latest={v1}" in by_prefix.stdout
    shown = run_cli("state", "show", "List[api]", "--version", v1[:6], cwd=root)
    assert json.loads(shown.stdout)["version"] == v1
    ambiguous = run_cli("state", "diff", "List[api]", "", cwd=root)
    assert ambiguous.returncode == 2 and "is ambiguous" in ambiguous.stderr
    local = run_cli("state", "rollback", "List[here]", "local", cwd=root)
    assert local.returncode == 1 and "keeps no versions" in local.stderr
    with pytest.raises(DefstateError, match="unknown state key"):
        rollback_state(root, "List[nope]", v1)


def test_gc_keeps_latest_and_newest(make_project: ProjectFactory, tmp_path: Path) -> None:
    root, source = _project(make_project, tmp_path)
    versions = [_publish(root, source, [f"n{i}"]) for i in range(5)]
    assert rollback_state(root, "List[api]", versions[0])  # latest is now the oldest
    deleted = gc_state(root, keep=2, grace=0).deleted
    assert sorted(deleted["List[api]"]) == sorted(versions[1:3])
    remaining = {p.name for p in (tmp_path / "store/List[api]/versions").iterdir()}
    assert remaining == {versions[0], versions[3], versions[4]}
    assert [str(k) for k in load_defs(root).definitions.asset_keys] == ["n0"]
    again = run_cli("state", "gc", "--keep", "2", "--grace", "0", "--json", cwd=root)
    (key_report,) = json.loads(again.stdout)["keys"]
    assert key_report["key"] == "List[api]" and key_report["deleted"] == []
    assert key_report["bytes_freed"] == 0
