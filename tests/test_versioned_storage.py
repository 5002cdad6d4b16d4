"""Versioned storage through loads and refreshes: memory://, file://, s3:// (moto), gs://.

What every storage promises (publish, read back, pins, versions, corruption) is checked once
per storage by the contract suite (test_storage_contract.py); tests here that are about the
loader or the download cache run on one backend (``ONE_BACKEND``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import fsspec
import pytest

from conftest import ProjectFactory, run_cli, start_cli, subprocess_env
from defstate import StateInfo, load_defs, refresh_state
from defstate.errors import DefstateError
from defstate.state_storage.archive import sha256_bytes
from defstate.state_storage.calls import CallPolicy
from defstate.state_storage.versioned import VersionedStateStorage
from fixture_components import call_count


@attrs.frozen
class Backend:
    name: str
    url: str

    @property
    def multiprocess(self) -> bool:
        return self.name != "memory"  # memory:// is one store per process

    def storage(self) -> VersionedStateStorage:
        return VersionedStateStorage(self.url)


@pytest.fixture(params=["memory", "file", "s3", "gcs"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    name = request.param
    if name == "memory":
        url = f"memory://defstate-{uuid.uuid4().hex}/state"
    elif name == "file":
        url = f"file://{tmp_path}/store/state"
    elif name == "s3":
        url = f"s3://{request.getfixturevalue('s3_bucket')}/state"
    else:
        url = f"gs://{request.getfixturevalue('gcs_bucket')}/state"
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    yield Backend(name, url)
    if name == "memory":
        fsspec.filesystem("memory").store.clear()


VERSIONED = "  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n"


def _entry(name: str, source: Path, counter_dir: Path) -> str:
    return (
        "type: fixture_components.ListComponent\nattributes:\n"
        f"  name: {name}\n  source_file: {source}\n  counter_dir: {counter_dir}\n" + VERSIONED
    )


def _project(
    make_project: ProjectFactory, counter_dir: Path, names: list[str], with_dir: bool = False
) -> Path:
    files: dict[str, str] = {}
    for name in names:
        source = counter_dir.parent / f"{name}.json"
        source.write_text(json.dumps([f"{name}_1", f"{name}_2"]))
        files[f"defs/{name}/defs.yaml"] = _entry(name, source, counter_dir)
    if with_dir:
        files["defs/zdir/defs.yaml"] = (
            "type: fixture_components.DirectoryComponent\nattributes:\n  tag: d1\n  files: 3\n"
            + VERSIONED
        )
    return make_project(files)


def _keys(root: Path, **kwargs: object) -> list[str]:
    result = load_defs(root, **kwargs)  # type: ignore[arg-type]
    assert result.ok, result.errors
    return sorted(str(k) for k in result.definitions.asset_keys)


ONE_BACKEND = pytest.mark.parametrize("backend", ["memory"], indirect=True)


@ONE_BACKEND
def test_publish_read_and_pin(
    backend: Backend, make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir, ["api"], with_dir=True)
    assert _keys(root) == []  # nothing published yet: state_path is None
    report = refresh_state(root)
    assert report.ok, (report.results, report.errors)
    versions = {r.key: r.version for r in report.results}
    assert all(v is not None and uuid.UUID(v.version).version == 4 for v in versions.values())
    first = load_defs(root)
    assert sorted(str(k) for k in first.definitions.asset_keys) == ["api_1", "api_2", "dir/d1"]
    pin = StateInfo.from_json(first.state_info.to_json())
    assert pin.get("List[api]").version == versions["List[api]"].version  # type: ignore[union-attr]

    (counter_dir.parent / "api.json").write_text(json.dumps(["api_new"]))
    assert refresh_state(root, keys=["List[api]"]).ok
    assert _keys(root) == ["api_new", "dir/d1"]  # latest moved
    assert _keys(root, state_info=pin) == ["api_1", "api_2", "dir/d1"]  # the pin did not
    stored = backend.storage().versions("List[api]")
    assert stored[0].version == versions["List[api]"].version
    assert len(stored) == 2


@ONE_BACKEND
def test_repeated_load_downloads_no_state_bytes(
    backend: Backend,
    make_project: ProjectFactory,
    counter_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _project(make_project, counter_dir, ["api"], with_dir=True)
    assert refresh_state(root).ok
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "fresh-cache"))  # another machine
    pin = load_defs(root).state_info  # downloads into the fresh cache
    # Remove every stored state object: a pinned load must still work from the cache alone.
    storage = backend.storage()
    fs = storage.fs
    for key in ("List[api]", "DirectoryComponent"):
        for version in storage.versions(key):
            base = storage.version_path(key, version.version)
            for name in ("state", "state.tar.gz", "latest.json"):
                if fs.exists(f"{base}/{name}"):
                    fs.rm_file(f"{base}/{name}")
        fs.rm_file(storage.pointer_path(key))  # and a pin reads no pointer
    assert _keys(root, state_info=pin) == ["api_1", "api_2", "dir/d1"]


@ONE_BACKEND
def test_corrupted_download_is_detected_and_never_loaded(
    backend: Backend,
    make_project: ProjectFactory,
    counter_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _project(make_project, counter_dir, ["api", "crm"])
    assert refresh_state(root).ok
    storage = backend.storage()
    version = storage.latest("List[api]")
    assert version is not None
    storage.fs.pipe_file(f"{storage.version_path('List[api]', version.version)}/state", b'["evil"]')
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "fresh-cache"))
    result = load_defs(root)
    assert sorted(str(k) for k in result.definitions.asset_keys) == ["crm_1", "crm_2"]
    (error,) = result.errors
    text = str(error)
    assert error.key == "List[api]" and version.version in text and backend.url in text
    assert "expected" in text or "sha256" in text


@ONE_BACKEND
def test_corrupted_cache_file_is_detected(
    backend: Backend, make_project: ProjectFactory, counter_dir: Path, tmp_path: Path
) -> None:
    root = _project(make_project, counter_dir, ["api"])
    assert refresh_state(root).ok
    (cached,) = (tmp_path / "cache").rglob("state")
    cached.write_text('["tampered"]')
    (error,) = load_defs(root).errors
    assert "does not match its sha256" in str(error) and error.key == "List[api]"


def _refresh_process(root: Path, *args: str) -> subprocess.Popen[str]:
    return start_cli("state", "refresh", *args, cwd=root)


def _check_consistent(storage: VersionedStateStorage, key: str) -> str:
    """The pointer names a complete version whose bytes match its manifest."""
    latest = storage.latest(key)
    assert latest is not None, key
    name = "state.tar.gz" if latest.is_directory else "state"
    data = storage.fs.cat_file(f"{storage.version_path(key, latest.version)}/{name}")
    assert sha256_bytes(data) == latest.sha256 and len(data) == latest.size
    return latest.version


@pytest.mark.slow  # four CLI processes per backend
def test_four_processes_refresh_eight_keys_at_once(
    backend: Backend, make_project: ProjectFactory, counter_dir: Path
) -> None:
    """Writers of different keys never clobber each other: four processes (each refreshing
    two keys at once) publish into one store at the same time."""
    if not backend.multiprocess:
        pytest.skip("memory:// is private to one process")
    names = [f"k{i}" for i in range(8)]
    root = _project(make_project, counter_dir, names)
    processes = [
        _refresh_process(root, "--key", f"List[{a}]", "--key", f"List[{b}]", "--concurrency", "2")
        for a, b in zip(names[::2], names[1::2], strict=True)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    storage = backend.storage()
    for name in names:
        _check_consistent(storage, f"List[{name}]")
        assert call_count(counter_dir, name) == 1
    assert len(_keys(root)) == 16


PUBLISH_WHEN_GO = """
import os, sys, time
from pathlib import Path
from defstate.state_storage.versioned import VersionedStateStorage

