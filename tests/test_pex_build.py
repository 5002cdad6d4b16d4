"""The PEX build of examples/pex_build: state baked at build time, read-only at run time.

Real ``uv`` and ``pex`` builds of the quickstart (once per module), run from an empty folder
with a fresh ``PEX_ROOT``, ``DEFSTATE_DEPLOY=1`` and the external catalog gone.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import attrs
import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BUILD_SCRIPT = REPO_ROOT / "examples" / "pex_build" / "build.py"
KEY = "Catalog[warehouse]"
QUICKSTART_ASSETS = [
    "marts/revenue_by_customer",
    "raw/customers",
    "raw/orders",
    "staging/customers",
    "staging/orders",
]
STATE_IN_PEX = "defstate_project/quickstart/defs/.local_defs_state/"


@attrs.frozen
class Built:
    baked: Path  # refreshed at build time
    unbaked: Path  # built with --no-refresh
    baked_state: dict[str, bytes]  # the .local_defs_state files inside the baked PEX


def _build(build_dir: Path, output: Path, pex_root: Path, *extra: str) -> None:
    args = ["--build-dir", str(build_dir), "--output", str(output), *extra]
    completed = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), *args],
        env={**_clean_env(), "PEX_ROOT": str(pex_root)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DEFSTATE_", "PEX_"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("pex")
    cache = tmp / "pex-build-cache"
    _build(tmp / "build-baked", tmp / "app.pex", cache)
    _build(tmp / "build-unbaked", tmp / "unbaked.pex", cache, "--no-refresh")
    # Nothing of the build survives: no staged project, no external catalog, no build venv.
    shutil.rmtree(tmp / "build-baked")
    shutil.rmtree(tmp / "build-unbaked")
    with zipfile.ZipFile(tmp / "app.pex") as archive:
        baked_state = {
            name.removeprefix(STATE_IN_PEX): archive.read(name)
            for name in archive.namelist()
            if name.startswith(STATE_IN_PEX) and not name.endswith("/")
        }
    return Built(tmp / "app.pex", tmp / "unbaked.pex", baked_state)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    empty = tmp_path / "cwd"
    empty.mkdir()
    return empty


def _env(pex_root: Path, *, deploy: bool = True) -> dict[str, str]:
    env = {**_clean_env(), "PEX_ROOT": str(pex_root)}
    if deploy:
        env["DEFSTATE_DEPLOY"] = "1"
    return env


def _run(
    pex: Path, *args: str, cwd: Path, pex_root: Path, deploy: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(pex), *args],
        cwd=cwd,
        env=_env(pex_root, deploy=deploy),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _extracted_states(pex_root: Path) -> list[dict[str, bytes]]:
    """Every copy of the baked ``.local_defs_state`` that running the PEX unpacked."""
    copies = []
    for folder in pex_root.rglob(".local_defs_state"):
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        copies.append(files)
    return copies


def test_the_pex_holds_the_project_its_state_and_no_external_system(built: Built) -> None:
    with zipfile.ZipFile(built.baked) as archive:
        names = set(archive.namelist())
    assert "defstate_entry.py" in names
    assert "defstate_project/pyproject.toml" in names
    assert "defstate_project/quickstart/defs/warehouse/defs.yaml" in names
    # the dot-folder survives (built from a sources directory), without lock files
    assert set(built.baked_state) >= {".gitignore", f"{KEY}/state"}
    assert not any(name.endswith(".lock") for name in built.baked_state)
    assert not any("catalog.json" in name for name in names)
    assert not any(name.startswith("defstate_project/external") for name in names)


def test_deployed_pex_lists_the_baked_definitions_without_refreshing(
    built: Built, run_dir: Path, tmp_path: Path
) -> None:
    pex_root = tmp_path / "pex_root"
    listed = _run(built.baked, "list", "defs", "--json", cwd=run_dir, pex_root=pex_root)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [a["key"] for a in document["assets"]] == QUICKSTART_ASSETS
    assert document["errors"] == []
    assert document["state"][KEY]["version"] == "local"
    assert document["state"][KEY]["management_type"] == "LOCAL_FILESYSTEM"
    revenue = document["assets"][0]
    assert revenue["deps"] == ["staging/customers", "staging/orders"]
    assert revenue["component"] == "quickstart/defs/warehouse/defs.yaml:2"

    checked = _run(built.baked, "check", cwd=run_dir, pex_root=pex_root)
    assert checked.returncode == 0, checked.stderr
    assert "5 assets" in checked.stdout

    # write_state_to_path never ran: a refresh (even a failed one) adds a history record and
    # rewrites state; every unpacked copy of the state is byte for byte what was baked.
    copies = _extracted_states(pex_root)
    assert copies, "running the PEX unpacked no .local_defs_state"
    assert all(copy == built.baked_state for copy in copies)
    assert list(run_dir.iterdir()) == []  # nothing written where it ran either


def test_a_refresh_inside_the_pex_would_fail_and_leave_a_trace(
    built: Built, run_dir: Path, tmp_path: Path
) -> None:
    """The control: without DEFSTATE_DEPLOY, `list defs` is a dev load and tries a refresh.

    It fails (the external catalog is not in the PEX) and records the attempt, so the test
    above would have seen a refresh; the baked state stays in use.
    """
    pex_root = tmp_path / "pex_root"
    listed = _run(
        built.baked, "list", "defs", "--json", cwd=run_dir, pex_root=pex_root, deploy=False
    )
    assert listed.returncode == 1
    document = json.loads(listed.stdout)
    assert [a["key"] for a in document["assets"]] == QUICKSTART_ASSETS
    [error] = document["errors"]
    assert error["key"] == KEY
    assert error["kind"] == "refresh"
    assert "FileNotFoundError" in error["message"]
    assert "external/catalog.json" in error["message"]
    copies = _extracted_states(pex_root)
    assert any(copy != built.baked_state for copy in copies)  # the failed attempt's record


def test_deployed_pex_serves_the_baked_definitions_from_worker_processes(
    built: Built, run_dir: Path, tmp_path: Path
) -> None:
    """`serve` (the Dockerfile's command) loads in `python -m defstate` workers: the PEX is
    built with --venv so that its sys.executable can run them."""
    process = subprocess.Popen(
        [sys.executable, str(built.baked), "serve", "--port", "0"],
        cwd=run_dir,
        env=_env(tmp_path / "pex_root"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process, lines), daemon=True)
    reader.start()
    try:
        url = _wait_for_url(lines, process)
        for path in ("/defs", "/worker/defs"):
            document = _get_json(url + path)
            assert [a["key"] for a in document["assets"]] == QUICKSTART_ASSETS, path
            assert document["errors"] == []
        # the web UI's static files ship inside the package, so inside the PEX too
        with urllib.request.urlopen(url + "/ui/app.js", timeout=60) as response:
            assert b"EventSource" in response.read()
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)


def _read_lines(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)


def _wait_for_url(lines: queue.Queue[str], process: subprocess.Popen[str]) -> str:
    """The URL of the ``serving ROOT at URL (dev=false)`` line ``serve --port 0`` prints."""
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}: {''.join(seen)}")
            continue
        seen.append(line)
        if " serving " in f" {line}" and " at http://" in line:  # after the log prefix
            return line.split(" at ", 1)[1].split()[0]
    pytest.fail(f"no 'serving ... at URL' line within 60s: {''.join(seen)}")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_pex_built_without_refreshing_fails_loudly_when_deployed(
    built: Built, run_dir: Path, tmp_path: Path
) -> None:
    pex_root = tmp_path / "pex_root"
    for args in (("list", "defs"), ("check",)):
        completed = _run(built.unbaked, *args, cwd=run_dir, pex_root=pex_root)
        assert completed.returncode == 1, args
        assert f"no state for key '{KEY}'" in completed.stderr
        assert f"defstate state refresh --key '{KEY}'" in completed.stderr
