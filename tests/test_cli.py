"""The command line, run as real processes: exit codes, JSON, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, ProjectFactory, run_cli, subprocess_env
from fixture_components import call_count


def _project(make_project: ProjectFactory, counter_dir: Path) -> Path:
    def entry(name: str, extra: str = "") -> str:
        return (
            "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: {name}\n  assets: [{name}_1, {name}_2]\n  counter_dir: {counter_dir}\n"
            + extra
        )

    return make_project(
        {
            "defs/api/defs.yaml": entry("api"),
            "defs/crm/defs.yaml": entry("crm"),
            "defs/plain/defs.yaml": (
                "type: fixture_components.PlainComponent\n"
                "attributes:\n  assets: [report]\n  deps: {report: [api_1]}\n  group: bi\n"
            ),
        }
    )


def test_state_refresh_prints_a_line_per_key(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    done = run_cli("state", "refresh", cwd=root)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("refreshed List[api]  version=local  ")
    assert lines[0].endswith(" B")
    assert call_count(counter_dir, "api") == call_count(counter_dir, "crm") == 1


def test_state_refresh_selects_keys_and_alias_works(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    done = run_cli(
        "--project", str(root), "utils", "refresh-defs-state", "--key", "List[crm]", cwd=root.parent
    )
    assert done.returncode == 0, done.stderr
    assert call_count(counter_dir, "api") == 0 and call_count(counter_dir, "crm") == 1
    by_type = run_cli("state", "refresh", "--management-type", "local_filesystem", cwd=root)
    assert by_type.returncode == 0, by_type.stderr
    assert call_count(counter_dir, "api") == 1


def test_unknown_key_lists_known_keys_and_exits_2(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    done = run_cli("state", "refresh", "--key", "List[nope]", cwd=root)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: unknown state key: List[nope] (known keys: List[api], List[crm])"
    )
    assert call_count(counter_dir, "api") == 0


def test_failed_key_exits_1_and_keeps_the_others(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    api = root / "defs/api/defs.yaml"
    api.write_text(api.read_text() + "  fail: true\n")
    done = run_cli("state", "refresh", cwd=root)
    assert done.returncode == 1
    assert "refreshed List[crm]" in done.stdout
    (error,) = done.stderr.splitlines()
    assert error.startswith("error: defs/api/defs.yaml:1: [List[api]] refresh failed")
    assert "external system for api is down" in error
    assert "Traceback" not in done.stderr
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert [a["key"] for a in json.loads(listed.stdout)["assets"]] == ["crm_1", "crm_2", "report"]


def test_list_defs_json_shape_and_refresh_rules(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    done = run_cli("list", "defs", "--json", cwd=root)  # a dev command: refreshes first
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert call_count(counter_dir, "api") == 1
    assert set(data) == {"assets", "asset_checks", "state", "errors"}
    report = next(a for a in data["assets"] if a["key"] == "report")
    assert report == {
        "key": "report",
        "deps": ["api_1"],
        "group": "bi",
        "kinds": [],
        "tags": {},
        "owners": [],
        "metadata": {},
        "description": None,
        "code_version": None,
        "component": "defs/plain/defs.yaml:1",
    }
    assert set(data["state"]) == {"List[api]", "List[crm]"}
    assert set(data["state"]["List[api]"]) >= {"version", "created_at", "management_type"}
    assert data["state"]["List[api]"]["management_type"] == "LOCAL_FILESYSTEM"

    assert data["asset_checks"] == []
    assert run_cli("list", "defs", "--no-refresh", cwd=root).returncode == 0
    deployed = run_cli("list", "defs", cwd=root, env={"DEFSTATE_DEPLOY": "1"})
    assert deployed.returncode == 0, deployed.stderr
    assert call_count(counter_dir, "api") == 1  # neither refreshed


def test_list_defs_shows_asset_checks(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = _project(make_project, counter_dir)
    (root / "defs/checks/defs.yaml").parent.mkdir()
    (root / "defs/checks/defs.yaml").write_text(
        "type: fixture_components.PlainComponent\n"
        "attributes:\n  assets: []\n  checks: {crm_1: [not_empty]}\n"
    )
    done = run_cli("list", "defs", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    # a check of another component's asset, named by the component that defines the check
    assert data["asset_checks"] == [
        {
            "asset": "crm_1",
            "name": "not_empty",
            "description": None,
            "blocking": True,
            "additional_deps": [],
            "metadata": {},
            "component": "defs/checks/defs.yaml:1",
        }
    ]
    table = run_cli("list", "defs", "--no-refresh", cwd=root)
    assert table.returncode == 0, table.stderr
    assert "1 asset check" in table.stdout
    check_row = next(line for line in table.stdout.splitlines() if "not_empty" in line)
    assert "crm_1" in check_row and "yes" in check_row and "defs/checks" in check_row
    # a check of an asset that no component defines is an error naming the check's source
    (root / "defs/checks/defs.yaml").write_text(
        "type: fixture_components.PlainComponent\n"
        "attributes:\n  assets: []\n  checks: {gone: [not_empty]}\n"
    )
    bad = run_cli("list", "defs", "--no-refresh", cwd=root)
    assert bad.returncode == 1
    assert "asset check gone:not_empty (defined by defs/checks/defs.yaml:1)" in bad.stderr


def test_list_defs_reconstructs_from_a_pin(
    make_project: ProjectFactory, counter_dir: Path, tmp_path: Path
) -> None:
    root = _project(make_project, counter_dir)
    first = run_cli("list", "defs", "--json", cwd=root)
    pin = tmp_path / "pin.json"
    pin.write_text(first.stdout)
    again = run_cli("list", "defs", "--json", "--state-info", str(pin), cwd=root)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert call_count(counter_dir, "api") == 1  # a reconstruction never refreshes


def test_errors_are_one_line_without_traceback_unless_debug(make_project: ProjectFactory) -> None:
    root = make_project({"defs/a/defs.yaml": "type: fixture_components.PlainComponent\n"})
    done = run_cli("list", "defs", "--no-refresh", cwd=root)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: defs/a/defs.yaml:1: fixture_components.PlainComponent: missing required attribute 'assets' (list[str])"
    ]
    check = run_cli("check", cwd=root)
    assert check.returncode == 1 and "missing required attribute" in check.stderr

    nowhere = root.parent / "not-a-project"
    nowhere.mkdir()
    lost = run_cli("list", "defs", cwd=nowhere)
    assert lost.returncode == 1
    assert lost.stderr.startswith("error: no pyproject.toml with a [tool.defstate] table")
    debug = run_cli("--debug", "list", "defs", cwd=nowhere)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_list_components_and_check(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = _project(make_project, counter_dir)
    done = run_cli("list", "components", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["components"]
    assert rows[0] == {
        "source": "defs/api/defs.yaml:1",
        "type": "fixture_components.ListComponent",
        "key": "List[api]",
        "management_type": "LOCAL_FILESYSTEM",
    }
    assert rows[2]["key"] is None
    table = run_cli("list", "components", cwd=root)
    assert "List[api]" in table.stdout
    check = run_cli("check", cwd=root)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "ok: 3 components, 1 asset, 0 of 2 state keys with state"
    hints = check.stderr.splitlines()
    assert hints[0] == (
        "hint: defs/api/defs.yaml:1: [List[api]] no state yet, so its component defines no "
        "assets: create it with `defstate state refresh --key 'List[api]'`"
    )
    assert call_count(counter_dir, "api") == 0


def test_console_script_and_demo_project(tmp_path: Path) -> None:
    project = tmp_path / "quickstart"
    shutil.copytree(
        REPO_ROOT / "examples/quickstart",
        project,
        ignore=shutil.ignore_patterns(".local_defs_state", "__pycache__"),
    )
    script = Path(sys.executable).parent / "defstate"
    env = subprocess_env()
    refresh = subprocess.run(
        [str(script), "state", "refresh"], cwd=project, env=env, capture_output=True, text=True
    )
    assert refresh.returncode == 0, refresh.stderr
    assert refresh.stdout.startswith("refreshed Catalog[warehouse]  version=local")
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=project)
    assets = {a["key"]: a for a in json.loads(listed.stdout)["assets"]}
    assert sorted(assets) == [
        "marts/revenue_by_customer",
        "raw/customers",
        "raw/orders",
        "staging/customers",
        "staging/orders",
    ]
    assert assets["marts/revenue_by_customer"]["deps"] == ["staging/customers", "staging/orders"]
    assert (project / "quickstart/defs/.local_defs_state/.gitignore").exists()


def test_missing_state_is_loud_in_deploy_and_strict_mode(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    relaxed = run_cli("list", "defs", "--no-refresh", "--json", cwd=root)
    assert relaxed.returncode == 0
    assert [a["key"] for a in json.loads(relaxed.stdout)["assets"]] == ["report"]
    for args, env in ((["list", "defs"], {"DEFSTATE_DEPLOY": "1"}), (["check", "--strict"], {})):
        done = run_cli(*args, cwd=root, env=env)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        api = next(line for line in lines if "List[api]" in line)
        assert api.startswith("error: defs/api/defs.yaml:1:")
        assert "defstate state refresh --key 'List[api]'" in api
        assert call_count(counter_dir, "api") == 0  # deploy mode never refreshes


def test_json_output_survives_components_that_print(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            "  name: chat\n  assets: [c]\n  chatty: true\n"
        }
    )
    refreshed = run_cli("state", "refresh", "--json", cwd=root)
    assert refreshed.returncode == 0, refreshed.stderr
    assert json.loads(refreshed.stdout)["results"][0]["ok"]
    assert "fetching chat..." in refreshed.stderr
    listed = run_cli("list", "defs", "--json", cwd=root)  # a dev load refreshes, and prints
    assert [a["key"] for a in json.loads(listed.stdout)["assets"]] == ["c"]


def test_refresh_shows_live_progress_on_a_terminal(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    from terminal import run_on_terminal

    root = _project(make_project, counter_dir)
    code, text = run_on_terminal("state", "refresh", cwd=root, columns=100)
    assert code == 0
    assert "(refreshing)" in text or "(done)" in text  # the live display drew the keys
    assert "refreshed List[api]" in text and "refreshed List[crm]" in text