url, go, tag = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
state = Path(sys.argv[4])
state.mkdir()
for i in range(20):
    (state / f"part-{i}.txt").write_text(tag * 1000)
storage = VersionedStateStorage(url)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
print(storage.publish("shared", state, {}).version.version)
"""


def test_two_processes_publish_one_key_at_once(backend: Backend, tmp_path: Path) -> None:
    """Below single-flight: two publications of one key both complete, the pointer names one."""
    if not backend.multiprocess:
        pytest.skip("memory:// is private to one process")
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISH_WHEN_GO, backend.url, str(go), tag, str(tmp_path / tag)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for process in processes:  # both interpreters up, storage imported, waiting
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.communicate(timeout=60)
    go.touch()
    versions = set()
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        versions.add(out.strip())
    storage = backend.storage()
    assert len(versions) == 2
    assert _check_consistent(storage, "shared") in versions
    assert {v.version for v in storage.versions("shared")} == versions  # both complete


KILL_BEFORE_POINTER = """
import os, signal, sys
from defstate.state_storage.versioned import VersionedStateStorage
from defstate import refresh_state

def die(self, key, manifest_bytes):
    os.kill(os.getpid(), signal.SIGKILL)

VersionedStateStorage._move_pointer = die
refresh_state(sys.argv[1])
"""


def test_refresh_killed_before_pointer_move_keeps_old_latest(
    backend: Backend, make_project: ProjectFactory, counter_dir: Path
) -> None:
    if not backend.multiprocess:
        pytest.skip("memory:// is private to one process")
    root = _project(make_project, counter_dir, ["api"])
    assert refresh_state(root).ok
    storage = backend.storage()
    old = storage.latest("List[api]")
    (counter_dir.parent / "api.json").write_text(json.dumps(["api_new"]))
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_BEFORE_POINTER), str(root)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert len(storage.versions("List[api]")) == 2  # the new bytes were uploaded ...
    assert storage.latest("List[api]") == old  # ... but the pointer did not move
    assert _keys(root) == ["api_1", "api_2"]


@ONE_BACKEND
def test_management_type_change_never_reads_the_other_state(
    backend: Backend, make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir, ["api"])
    defs = root / "defs/api/defs.yaml"
    versioned_text = defs.read_text()
    defs.write_text(versioned_text.replace(VERSIONED, ""))  # LOCAL_FILESYSTEM
    assert refresh_state(root).ok
    local_pin = load_defs(root).state_info
    defs.write_text(versioned_text)
    assert _keys(root) == []  # local state exists, but this key is versioned now
    assert _keys(root, state_info=local_pin) == []


@pytest.mark.parametrize("backend", ["file"], indirect=True)  # a CLI process: not memory://
def test_cli_refresh_publishes_both_strategies_in_one_run(
    backend: Backend, make_project: ProjectFactory, counter_dir: Path
) -> None:
    if not backend.multiprocess:
        pytest.skip("memory:// is private to one process")
    root = _project(make_project, counter_dir, ["remote"])
    local_source = counter_dir.parent / "local.json"
    local_source.write_text('["here"]')
    (root / "defs/local").mkdir()
    (root / "defs/local/defs.yaml").write_text(
        _entry("local", local_source, counter_dir).replace(VERSIONED, "")
    )
    done = run_cli("state", "refresh", cwd=root)
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines[0].startswith("refreshed List[local]  version=local")
    assert lines[1].startswith("refreshed List[remote]  version=")
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=root)
    data = json.loads(listed.stdout)
    assert data["state"]["List[remote]"]["management_type"] == "VERSIONED_STATE_STORAGE"
    assert data["state"]["List[local]"]["version"] == "local"
    assert {a["key"] for a in data["assets"]} == {"here", "remote_1", "remote_2"}


def _s3_project(make_project: ProjectFactory, counter_dir: Path, storage_toml: str) -> Path:
    source = counter_dir.parent / "api.json"
    source.write_text('["a"]')
    return make_project(
        {"defs/api/defs.yaml": _entry("api", source, counter_dir)},
        pyproject_extra=textwrap.dedent(storage_toml),
    )


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    *progress, line = lines  # retries of a transient failure say so, one line each
    assert all("retrying (attempt" in p for p in progress), lines
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_missing_bucket_is_a_one_line_error(
    s3_endpoint: str, make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _s3_project(
        make_project,
        counter_dir,
        """
        [tool.defstate.state_storage]
        url = "s3://no-such-bucket/state"
        """,
    )
    listed = run_cli("list", "defs", "--no-refresh", cwd=root)
    _assert_one_line_error(listed, "s3://no-such-bucket/state", "List[api]", "does not exist")
    refreshed = run_cli("state", "refresh", cwd=root)
    _assert_one_line_error(refreshed, "s3://no-such-bucket/state", "List[api]")


def test_unreachable_storage_is_retried_then_one_line_error(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    from storage_servers import free_port

    root = _s3_project(
        make_project,
        counter_dir,
        f"""
        [tool.defstate.state_storage]
        url = "s3://some-bucket/state"
        [tool.defstate.state_storage.storage_options]
        endpoint_url = "http://127.0.0.1:{free_port()}"
        key = "AKIDEXAMPLE"
        secret = "{{{{ env.TOP_SECRET }}}}"
        config_kwargs = {{retries = {{max_attempts = 1}}}}
        """,
    )
    started = time.monotonic()
    done = run_cli("state", "refresh", cwd=root, env={"TOP_SECRET": "hunter2-very-secret"})
    elapsed = time.monotonic() - started
    _assert_one_line_error(done, "s3://some-bucket/state", "List[api]", "connect")
    assert "retrying (attempt 2 of 4" in done.stderr  # progress says it is retrying
    assert "hunter2" not in done.stdout + done.stderr
    assert elapsed < 30, elapsed  # refused: a few quick retries, no client-side retry storm


@pytest.fixture(scope="module")
def s3_with_auth() -> Iterator[str]:
    """A second moto server that checks credentials (it knows no access keys at all)."""
    import time
    import urllib.request

    from storage_servers import free_port

    port = free_port()
    env = subprocess_env({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server with auth did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_denied_credentials_is_a_one_line_error(
    s3_with_auth: str, make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _s3_project(
        make_project,
        counter_dir,
        f"""
        [tool.defstate.state_storage]
        url = "s3://private-bucket/state"
        [tool.defstate.state_storage.storage_options]
        endpoint_url = "{s3_with_auth}"
        key = "AKIAUNKNOWNKEY"
        secret = "{{{{ env.TOP_SECRET }}}}"
        """,
    )
    done = run_cli("state", "refresh", cwd=root, env={"TOP_SECRET": "hunter2-very-secret"})
    _assert_one_line_error(done, "s3://private-bucket/state", "List[api]", "access denied")
    assert "hunter2" not in done.stdout + done.stderr


def test_transient_storage_errors_are_retried_and_permanent_ones_are_not(
    tmp_path: Path,
) -> None:
    storage = VersionedStateStorage(f"file://{tmp_path}/store", policy=CallPolicy(attempts=3))
    calls: list[str] = []

    def flaky(timeout: float | None) -> str:
        calls.append("x")
        if len(calls) < 3:
            raise ConnectionError("connection reset by peer")
        return "ok"

    assert storage._call("read", "k", flaky) == "ok" and len(calls) == 3

    denied: list[str] = []

    def forbidden(timeout: float | None) -> None:
        denied.append("x")
        raise PermissionError("Forbidden")

    with pytest.raises(DefstateError, match="access denied") as info:
        storage._call("read", "k", forbidden)
    assert len(denied) == 1 and "key 'k'" in str(info.value)


def test_storage_url_env_var_overrides_pyproject(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from defstate.loader.project import load_project_config

    root = make_project(
        {}, pyproject_extra='[tool.defstate.state_storage]\nurl = "s3://configured/x"\n'
    )
    monkeypatch.delenv("DEFSTATE_STATE_STORAGE_URL", raising=False)
    assert load_project_config(root).state_storage.url == "s3://configured/x"  # type: ignore[union-attr]
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", "memory://override/y")
    assert load_project_config(root).state_storage.url == "memory://override/y"  # type: ignore[union-attr]
