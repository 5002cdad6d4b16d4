"""Real Dagster processes for the tests: a Dagster instance folder, code servers, the CLIs."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from conftest import subprocess_env

BIN = Path(sys.executable).parent
# Telemetry off; runs launched at once (the default queued coordinator needs a daemon).
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


def dagster_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Child-process environment with its own ``DAGSTER_HOME`` (created here)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = subprocess_env({"DAGSTER_HOME": str(home), **(extra or {})})
    env.pop("DAGSTER_IS_DEV_CLI", None)
    return env


def run_tool(
    tool: str, *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``tool`` (``dagster``, ``dg``, ``defstate``) from this interpreter's environment."""
    return subprocess.run(
        [str(BIN / tool), *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def code_server(
    cwd: Path, env: Mapping[str, str], log: Path, *target: str, timeout: float = 90
) -> Iterator[int]:
    """``dagster api grpc TARGET`` on 127.0.0.1 (a real code server); yields its port once it
    has loaded the code, and stops it afterwards."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "api", "grpc", *target, "-h", "127.0.0.1", "-p", str(port)],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while "Started Dagster code server" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"code server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def wait_for_json(path: Path, timeout: float = 90, log: Path | None = None) -> dict[str, object]:
    """The JSON document a run writes to ``path`` (polling until it is complete)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            data: dict[str, object] = json.loads(path.read_text())
            return data
        time.sleep(0.2)
    raise AssertionError(f"{path} was not written in {timeout}s:\n{log.read_text() if log else ''}")
