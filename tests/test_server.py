"""``defstate serve`` and ``defstate dev`` as real processes on free loopback ports."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ProjectFactory, run_cli, subprocess_env
from fixture_components import call_count

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) +(?P<message>.*)$"
)


class Server:
    """A running ``defstate serve``/``dev`` process and its output lines."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "defstate", *args, "--port", "0"],
            cwd=cwd,
            env=subprocess_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.raw: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.wait_for_line("serving ", timeout=60)
        self.url = line.split(" at ", 1)[1].split()[0]

    def _pump(self) -> None:
        """Lines without the log prefix: ``message`` for info, ``level: message`` above."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line.rstrip("\n"))
            match = LOG_LINE.match(line.rstrip("\n"))
            if match is None:
                self.lines.put(line.rstrip("\n"))
            elif match["level"] == "INFO":
                self.lines.put(match["message"])
            else:
                self.lines.put(f"{match['level'].lower()}: {match['message']}")

    def wait_for_line(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line starting {prefix!r}; saw: {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def wait_for_text(self, text: str, timeout: float = 30) -> str:
        """The first line seen or still to come that contains ``text`` (a log line may
        reach the pipe after the HTTP answer that caused it)."""
        for line in self.seen:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r}; saw: {self.seen}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.loads(response.read())

    def post(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def keys(self) -> list[str]:
        return sorted(a["key"] for a in self.get("/defs")["assets"])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def _list_entry(name: str, source: Path, counter_dir: Path, extra: str = "") -> str:
    return (
        "type: fixture_components.ListComponent\nattributes:\n"
        f"  name: {name}\n  source_file: {source}\n  counter_dir: {counter_dir}\n" + extra
    )


def _project(make_project: ProjectFactory, counter_dir: Path, extra: str = "", **kw: str) -> Path:
    source = counter_dir.parent / "api.json"
    source.write_text(json.dumps(["a1", "a2"]))
    return make_project(
        {"defs/api/defs.yaml": _list_entry("api", source, counter_dir, extra)}, **kw
    )


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_serve_endpoints_and_atomic_reload_under_load(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    root = _project(make_project, counter_dir)
    (counter_dir.parent / "api.json").write_text(json.dumps(["a1", "a2", "a1:fresh"]))
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    server = Server(["serve"], cwd=root)
    servers.append(server)
    assert server.get("/health")["status"] == "ok"
    assert server.keys() == ["a1", "a2"]
    (check,) = server.get("/defs")["asset_checks"]
    assert (check["asset"], check["name"], check["component"]) == (
        "a1",
        "fresh",
        "defs/api/defs.yaml:1",
    )
    (component,) = server.get("/components")["components"]
    assert component["key"] == "List[api]" and component["management_type"] == "LOCAL_FILESYSTEM"
    state = server.get("/state")["state"]["List[api]"]
    assert state["version"] == "local" and state["management_type"] == "LOCAL_FILESYSTEM"
    assert call_count(counter_dir, "api") == 1  # serving is not dev: no refresh

    # Readers hammer /defs while the state flips between two shapes and the server reloads.
    shapes = [["a1", "a2"], [f"b{i}" for i in range(50)]]
    seen: list[tuple[int, list[str]]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                body = server.get("/defs")
                seen.append((body["generation"], sorted(a["key"] for a in body["assets"])))
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for round_ in range(4):
        shape = shapes[(round_ + 1) % 2]
        (counter_dir.parent / "api.json").write_text(json.dumps(shape))
        assert run_cli("state", "refresh", cwd=root).returncode == 0
        status, health = server.post("/reload?wait=1")
        assert status == 200 and health["status"] == "ok"
    stop.set()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert len(seen) > 10
    by_generation: dict[int, list[str]] = {}
    for generation, keys in seen:
        assert keys in (sorted(shapes[0]), sorted(shapes[1]))  # never a mix
        assert by_generation.setdefault(generation, keys) == keys  # one load per generation
    assert server.stop() == 0


def test_failed_reload_keeps_serving_old_load(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    root = _project(make_project, counter_dir)
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    server = Server(["serve"], cwd=root)
    servers.append(server)
    pyproject = root / "pyproject.toml"
    good = pyproject.read_text()
    pyproject.write_text(good + "\n[tool.defstate\n")  # invalid TOML
    status, health = server.post("/reload?wait=1")
    assert status == 500
    assert health["status"] == "degraded" and "invalid TOML" in health["last_reload_error"]
    assert server.get("/health")["last_reload_error"] == health["last_reload_error"]
    assert server.keys() == ["a1", "a2"]
    assert server.get("/defs")["generation"] == 1
    pyproject.write_text(good)
    status, health = server.post("/reload?wait=1")
    assert status == 200 and health["status"] == "ok" and health["generation"] == 2


def test_sigterm_stops_cleanly_without_orphans(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    root = _project(make_project, counter_dir)
    server = Server(["dev"], cwd=root)
    servers.append(server)
    assert call_count(counter_dir, "api") == 1
    defs = root / "defs/api/defs.yaml"
    defs.write_text(defs.read_text() + "  sleep: 60\n")  # the next refresh hangs
    deadline = time.monotonic() + 30
    while call_count(counter_dir, "api") < 2:  # a worker is inside write_state_to_path
        assert time.monotonic() < deadline, server.seen
        time.sleep(0.05)
    (worker,) = _children(server.process.pid)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 15
    assert server.wait_for_line("stopped")
    assert _children(server.process.pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def _published_versioned_project(
    make_project: ProjectFactory, counter_dir: Path, tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """A VERSIONED_STATE_STORAGE project on file:// with one published version."""
    root = _project(
        make_project,
        counter_dir,
        extra="  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n",
        pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path}/store"\n',
    )
    env = {"DEFSTATE_CACHE_DIR": str(tmp_path / "cache")}
    assert run_cli("state", "refresh", cwd=root, env=env).returncode == 0
    return root, env


