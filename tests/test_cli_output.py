"""What people see: literal keys and paths on a real terminal, selections, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ProjectFactory, run_cli
from fixture_components import call_count
from terminal import run_on_terminal

MARKUP_NAMES = ["Foo[/bar]", "shop", "x:smile:"]


def _markup_project(make_project: ProjectFactory, counter_dir: Path) -> Path:
    files = {}
    for index, name in enumerate(MARKUP_NAMES):
        files[f"defs/c{index}/defs.yaml"] = (
            "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: '{name}'\n  assets: ['[bold]{index}[/bold]', 'a:smile:{index}']\n"
        )
    return make_project(files)


def test_keys_that_look_like_markup_print_literally_on_a_terminal(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _markup_project(make_project, counter_dir)
    code, shown = run_on_terminal("state", "refresh", cwd=root)
    assert code == 0, shown
    for name in MARKUP_NAMES:
        assert f"refreshed List[{name}]" in shown
    assert "MarkupError" not in shown
    code, shown = run_on_terminal("list", "defs", "--no-refresh", "--wide", cwd=root)
    assert code == 0, shown
    for index, name in enumerate(MARKUP_NAMES):
        assert f"[bold]{index}[/bold]" in shown
        assert f"a:smile:{index}" in shown
        assert f"List[{name}]" in shown
    code, shown = run_on_terminal("list", "components", cwd=root)
    assert code == 0, shown
    assert all(f"List[{name}]" in shown for name in MARKUP_NAMES)
    code, shown = run_on_terminal("state", "ls", cwd=root)
    assert code == 0, shown
    assert all(f"List[{name}]" in shown for name in MARKUP_NAMES)


def _graph_project(make_project: ProjectFactory, counter_dir: Path) -> Path:
    return make_project(
        {
            "defs/api/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: api\n  assets: [api_1, api_2]\n  counter_dir: {counter_dir}\n",
            "defs/crm/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: crm\n  assets: [crm_1]\n  counter_dir: {counter_dir}\n",
            "defs/bi/defs.yaml": "type: fixture_components.PlainComponent\nattributes:\n"
            "  assets: [report]\n  deps: {report: [api_1]}\n  group: bi\n",
        }
    )


def test_list_defs_select(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = _graph_project(make_project, counter_dir)
    assert run_cli("state", "refresh", cwd=root).returncode == 0

    def keys(selection: str) -> list[str]:
        done = run_cli("list", "defs", "--no-refresh", "--json", "--select", selection, cwd=root)
        assert done.returncode == 0, done.stderr
        return [a["key"] for a in json.loads(done.stdout)["assets"]]

    assert keys("+key:report") == ["api_1", "report"]
    assert keys("group:api or group:crm") == ["api_1", "api_2", "crm_1"]
    assert keys("key:api_* and not key:api_1+") == ["api_2"]
    bad = run_cli("list", "defs", "--no-refresh", "--select", "group:api and", cwd=root)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: invalid selection at column 14: expected an expression after 'and'",
        "  group:api and",
        "               ^",
    ]


def test_state_refresh_select_refreshes_the_keys_defining_the_assets(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _graph_project(make_project, counter_dir)
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    done = run_cli("state", "refresh", "--select", "+key:report", cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refreshed List[api]")
    assert len(done.stdout.splitlines()) == 1
    assert (call_count(counter_dir, "api"), call_count(counter_dir, "crm")) == (2, 1)
    nothing = run_cli("state", "refresh", "--select", "key:report", cwd=root)  # plain component
    assert nothing.returncode == 2
    assert "matches no asset of a state-backed component" in nothing.stderr
    assert (call_count(counter_dir, "api"), call_count(counter_dir, "crm")) == (2, 1)


def _versioned_project(make_project: ProjectFactory, tmp_path: Path, name: str) -> Path:
    return make_project(
        {
            "defs/wh/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: {name}\n  assets: [orders, customers]\n"
            "  defs_state: {management_type: VERSIONED_STATE_STORAGE}\n",
        },
        pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path}/store"\n',
    )


def test_tables_fit_80_columns_with_short_ids_and_wide_shows_full_ones(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    root = _versioned_project(make_project, tmp_path, "a_rather_long_warehouse_name")
    key = "List[a_rather_long_warehouse_name]"
    for _ in range(2):
        assert run_cli("state", "refresh", cwd=root).returncode == 0
    history = json.loads(run_cli("state", "history", key, "--json", cwd=root).stdout)
    full = history["latest"]
    assert len(full) == 36
    for args in (("state", "ls"), ("state", "history", key), ("list", "defs", "--no-refresh")):
        code, shown = run_on_terminal(*args, cwd=root, columns=80)
        assert code == 0, shown
        assert max(len(line) for line in shown.splitlines()) <= 80, shown
        assert full[:8] in shown and full not in shown
        assert key in shown  # never folded
        code, wide = run_on_terminal(*args, "--wide", cwd=root, columns=80)
        assert code == 0 and full in wide, wide
        assert "VERSIONED_STATE_STORAGE" in wide or args[1] == "history"
