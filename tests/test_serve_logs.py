"""serve/dev logs: one format (text or JSON), levels, ISO 8601 times, a busy port fails at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from conftest import ProjectFactory, start_cli, subprocess_env
from test_server import LOG_LINE, Server


def _plain_project(make_project: ProjectFactory) -> Path:
    return make_project(
        {
            "defs/p/defs.yaml": "type: fixture_components.PlainComponent\nattributes:\n  assets: [a]\n"
        }
    )


def test_text_log_lines_share_one_format_and_health_times_are_iso(
    make_project: ProjectFactory,
) -> None:
    server = Server(["serve"], cwd=_plain_project(make_project))
    try:
        health = server.get("/health")
        for field in ("loaded_at", "last_reload_at"):
            assert datetime.fromisoformat(health[field]).utcoffset() is not None, health
        status, _ = server.post("/reload?wait=1")
        assert status == 200
        server.wait_for_line("reloaded in ")
    finally:
        assert server.stop() == 0
    assert server.raw and all(LOG_LINE.match(line) for line in server.raw), server.raw


def test_json_logs_and_log_level(make_project: ProjectFactory) -> None:
    root = _plain_project(make_project)
    process = start_cli("serve", "--port", "0", "--log-format", "json", cwd=root, merge_stderr=True)
    assert process.stdout is not None
    records = []
    while not records or not records[-1]["message"].startswith("serving "):
        records.append(json.loads(process.stdout.readline()))
    process.terminate()
    rest = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert process.wait(timeout=30) == 0
    serving = records[-1]
    assert serving["level"] == "info" and serving["url"].startswith("http://127.0.0.1:")
    assert serving["time"].endswith("Z")
    assert rest[-1]["message"] == "stopped"

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    quiet = start_cli(
        "serve", "--port", str(port), "--log-level", "warning", cwd=root, merge_stderr=True
    )
    deadline = time.monotonic() + 60
    while True:  # up: it answers, though it printed nothing at info level
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                break
        except OSError:
            assert time.monotonic() < deadline and quiet.poll() is None
            time.sleep(0.1)
    quiet.terminate()
    out, _ = quiet.communicate(timeout=30)
    assert quiet.returncode == 0
    assert "serving" not in out and "stopped" not in out


def test_busy_port_fails_at_once_naming_it(make_project: ProjectFactory) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "defstate", "serve", "--port", str(port)],
            cwd=_plain_project(make_project),
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