def test_reload_on_new_state_picks_up_versions_published_elsewhere(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server], tmp_path: Path
) -> None:
    root, env = _published_versioned_project(make_project, counter_dir, tmp_path)
    server = Server(["serve", "--reload-on-new-state", "0.2"], cwd=root, env=env)
    servers.append(server)
    pinned = server.get("/state")["state"]["List[api]"]["version"]

    # another process publishes a new version (a scheduled job, say)
    (counter_dir.parent / "api.json").write_text(json.dumps(["new"]))
    assert run_cli("state", "refresh", cwd=root, env=env).returncode == 0

    # --reload-on-new-state notices the moved pointer and reloads to the new pin
    deadline = time.monotonic() + 30
    while server.keys() != ["new"]:
        assert time.monotonic() < deadline, server.seen
        time.sleep(0.1)
    assert server.get("/state")["state"]["List[api]"]["version"] != pinned
    worker = server.get("/worker/defs")
    assert sorted(a["key"] for a in worker["assets"]) == ["new"]


def test_pin_reconstruction_in_worker_sees_old_version(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server], tmp_path: Path
) -> None:
    root, env = _published_versioned_project(make_project, counter_dir, tmp_path)
    server = Server(["serve"], cwd=root, env=env)
    servers.append(server)
    (counter_dir.parent / "api.json").write_text(json.dumps(["new"]))
    assert run_cli("state", "refresh", cwd=root, env=env).returncode == 0
    worker = server.get("/worker/defs")
    assert sorted(a["key"] for a in worker["assets"]) == ["a1", "a2"]  # the pinned version
    assert server.post("/reload?wait=1")[0] == 200
    assert server.keys() == ["new"]
    worker = server.get("/worker/defs")
    assert sorted(a["key"] for a in worker["assets"]) == ["new"]


COMPONENT_V1 = """
import json
from pathlib import Path

import attrs

from defstate import AssetSpec, Definitions, StateBackedComponent
from fixture_components import record_call


@attrs.define(kw_only=True)
class Tables(StateBackedComponent):
    name: str
    source_file: str
    counter_dir: str
    fail_file: str = ""

    def get_defs_state_key(self) -> str:
        return f"Tables[{self.name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        record_call(self.counter_dir, self.name)
        if self.fail_file and Path(self.fail_file).exists():
            raise RuntimeError("catalog API is down")
        state_path.write_text(Path(self.source_file).read_text())

    def build_defs_from_state(self, context, state_path):
        if state_path is None:
            return Definitions()
        return Definitions([AssetSpec(key=PREFIX + n) for n in json.loads(state_path.read_text())])


PREFIX = ""
"""


def _dev_project(make_project: ProjectFactory, counter_dir: Path) -> Path:
    files: dict[str, str] = {"devproj/__init__.py": "", "devproj/tables.py": COMPONENT_V1}
    for name in ("one", "two"):
        source = counter_dir.parent / f"{name}.json"
        source.write_text(json.dumps([f"{name}_a"]))
        files[f"defs/{name}/defs.yaml"] = (
            "type: devproj.tables.Tables\nattributes:\n"
            f"  name: {name}\n  source_file: {source}\n  counter_dir: {counter_dir}\n"
            f"  fail_file: {counter_dir.parent / (name + '.fail')}\n"
        )
    return make_project(files)


