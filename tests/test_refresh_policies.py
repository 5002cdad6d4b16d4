"""Retries, timeouts, the guard, refresh records, single-flight and schedules."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli, start_cli, subprocess_env
from defstate import load_defs, refresh_state
from defstate.components.policies import RefreshGuard
from defstate.loader.history import state_history
from defstate.loader.project import load_project_config
from defstate.loader.refresh import RefreshOptions
from defstate.loader.schedules import Scheduler, load_schedules, run_schedule
from defstate.state_storage import local
from defstate.state_storage.local import MAX_LOCAL_RECORDS
from fixture_components import call_count

FAST_RETRY = "    retry: {kind: fixed, max_attempts: 3, min: 0, max: 0}\n"


def _entry(name: str, counter_dir: Path, source: Path, attrs: str = "", state: str = "") -> str:
    text = (
        "type: fixture_components.ListComponent\nattributes:\n"
        f"  name: {name}\n  source_file: {source}\n  counter_dir: {counter_dir}\n" + attrs
    )
    return text + ("  defs_state:\n" + state if state else "")


def _project(
    make_project: ProjectFactory,
    counter_dir: Path,
    attrs: str = "",
    state: str = "",
    pyproject_extra: str = "",
) -> tuple[Path, Path]:
    source = counter_dir.parent / "api.json"
    source.write_text(json.dumps([f"t{i}" for i in range(10)]))
    root = make_project(
        {"defs/api/defs.yaml": _entry("api", counter_dir, source, attrs, state)},
        pyproject_extra=pyproject_extra,
    )
    return root, source


def test_retry_until_success_is_recorded(make_project: ProjectFactory, counter_dir: Path) -> None:
    root, _ = _project(make_project, counter_dir, "  fail_times: 2\n", FAST_RETRY)
    (result,) = refresh_state(root, options=RefreshOptions(trigger="cli")).results
    assert result.ok and result.attempts == 3 and call_count(counter_dir, "api") == 3
    (record,) = state_history(root, "List[api]").records
    assert record.status == "succeeded" and record.attempts == 3 and record.trigger == "cli"
    assert record.version == "local" and record.bytes and record.error is None


def test_no_retry_by_default_and_failure_recorded(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root, _ = _project(make_project, counter_dir, "  fail_times: 1\n")
    (result,) = refresh_state(root).results
    assert not result.ok and result.attempts == 1 and result.status == "failed"
    assert "flaky API" in (result.error or "")
    (record,) = state_history(root, "List[api]").records
    assert record.status == "failed" and "flaky API" in (record.error or "")
    assert record.trigger == "api" and record.version is None


def test_cli_retry_flags_override(make_project: ProjectFactory, counter_dir: Path) -> None:
    root, _ = _project(make_project, counter_dir, "  fail_times: 1\n")
    done = run_cli("state", "refresh", "--retry", "fixed", "--max-attempts", "2", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "attempts=2" in done.stdout
    history = run_cli("state", "history", "List[api]", "--json", cwd=root)
    (record,) = json.loads(history.stdout)["records"]
    assert record["trigger"] == "cli" and record["attempts"] == 2


def test_terminal_errors_are_not_retried(make_project: ProjectFactory, counter_dir: Path) -> None:
    root, _ = _project(make_project, counter_dir, "  terminal: true\n", FAST_RETRY)
    (result,) = refresh_state(root).results
    assert result.attempts == 1 and "invalid API token" in (result.error or "")
    assert call_count(counter_dir, "api") == 1


def test_timeout_ends_a_hanging_refresh_and_publishes_nothing(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root, source = _project(make_project, counter_dir)
    assert refresh_state(root).ok
    defs = root / "defs/api/defs.yaml"
    defs.write_text(defs.read_text() + "  sleep: 5\n  defs_state:\n    timeout: 0.3\n")
    source.write_text('["new"]')
    started = time.monotonic()
    (result,) = refresh_state(root).results
    assert time.monotonic() - started < 3
    assert result.status == "timed_out" and "within 0.3s" in (result.error or "")
    assert len(load_defs(root).definitions.assets) == 10  # the old state, untouched
    assert state_history(root, "List[api]").records[0].status == "timed_out"


def test_guard_refuses_a_refresh_that_drops_too_much(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root, source = _project(
        make_project, counter_dir, state="    guard: {max_removed_fraction: 0.5}\n"
    )
    assert refresh_state(root).ok
    source.write_text(json.dumps(["t0", "t1", "t2"]))  # 7 of 10 gone
    (result,) = refresh_state(root).results
    assert result.status == "rejected" and "drops 7 of 10 assets" in (result.error or "")
    assert len(load_defs(root).definitions.assets) == 10
    assert state_history(root, "List[api]").records[0].status == "rejected"
    source.write_text(json.dumps([f"t{i}" for i in range(6)]))  # 4 of 10: allowed
    assert refresh_state(root).ok
    assert len(load_defs(root).definitions.assets) == 6


def test_cli_guard_flag(make_project: ProjectFactory, counter_dir: Path) -> None:
    root, source = _project(make_project, counter_dir)
    assert refresh_state(root).ok
    source.write_text("[]")  # the API answered with an empty list
    done = run_cli("state", "refresh", "--max-removed-fraction", "0.2", cwd=root)
    assert done.returncode == 1
    assert "refresh rejected" in done.stderr and "drops 10 of 10" in done.stderr
    assert len(load_defs(root).definitions.assets) == 10
    unguarded = refresh_state(
        root, options=RefreshOptions(guard=RefreshGuard(max_removed_fraction=1.0))
    )
    assert unguarded.ok and load_defs(root).definitions.assets == ()


def test_local_records_are_bounded_and_never_fail_the_refresh(
    make_project: ProjectFactory,
    counter_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, _ = _project(make_project, counter_dir)
    for _ in range(MAX_LOCAL_RECORDS + 5):
        assert refresh_state(root).ok
    records = state_history(root, "List[api]", limit=1000).records
    assert len(records) == MAX_LOCAL_RECORDS
    assert records[0].started_at > records[-1].started_at  # newest first
    key_dir = root / "defs/.local_defs_state/List[api]"
    assert sorted(p.name for p in key_dir.iterdir() if not p.name.startswith("record-")) == [
        "state"  # one folder per key: the state and its records; the folder is the lock
    ]

    def disk_full(path: object, data: bytes, **options: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "write_atomic", disk_full)  # records cannot be written now
    assert refresh_state(root).ok
    assert "could not write the refresh record" in caplog.text


def test_local_records_of_earlier_versions_are_read_and_trimmed(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    """Earlier versions kept a key's records in ``<key dir>/records/``: history still shows
    them, newest first with the new ones, and they count towards the kept 50."""
    root, _ = _project(make_project, counter_dir)
    assert refresh_state(root).ok
    key_dir = root / "defs/.local_defs_state/List[api]"
    (record_file,) = key_dir.glob("record-*.json")
    legacy = key_dir / "records"
    legacy.mkdir()
    old = json.loads(record_file.read_text())
    old.update(started_at="2020-01-01T00:00:00+00:00", record_id="0" * 32, trigger="legacy")
    (legacy / "2020-01-01T000000Z0000-0.json").write_text(json.dumps(old))
    assert refresh_state(root).ok
    records = state_history(root, "List[api]", limit=10).records
    assert [r.trigger for r in records] == ["api", "api", "legacy"]
    for _ in range(MAX_LOCAL_RECORDS - 1):
        assert refresh_state(root).ok
    records = state_history(root, "List[api]", limit=1000).records
    assert len(records) == MAX_LOCAL_RECORDS and "legacy" not in {r.trigger for r in records}
    assert not list(legacy.iterdir())  # the oldest record went first


def _refresh_process(root: Path, *args: str) -> subprocess.Popen[str]:
    return start_cli("state", "refresh", "--json", *args, cwd=root)


@pytest.mark.parametrize("strategy", ["local", "file", "s3", "gcs"])
def test_single_flight_across_processes(
    make_project: ProjectFactory,
    counter_dir: Path,
    tmp_path: Path,
    strategy: str,
    request: pytest.FixtureRequest,
) -> None:
    state = ""
    extra = ""
    if strategy != "local":
        url = {
            "file": lambda: f"file://{tmp_path}/store",
            "s3": lambda: f"s3://{request.getfixturevalue('s3_bucket')}/state",
            "gcs": lambda: f"gs://{request.getfixturevalue('gcs_bucket')}/state",
        }[strategy]()
        state = "    management_type: VERSIONED_STATE_STORAGE\n"
        extra = f'[tool.defstate.state_storage]\nurl = "{url}"\n'
    release = tmp_path / "release"
    root, _ = _project(make_project, counter_dir, f"  hold_until: {release}\n", state, extra)
    first = _refresh_process(root)
    while call_count(counter_dir, "api") == 0:  # the first one is inside write_state_to_path
        time.sleep(0.02)
    second = _refresh_process(root)
    assert second.stderr is not None
    waiting = second.stderr.readline()  # it says so when it starts waiting for the lease
    assert "waiting for" in waiting, waiting
    skipper = _refresh_process(root, "--no-wait")
    # The first refresh holds the key until the skipper has seen it held; the second, started
    # with the skipper, is waiting for the lock by then (a margin for a loaded machine), so
    # the outcome never depends on how fast processes start.
    skipped, err = skipper.communicate(timeout=120)
    assert skipper.returncode == 0, err
    time.sleep(2)
    release.touch()
    outcomes = []
    for process in (first, second):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        (item,) = json.loads(out)["results"]
        outcomes.append(item)
    outcomes.append(json.loads(skipped)["results"][0])
    assert [o["status"] for o in outcomes] == ["succeeded", "joined", "skipped"], outcomes
    assert call_count(counter_dir, "api") == 1  # write_state_to_path ran once
    assert outcomes[1]["version"] == outcomes[0]["version"]
    assert outcomes[1]["ok"] and outcomes[2]["ok"]


def test_expired_lease_of_a_crashed_holder_is_taken_over(
    make_project: ProjectFactory, counter_dir: Path, tmp_path: Path
) -> None:
    root, _ = _project(
        make_project,
        counter_dir,
        state="    management_type: VERSIONED_STATE_STORAGE\n",
        pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path}/store"\n',
    )
    lease = tmp_path / "store/List[api]/lease.json"
    lease.parent.mkdir(parents=True)
    lease.write_text(json.dumps({"holder": "dead", "host": "gone", "pid": 1, "ttl": 30}))
    stale = time.time() - 60  # not renewed for 60 s by the storage's clock: expired
    os.utime(lease, (stale, stale))
    assert refresh_state(root).ok
    assert json.loads(lease.read_text())["released"] is True  # released, not deleted
    lease.write_text(json.dumps({"holder": "alive", "host": "busy", "pid": 1, "ttl": 60}))
    (result,) = refresh_state(root, options=RefreshOptions(wait=False)).results
    assert result.status == "skipped"


SCHEDULES = """
[tool.defstate.schedules.hourly]
cron = "0 * * * *"
keys = ["List[*]"]
retry = {kind = "fixed", max_attempts = 3, min = 0, max = 0}
timeout = 30

