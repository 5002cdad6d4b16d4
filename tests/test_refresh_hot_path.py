"""The refresh of many keys that return at once: no thread hand-off per key, no listing of a
folder the refresh just created, one listing of an existing one (issue 18, point 1)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli, start_cli
from defstate import refresh_state
from defstate.loader.history import state_history
from defstate.loader.refresh import widening
from defstate.loader.refresh.widening import run_widening
from defstate.state_storage import atomic
from defstate.state_storage.local import MAX_LOCAL_RECORDS
from fixture_components import ListComponent, call_count

KEYS = 6


def _projects(make_project: ProjectFactory) -> Path:
    entry = "type: fixture_components.ListComponent\nattributes:\n  name: k{i}\n  assets: [a]\n"
    files = {f"defs/k{i}/defs.yaml": entry.format(i=i) for i in range(KEYS)}
    return make_project(files, pyproject_extra="refresh_concurrency = 8\n")


def test_instant_refreshes_run_one_after_the_other_on_one_thread(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refreshes that return at once are not handed to a thread each: one thread runs them
    all (the calling thread stays free for signals), in order. (The slow threshold is raised
    so that a loaded machine cannot make an instant refresh look slow.)"""
    monkeypatch.setattr(widening, "SLOW_SECONDS", 30.0)
    root = _projects(make_project)
    threads: list[str] = []
    write = ListComponent.write_state_to_path

    def recording(self: ListComponent, state_path: Path) -> None:
        threads.append(threading.current_thread().name)
        write(self, state_path)

    monkeypatch.setattr(ListComponent, "write_state_to_path", recording)
    report = refresh_state(root)
    assert report.ok and len(report.results) == KEYS
    assert len(threads) == KEYS and len(set(threads)) == 1
    assert threads[0] != threading.main_thread().name
    assert [r.key for r in report.results] == [f"List[k{i}]" for i in range(KEYS)]


