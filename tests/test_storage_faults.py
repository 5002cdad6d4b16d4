"""Leases that never block forever or admit two holders, and storage calls that always end:
damaged leases, clock skew, signals, SIGKILL, hung and refused endpoints, ``--timeout``.

Each test names the guarantee of docs/reliability.md it proves.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ProjectFactory, run_cli, start_cli
from defstate import refresh_state
from defstate.errors import AlreadyRefreshingError, StateStorageError
from defstate.loader.refresh import RefreshOptions
from defstate.state_storage.calls import CallPolicy
from defstate.state_storage.versioned import VersionedStateStorage
from fixture_components import call_count
from storage_servers import free_port

KEY = "List[api]"


def _project(make_project: ProjectFactory, tmp_path: Path, extra: str = "", toml: str = "") -> Path:
    source = tmp_path / "api.json"
    source.write_text('["a"]')
    counters = tmp_path / "counters"
    counters.mkdir(exist_ok=True)
    return make_project(
        {
            "defs/api/defs.yaml": (
                "type: fixture_components.ListComponent\nattributes:\n  name: api\n"
                f"  source_file: {source}\n  counter_dir: {counters}\n{extra}"
                "  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n"
            )
        },
        pyproject_extra=textwrap.dedent(toml),
    )


# ------------------------------------------------ 4. leases never block forever or admit two

DAMAGED_LEASES = [
    b"garbage{",
    b"{}",
    b"null",
    b"[]",
    b"",
    b'{"holder": "x", "host": "h", "expires_at": 1e400}',
    b'{"holder": "x", "host": "h", "ttl": 1e400}',
    b'{"holder": "x", "ttl": -5}',
]


def test_damaged_lease_counts_as_expired_with_a_warning(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guarantee 4: garbage, ``{}``, ``null``, ``[]``, an empty file, an infinite expiry or
    ttl never block a refresh, not even with ``--no-wait``; a warning names the lease."""
    root = _project(make_project, tmp_path)
    storage = VersionedStateStorage(shared_url)
    lease = f"{storage.key_path(KEY)}/lease.json"
    for damaged in DAMAGED_LEASES:
        storage.store.write(lease, damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING, "defstate.state_storage"):
            (result,) = refresh_state(root, options=RefreshOptions(wait=False)).results
        assert result.ok and result.status in ("succeeded", "unchanged"), (damaged, result)
        warnings = [r.getMessage() for r in caplog.records]
        assert any("damaged" in w and "lease.json" in w for w in warnings), (damaged, warnings)