[tool.defstate.schedules.nightly]
cron = "30 2 * * *"
keys = ["List[api]"]
"""


def test_schedule_config_ls_and_run(make_project: ProjectFactory, counter_dir: Path) -> None:
    root, _ = _project(make_project, counter_dir, "  fail_times: 1\n", pyproject_extra=SCHEDULES)
    schedules = load_schedules(load_project_config(root))
    assert sorted(schedules) == ["hourly", "nightly"]
    after = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert schedules["hourly"].next_run(after) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert schedules["nightly"].next_run(after) == datetime(2026, 1, 2, 2, 30, tzinfo=UTC)

    listed = run_cli("schedule", "ls", "--json", cwd=root)
    rows = {r["name"]: r for r in json.loads(listed.stdout)["schedules"]}
    assert rows["hourly"]["next_run"].endswith(":00:00+00:00")

    report = run_schedule(root, "hourly")  # its retry policy absorbs the first failure
    (result,) = report.results
    assert result.ok and result.attempts == 2
    assert state_history(root, "List[api]").records[0].trigger == "schedule"
    done = run_cli("schedule", "run", "nightly", cwd=root)
    # the same source again: same bytes, so the scheduled refresh reports ``unchanged``
    assert done.returncode == 0 and done.stdout.startswith("unchanged List[api]")
    missing = run_cli("schedule", "run", "weekly", cwd=root)
    assert missing.returncode == 1 and "known schedules: hourly, nightly" in missing.stderr


def test_bad_schedule_config_is_reported(make_project: ProjectFactory, counter_dir: Path) -> None:
    root, _ = _project(
        make_project,
        counter_dir,
        pyproject_extra='[tool.defstate.schedules.x]\ncron = "every hour"\n',
    )
    done = run_cli("schedule", "ls", cwd=root)
    assert done.returncode == 1
    assert "not a valid 5-field cron expression" in done.stderr
    assert "pyproject.toml" in done.stderr


def test_scheduler_ticks_with_an_injected_clock() -> None:
    from defstate.loader.schedules import Schedule, ScheduleSettings

    ran: list[str] = []
    schedules = [
        Schedule("quarter", ScheduleSettings(cron="*/15 * * * *")),
        Schedule("daily", ScheduleSettings(cron="0 3 * * *")),
    ]
    start = datetime(2026, 5, 1, 2, 50, tzinfo=UTC)
    scheduler = Scheduler(schedules, lambda s: ran.append(s.name), start)
    assert scheduler.tick(datetime(2026, 5, 1, 2, 59, tzinfo=UTC)) == []
    assert scheduler.tick(datetime(2026, 5, 1, 3, 0, tzinfo=UTC)) == ["quarter", "daily"]
    assert scheduler.tick(datetime(2026, 5, 1, 3, 1, tzinfo=UTC)) == []
    # a late tick runs a missed schedule once, not once per missed slot
    assert scheduler.tick(datetime(2026, 5, 1, 4, 40, tzinfo=UTC)) == ["quarter"]
    assert scheduler.next_runs()["quarter"] == datetime(2026, 5, 1, 4, 45, tzinfo=UTC)
    assert ran == ["quarter", "daily", "quarter"]


def test_served_schedule_publishes_and_reloads_to_a_new_pin(
    make_project: ProjectFactory, counter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from defstate.loader.schedules import schedule_runner
    from defstate.server.location import CodeLocation

    root, _ = _project(
        make_project,
        counter_dir,
        state="    management_type: VERSIONED_STATE_STORAGE\n",
        pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path}/store"\n'
        + SCHEDULES,
    )
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    location = CodeLocation(root)
    try:
        first = location.reload()
        assert first is not None and first.document.assets == []  # nothing published yet
        schedules = list(load_schedules(load_project_config(root)).values())
        start = datetime(2026, 5, 1, 9, 59, tzinfo=UTC)
        runner = schedule_runner(location.pool.run_schedule, location.reload)
        scheduler = Scheduler(schedules, runner, start)
        assert scheduler.tick(datetime(2026, 5, 1, 10, 0, tzinfo=UTC)) == ["hourly"]
        second = location.current
        assert second is not None and second.generation == 2
        assert {a["key"] for a in second.document.assets} == {f"t{i}" for i in range(10)}
        pinned = second.state_info.get("List[api]")
        assert pinned is not None
        (record,) = state_history(root, "List[api]").records
        assert record.trigger == "schedule" and record.version == pinned.version
    finally:
        location.close()


@pytest.mark.parametrize(
    ("key", "pattern", "matches"),
    [
        ("DbtProject[shop]", "DbtProject[*]", True),
        ("DbtProject[shop]", "DbtProject[s]", False),
        ("List[api]", "List[a?i]", True),
        ("List[api]", "*", True),
        ("List[api]", "List", False),
    ],
)
def test_key_patterns_treat_brackets_literally(key: str, pattern: str, matches: bool) -> None:
    from defstate.loader.groups import key_matches

    assert key_matches(key, pattern) is matches


def test_process_executor_runs_refreshes_in_worker_processes(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    process = "  defs_state:\n    executor: process\n"
    root = make_project(
        {
            f"defs/{name}/defs.yaml": (
                f"type: fixture_components.PidComponent\nattributes:\n  name: {name}\n" + extra
            )
            for name, extra in (("p1", process), ("p2", process), ("t", ""))
        }
    )
    report = refresh_state(root)
    assert report.ok, report
    keys = [str(k) for k in load_defs(root).definitions.asset_keys]
    pids = {key.split("_pid_")[0]: int(key.split("_pid_")[1]) for key in keys}
    assert pids["t"] == os.getpid()  # the default: a thread of this process
    assert pids["p1"] != os.getpid() and pids["p2"] != os.getpid()


def test_process_refresh_that_hangs_is_killed_at_its_timeout(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root, _ = _project(
        make_project,
        counter_dir,
        "  sleep: 30\n",
        "    executor: process\n    timeout: 1\n",
    )
    started = time.monotonic()
    done = run_cli("state", "refresh", cwd=root)
    assert time.monotonic() - started < 20  # the CLI exits: the hung process was killed
    assert done.returncode == 1 and "timed_out" in done.stderr
    assert load_defs(root).definitions.assets == ()


def test_what_is_retried() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    from defstate import TerminalRefreshError
    from defstate.errors import DefsYamlError, ProjectConfigError, RefreshTimeoutError
    from defstate.loader.refresh import is_retryable

    assert is_retryable(ConnectionError("reset")) and is_retryable(OSError("flaky"))
    assert is_retryable(RefreshTimeoutError("slow"))
    assert is_retryable(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    for permanent in (
        TerminalRefreshError("bad token"),
        PermissionError("denied"),
        NoCredentialsError(),
        ProjectConfigError("bad config"),
        DefsYamlError("bad yaml"),
    ):
        assert not is_retryable(permanent), permanent