def test_waiting_calls_widen_to_the_workers_and_no_further() -> None:
    """Calls that wait bring more threads, up to ``workers``: four calls meeting at a
    barrier of four can only all return if four run at once."""
    barrier = threading.Barrier(4)
    lock = threading.Lock()
    running = peak = 0

    def call(index: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if index < 4:
            barrier.wait(timeout=30)
        else:
            time.sleep(0.02)
        with lock:
            running -= 1
        return index * 10

    assert run_widening(call, range(12), workers=4) == [i * 10 for i in range(12)]
    assert peak == 4


def test_an_error_stops_the_run_and_is_raised() -> None:
    started: list[int] = []

    def call(index: int) -> int:
        started.append(index)
        if index == 3:
            raise ValueError("boom")
        time.sleep(0.001)
        return index

    with pytest.raises(ValueError, match="boom"):
        run_widening(call, range(200), workers=4)
    assert len(started) < 200  # nothing new started after the error
    assert run_widening(call, [], workers=4) == []
    assert run_widening(lambda i: i + 1, [1, 2], workers=1) == [2, 3]


def test_results_stay_in_the_order_of_the_items_also_when_a_call_returns_none() -> None:
    def call(index: int) -> int | None:
        time.sleep(0.02 if index == 0 else 0)  # slow enough to widen
        return None if index % 2 else index

    assert run_widening(call, range(6), workers=4) == [0, None, 2, None, 4, None]


@pytest.fixture
def key_folder_listings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every ``os.scandir`` of a folder inside a ``.local_defs_state``."""
    listings: list[str] = []
    scandir = os.scandir

    def counting(path: str | os.PathLike[str] = ".") -> object:
        if ".local_defs_state" in os.fspath(path):
            listings.append(os.path.basename(os.fspath(path)))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    yield listings


def test_a_first_refresh_lists_no_key_folder_and_a_later_one_lists_it_once(
    make_project: ProjectFactory, key_folder_listings: list[str]
) -> None:
    """A key folder the refresh creates holds nothing to clean up or trim; an existing one
    is listed once (abandoned temporaries and the records to trim), also when its records
    are at the limit."""
    root = _projects(make_project)
    assert refresh_state(root).ok
    assert key_folder_listings == []
    assert refresh_state(root).ok
    assert sorted(key_folder_listings) == sorted(f"List[k{i}]" for i in range(KEYS))
    for _ in range(MAX_LOCAL_RECORDS):
        assert refresh_state(root, keys=["List[k0]"]).ok
    key_folder_listings.clear()
    assert refresh_state(root, keys=["List[k0]"]).ok
    assert key_folder_listings == ["List[k0]"]
    records = state_history(root, "List[k0]", limit=1000).records
    assert len(records) == MAX_LOCAL_RECORDS
    assert len(list(_key_dir(root).glob("record-*.json"))) == MAX_LOCAL_RECORDS


@pytest.fixture
def refreshed(make_project: ProjectFactory) -> tuple[Path, Path]:
    """A project refreshed once, and the folder of its key ``List[k0]``."""
    root = _projects(make_project)
    assert refresh_state(root).ok
    return root, _key_dir(root)


def _key_dir(root: Path, name: str = "k0") -> Path:
    return root / f"defs/.local_defs_state/List[{name}]"


def test_a_refresh_of_an_existing_key_still_removes_abandoned_temporaries(
    refreshed: tuple[Path, Path],
) -> None:
    root, key_dir = refreshed
    dead = key_dir / ".tmp-999999999-0123"  # no such pid
    dead.write_text("half")
    assert refresh_state(root).ok
    assert not dead.exists()


def test_write_atomic_failing_midway_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    atomic.write_atomic(target, b"old")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space"):
        atomic.write_atomic(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    atomic.write_atomic(target, b"")
    assert target.read_bytes() == b""


def test_sigterm_while_one_refresh_blocks_and_others_finished_beside_it(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    """A refresh that waits makes room for the others beside it (they publish meanwhile),
    and SIGTERM ends the process at once from the calling thread (exit 143), leaving the
    waiting key without state; the next refresh publishes it."""
    gate, counters = tmp_path / "gate", tmp_path / "counters"
    counters.mkdir()
    held = f"  hold_until: {gate}\n  counter_dir: {counters}\n"
    entry = "type: fixture_components.ListComponent\nattributes:\n  name: {n}\n  assets: [a]\n"
    root = make_project(
        {
            "defs/k0/defs.yaml": entry.format(n="k0") + held,
            "defs/k1/defs.yaml": entry.format(n="k1"),
            "defs/k2/defs.yaml": entry.format(n="k2"),
        }
    )
    state = root / "defs/.local_defs_state"
    process = start_cli("state", "refresh", "--json", cwd=root)
    deadline = time.monotonic() + 60
    while not all((state / f"List[{k}]/state").exists() for k in ("k1", "k2")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    assert call_count(counters, "k0") == 1 and not (state / "List[k0]/state").exists()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "interrupted" in err
    assert not (state / "List[k0]/state").exists()
    gate.touch()
    done = run_cli("state", "refresh", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    statuses = {r["key"]: r["status"] for r in json.loads(done.stdout)["results"]}
    assert statuses == {"List[k0]": "succeeded", "List[k1]": "unchanged", "List[k2]": "unchanged"}


def test_a_temporary_left_by_an_earlier_process_with_this_pid_is_removed(
    refreshed: tuple[Path, Path],
) -> None:
    # a container's PID 1 killed mid-refresh, then run again: the pid is alive (this process)
    # but the temporary is not this process's, so it is abandoned
    root, key_dir = refreshed
    earlier = key_dir / f".tmp-{os.getpid()}-{'0' * 32}"  # as an older defstate named it too
    earlier.write_text("half")
    own = key_dir / atomic.temporary_name()  # this process's: being written, kept
    own.write_text("being written")
    assert refresh_state(root).ok
    assert not earlier.exists()
    assert own.exists()


SIGNAL_DURING_A_WRITE = """
import io, os, signal, sys, time
from defstate.state_storage.interrupts import released_on_signals

class InTheMiddleOfAWrite(io.StringIO):
    def flush(self):  # what a buffered stream raises when a signal handler writes to it
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")

with released_on_signals():
    sys.stdout = InTheMiddleOfAWrite()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
sys.stderr.write("kept running after SIGTERM\\n")
"""


def test_sigterm_during_a_write_to_stdout_still_ends_the_process() -> None:
    # e.g. a refresh printing to a full pipe: the handler's flush raised, and the error went
    # on in the interrupted code (a refresh counted it as its failure and the run went on)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_DURING_A_WRITE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "kept running" not in done.stderr
    assert done.stderr.strip().endswith("interrupted")