def test_lease_expiry_never_compares_wall_clocks(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 4: a host whose clock is 120 s ahead or behind can neither steal a live lease
    nor be blocked by an expired one: expiry uses the storage's own timestamps."""
    storage = VersionedStateStorage(shared_url)
    real_time = time.time
    with storage.refresh_lock(KEY, wait=False, ttl=30):
        for skew in (120.0, -120.0):
            monkeypatch.setattr(time, "time", lambda s=skew: real_time() + s)  # type: ignore[misc]
            with (
                pytest.raises(AlreadyRefreshingError),
                VersionedStateStorage(shared_url).refresh_lock(KEY, wait=False, ttl=30),
            ):
                pass
            monkeypatch.setattr(time, "time", real_time)
    monkeypatch.setattr(time, "time", lambda: real_time() - 120.0)
    with VersionedStateStorage(shared_url).refresh_lock(KEY, wait=False, ttl=30) as waited:
        assert waited is False  # released: free at once, whatever this host's clock says


# A holder killed with SIGKILL blocks waiters for at most its ttl: the storage contract's
# test_a_dead_holders_lease_is_reclaimed_a_live_one_blocks proves it on every storage.


@pytest.mark.parametrize(
    ("signum", "runs_in"), [(signal.SIGTERM, "worker thread"), (signal.SIGINT, "main thread")]
)
def test_sigterm_and_sigint_release_the_lease(
    signum: int,
    runs_in: str,
    make_project: ProjectFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guarantee 4: an interrupted ``state refresh`` releases its lease on the way out
    (exit 143 / 130), so the next refresh does not have to wait for it to expire, and leaves
    no temporary folder in ``$TMPDIR``, even while ``write_state_to_path`` runs in a worker
    thread (a refresh with a ``timeout``)."""
    url = f"file://{tmp_path}/store/state"
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    gate = tmp_path / "gate"
    root = _project(make_project, tmp_path, f"  hold_until: {gate}\n")
    if runs_in == "worker thread":
        defs = root / "defs/api/defs.yaml"
        defs.write_text(defs.read_text() + "    timeout: 600\n")
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    process = start_cli("state", "refresh", cwd=root, env={"TMPDIR": str(tmpdir)})
    while call_count(tmp_path / "counters", "api") == 0:  # inside write_state_to_path
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert "released the refresh lease of List[api]" in err
    storage = VersionedStateStorage(url)
    lease = storage.store.read(f"{storage.key_path(KEY)}/lease.json")
    assert lease is not None and json.loads(lease)["released"] is True
    assert sorted(p.name for p in tmpdir.iterdir()) == []
    gate.touch()
    done = run_cli("state", "refresh", "--no-wait", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["status"] == "succeeded"


# ------------------------------------------------------ 5. every storage call has a deadline


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                held.append(connection)  # never read, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_never_answering_endpoint_fails_within_the_deadline(
    silent_endpoint: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Guarantee 5: refresh and ``list defs --no-refresh`` against an endpoint that never
    answers fail within the configured deadline, saying they retry, naming URL and key."""
    root = _project(
        make_project,
        tmp_path,
        toml=f"""
        [tool.defstate.state_storage]
        url = "s3://hung-bucket/state"
        deadline = 8
        read_timeout = 1
        connect_timeout = 1
        [tool.defstate.state_storage.storage_options]
        endpoint_url = "{silent_endpoint}"
        key = "AKIDEXAMPLE"
        secret = "not-a-secret"
        """,
    )
    commands = (["state", "refresh"], ["list", "defs", "--no-refresh"])
    started = time.monotonic()
    running = [  # both at once: each spends its time waiting for the deadline
        start_cli(*args, cwd=root) for args in commands
    ]
    for args, process in zip(commands, running, strict=True):
        _, err = process.communicate(timeout=120)
        elapsed = time.monotonic() - started
        assert process.returncode == 1, (args, err)
        assert "retrying (attempt 2" in err, err
        last = err.strip().splitlines()[-1]
        assert "s3://hung-bucket/state" in last and KEY in last, last
        assert elapsed < 8 + 40, (args, elapsed)  # the deadline, plus interpreter start-up
    assert CallPolicy().deadline <= 60


def test_refused_connection_fails_within_ten_seconds() -> None:
    """Guarantee 5: a refused connection fails fast (no client-side retry storm)."""
    storage = VersionedStateStorage(
        "s3://some-bucket/state",
        {"endpoint_url": f"http://127.0.0.1:{free_port()}", "key": "k", "secret": "s"},
    )
    with pytest.raises(StateStorageError, match="some-bucket"):
        storage.latest(KEY)  # also creates the client (seconds of imports on a busy machine)
    started = time.monotonic()
    with pytest.raises(StateStorageError, match="some-bucket") as info:
        storage.latest(KEY)
    assert time.monotonic() - started < 10  # every attempt and pause of one operation
    assert KEY in str(info.value)


def test_timeout_bounds_the_publication(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 5: ``--timeout`` bounds the upload too: a publication that hangs ends as
    ``timed_out`` and the previous version stays latest."""
    root = _project(make_project, tmp_path)
    first = refresh_state(root).results[0].version
    (tmp_path / "api.json").write_text('["b"]')
    from defstate.state_storage import objects

    def hung_upload(self: Any, local: Path, path: str, timeout: float | None = None) -> None:
        assert timeout is not None and timeout <= 3  # the refresh's timeout reached the call
        time.sleep(timeout)  # what a client with this timeout does on a silent endpoint
        raise TimeoutError("no answer")

    for cls in (objects.LocalObjectStore, objects.S3ObjectStore):
        monkeypatch.setattr(cls, "upload", hung_upload)
    started = time.monotonic()
    (result,) = refresh_state(root, options=RefreshOptions(timeout=3)).results
    assert result.status == "timed_out" and "publishing did not finish" in (result.error or "")
    assert time.monotonic() - started < 3 * 3 + 10  # three attempts at most, each bounded
    storage = VersionedStateStorage(shared_url)
    assert first is not None and storage.latest(KEY) == first


def test_call_settings_are_read_from_pyproject(make_project: ProjectFactory) -> None:
    from defstate.errors import ProjectConfigError
    from defstate.loader.project import load_project_config
    from defstate.loader.storage import StateStorages
    from defstate.state_storage.management import ManagementType

    root = make_project(
        {},
        pyproject_extra=(
            '[tool.defstate.state_storage]\nurl = "memory://x/y"\ndeadline = 7\nattempts = 2\n'
            "connect_timeout = 0.5\nread_timeout = 3\n"
        ),
    )
    storage = StateStorages(load_project_config(root)).get(
        ManagementType.VERSIONED_STATE_STORAGE, "t"
    )
    assert isinstance(storage, VersionedStateStorage)
    assert storage.policy == CallPolicy(attempts=2, deadline=7, connect_timeout=0.5, read_timeout=3)
    bad = make_project(
        {},
        pyproject_extra='[tool.defstate.state_storage]\nurl = "memory://x"\ndeadline = -1\n',
        name=f"bad{uuid.uuid4().hex[:6]}",
    )
    with pytest.raises(ProjectConfigError, match="deadline must be a positive number"):
        load_project_config(bad)