def test_dev_reloads_on_edits_and_refreshes_only_what_changed(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    root = _dev_project(make_project, counter_dir)
    server = Server(["dev"], cwd=root)
    servers.append(server)
    assert server.keys() == ["one_a", "two_a"]
    assert call_count(counter_dir, "one") == call_count(counter_dir, "two") == 1

    # edit one defs.yaml: only that key refreshes
    (counter_dir.parent / "one.json").write_text(json.dumps(["one_a", "one_b"]))
    defs = root / "defs/one/defs.yaml"
    defs.write_text(defs.read_text() + "  defs_state:\n    refresh_if_dev: true\n")
    line = server.wait_for_line("reloaded", timeout=60)
    assert "3 assets (+1 -0 ~0)" in line and "refreshed 1 key: Tables[one]" in line
    assert server.keys() == ["one_a", "one_b", "two_a"]
    assert call_count(counter_dir, "one") == 2 and call_count(counter_dir, "two") == 1

    # a burst of saves to an unrelated Python file: one reload, nothing refreshed
    for i in range(5):
        (root / "devproj/notes.py").write_text(f"N = {i}\n")
        time.sleep(0.02)
    line = server.wait_for_line("reloaded", timeout=60)
    assert "refreshed 0 keys" in line
    time.sleep(1.0)
    assert not any(s.startswith("reloaded") for s in _drain(server))

    # edit the component's code: a fresh worker runs it, and both keys using it refresh
    code = root / "devproj/tables.py"
    code.write_text(code.read_text().replace('PREFIX = ""', 'PREFIX = "v2_"'))
    line = server.wait_for_line("reloaded", timeout=60)
    assert "refreshed 2 keys" in line
    assert server.keys() == ["v2_one_a", "v2_one_b", "v2_two_a"]
    assert call_count(counter_dir, "one") == 3 and call_count(counter_dir, "two") == 2


def _drain(server: Server) -> list[str]:
    drained = []
    while True:
        try:
            drained.append(server.lines.get_nowait())
        except queue.Empty:
            return drained


def test_dev_failed_refresh_keeps_last_good_state(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    root = _dev_project(make_project, counter_dir)
    server = Server(["dev", "--refresh-always"], cwd=root)
    servers.append(server)
    assert server.keys() == ["one_a", "two_a"]
    (counter_dir.parent / "one.fail").touch()
    (root / "devproj/touch.py").write_text("X = 1\n")
    line = server.wait_for_line("reloaded", timeout=60)
    assert "2 assets" in line
    warning = server.wait_for_line("warning:")
    assert "Tables[one]" in warning and "catalog API is down" in warning
    assert "defs/one/defs.yaml:1" in warning
    assert server.keys() == ["one_a", "two_a"]  # still serving the last good state
    assert server.get("/health")["status"] == "ok"
    assert call_count(counter_dir, "one") == 2 and call_count(counter_dir, "two") == 2


@pytest.mark.parametrize("mode", ["serve", "dev"])
def test_reload_with_new_load_errors_keeps_serving_what_works(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server], mode: str
) -> None:
    """docs/reliability.md guarantee 9: serve keeps the load that worked and says
    ``degraded`` with the new errors; dev shows the new load, ``degraded`` while broken."""
    sources = {}
    files = {}
    for name in ("api", "crm"):
        sources[name] = counter_dir.parent / f"{name}.json"
        sources[name].write_text(json.dumps([f"{name}1"]))
        files[f"defs/{name}/defs.yaml"] = _list_entry(name, sources[name], counter_dir)
    root = make_project(files)
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    server = Server([mode], cwd=root)
    servers.append(server)
    assert server.get("/health")["status"] == "ok"
    crm = root / "defs/crm/defs.yaml"
    good = crm.read_text()
    crm.write_text(good.replace("type: fixture_components.ListComponent", "type: no.such.Type"))
    status, health = server.post("/reload?wait=1")
    assert health["status"] == "degraded"
    if mode == "serve":
        assert status == 500
        assert server.keys() == ["api1", "crm1"]  # still the load that worked
        (rejected,) = health["rejected_reload_errors"]
        assert "no.such" in rejected["message"] and rejected["file"].endswith("crm/defs.yaml")
        assert "no.such" in health["last_reload_error"]
        assert "no.such" in server.wait_for_text("new error(s); still serving")
    else:
        assert status == 200
        assert server.keys() == ["api1"]  # dev shows the new load ...
        assert health["load_errors"] == 1 and "no.such" in health["errors"][0]["message"]
    assert server.get("/health")["status"] == "degraded"
    crm.write_text(good)
    status, health = server.post("/reload?wait=1")
    assert status == 200 and health["status"] == "ok" and server.keys() == ["api1", "crm1"]
    assert server.stop() == 0
