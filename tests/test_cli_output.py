"""What people see: literal keys and paths on a real terminal, selections, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ProjectFactory, run_cli, start_cli
from fixture_components import call_count
from terminal import run_on_terminal

MARKUP_NAMES = ["Foo[/bar]", "shop", "x:smile:"]


def _markup_project(make_project: ProjectFactory, counter_dir: Path) -> Path:
    files = {}
    for index, name in enumerate(MARKUP_NAMES):
        files[f"defs/c{index}/defs.yaml"] = (
            "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: '{name}'\n  assets: ['[bold]{index}[/bold]', 'b{index}']\n"
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
        assert f"List[{name}]" in shown
    assert "x:smile:" in shown  # the group of the third component's assets
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
    assert done.stdout.startswith("unchanged List[api]")  # it ran; its bytes are the same
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


def test_state_ls_leaves_out_components_rather_than_fold_words(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """On a terminal whose width leaves the components no room for a whole path segment, the
    table leaves them out (with a note) instead of folding `versioned` or a path."""
    root = _versioned_project(make_project, tmp_path, "warehouse_tables")
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    code, shown = run_on_terminal("state", "ls", cwd=root, columns=72)
    assert code == 0, shown
    assert max(len(line) for line in shown.splitlines()) <= 72, shown
    assert "List[warehouse_tables]  versioned  " in shown, shown
    assert "components left out to fit the terminal (--wide shows them)" in shown, shown
    assert "defs.yaml" not in shown, shown
    code, shown = run_on_terminal("state", "ls", cwd=root, columns=140)
    assert code == 0 and "wh/defs.yaml:1" in shown and "left out" not in shown, shown


def test_exit_codes_unknown_gc_key_snapshot_refresh_and_ctrl_c(
    make_project: ProjectFactory, counter_dir: Path, tmp_path: Path
) -> None:
    import signal
    import time

    root = make_project(
        {
            "defs/slow/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: slow\n  assets: [a]\n  sleep: 60\n  counter_dir: {counter_dir}\n",
            "defs/snap/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            "  name: snap\n  assets: [s]\n"
            "  defs_state: {management_type: LEGACY_CODE_SERVER_SNAPSHOTS}\n",
        }
    )
    gc = run_cli("state", "gc", "--key", "List[nope]", cwd=root)
    assert gc.returncode == 2
    assert gc.stderr.startswith("error: unknown state key: List[nope] (known keys: ")
    snap = run_cli("state", "refresh", "List[snap]", cwd=root)
    assert snap.returncode == 2
    assert "LEGACY_CODE_SERVER_SNAPSHOTS state is made by every initialization load" in snap.stderr

    process = start_cli("state", "refresh", "List[slow]", cwd=root)
    deadline = time.monotonic() + 60
    while call_count(counter_dir, "slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)  # not the 60 s the refresh would take
    assert process.returncode == 130
    assert stderr.strip() == "interrupted"


def test_check_catches_unmatched_schedule_patterns_and_probes_storage(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    import socket
    import time

    store = tmp_path / "store"
    root = make_project(
        {
            "defs/wh/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            "  name: wh\n  assets: [orders]\n"
            "  defs_state: {management_type: VERSIONED_STATE_STORAGE}\n",
        },
        pyproject_extra=(
            f'[tool.defstate.state_storage]\nurl = "file://{store}"\n'
            '[tool.defstate.schedules.hourly]\ncron = "0 * * * *"\n'
            'keys = ["List[wh]", "Dbt*"]\n'
        ),
    )
    done = run_cli("check", "--storage", cwd=root)
    assert done.returncode == 1
    assert (
        "error: pyproject.toml: [tool.defstate.schedules.hourly]: key pattern 'Dbt*' matches no state key (known keys: List[wh])"
        in done.stderr
    )
    assert f"state storage file://{store}: ok (connect, list, write, read, delete)" in done.stdout
    assert not list(store.iterdir())  # the probe object is gone
    report = json.loads(run_cli("check", "--json", cwd=root).stdout)
    assert report["ok"] is False
    assert [e["message"].split(":")[0] for e in report["errors"]] == [
        "[tool.defstate.schedules.hourly]"
    ]
    assert report["hints"][0]["key"] == "List[wh]"
    assert (report["components"], report["keys"], report["keys_with_state"]) == (1, 1, 0)

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = make_project(
        {},
        name="s3proj",
        pyproject_extra=(
            '[tool.defstate.state_storage]\nurl = "s3://bucket/prefix"\n'
            f'storage_options = {{endpoint_url = "http://127.0.0.1:{port}"}}\n'
        ),
    )
    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    start = time.monotonic()
    probed = run_cli(
        "check", "--storage", "--storage-timeout", "3", "--json", cwd=unreachable, env=env
    )
    assert time.monotonic() - start < 60
    assert probed.returncode == 1
    (storage,) = json.loads(probed.stdout)["storage"]
    assert storage["ok"] is False and storage["storage"] == "s3://bucket/prefix"
    assert storage["error"]


def test_shell_completion_offers_commands_and_state_keys(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _graph_project(make_project, counter_dir)

    def complete(words: str) -> list[str]:
        env = {
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
            "_DEFSTATE_COMPLETE": "bash_complete",
        }
        done = run_cli(cwd=root, env=env)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert "state" in complete("defstate st")
    assert complete("defstate state history List[a") == ["List[api]"]
    assert complete("defstate state refresh --key ") == ["List[api]", "List[crm]"]


def test_narrow_tables_wrap_paths_and_keys_between_segments(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    from defstate.cli.render import Breakable

    assert Breakable("quickstart/defs/warehouse/defs.yaml:2").lines(17) == [
        "quickstart/defs/",
        "warehouse/",
        "defs.yaml:2",
    ]
    assert Breakable("staging/customers, staging/orders").lines(17) == [
        "staging/",
        "customers,",
        "staging/orders",
    ]
    assert Breakable("abcdefghij/x").lines(4) == ["abcd", "efgh", "ij/x"]  # folded: too wide
    assert Breakable("a.b.Component", dotted=True).lines(4) == ["a.b.", "Comp", "onen", "t"]
    assert Breakable("").lines(5) == [""]

    # `make demo`'s shape: a nested defs folder, long keys and deps, on an 80-column terminal
    root = make_project(
        {
            "defs/warehouse/tables/defs.yaml": (
                "type: fixture_components.PlainComponent\nattributes:\n"
                "  assets: [marts/revenue_by_customer, staging/customers, staging/orders]\n"
                "  deps: {marts/revenue_by_customer: [staging/customers, staging/orders]}\n"
                "  group: warehouse\n"
            )
        }
    )
    code, shown = run_on_terminal("list", "defs", "--no-refresh", cwd=root, columns=80)
    assert code == 0, shown
    assert max(len(line) for line in shown.splitlines()) <= 80, shown
    assert "marts/revenue_by_customer" in shown
    rows = [line.rstrip() for line in shown.splitlines()[3:] if line.strip()]
    cells = [row[row.rindex("  ") + 2 :] if "  " in row else row for row in rows]
    # the component path is cut only after a '/', never inside a folder or file name
    assert cells[0].startswith("defs/") and "defs.yaml:1" in cells, (cells, shown)
    assert all(c.endswith(("/", "defs.yaml:1")) for c in cells), (cells, shown)
