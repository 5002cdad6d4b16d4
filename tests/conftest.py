"""Shared fixtures: throw-away projects and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

pytest_plugins = ["storage_servers", "postgres_server"]

ProjectFactory = Callable[..., Path]

# Tests that start real processes or servers for many seconds (pyproject.toml `markers`).
HEAVY_MARKERS = ("slow", "dagster", "postgres", "browser", "stress")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with heavy tests run first; within a file the order stays as written.

    `make test` spreads whole files over one worker per core (pytest-xdist, ``--dist
    loadfile``): started last, a long file would keep one worker busy while the others idle.
    """
    heavy = {item.path for item in items if any(map(item.get_closest_marker, HEAVY_MARKERS))}
    items.sort(key=lambda item: item.path not in heavy)  # a stable sort: files stay contiguous


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Create a project: ``make_project({"defs/a/defs.yaml": "..."}, pyproject_extra="...")``."""

    def make(files: Mapping[str, str], *, pyproject_extra: str = "", name: str = "proj") -> Path:
        root = tmp_path / name
        root.mkdir()
        pyproject = f'[project]\nname = "{name}"\n\n[tool.defstate]\n{pyproject_extra}\n'
        (root / "pyproject.toml").write_text(pyproject)
        write_files(root, files)
        return root

    return make


@pytest.fixture
def counter_dir(tmp_path: Path) -> Path:
    path = tmp_path / "counters"
    path.mkdir()
    return path


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: fixture components importable, no user state."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env.pop("DEFSTATE_DEPLOY", None)
    env.pop("DEFSTATE_STATE_INFO", None)
    env.update(extra or {})
    return env


def run_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m defstate ARGS`` in a real child process."""
    return subprocess.run(
        [sys.executable, "-m", "defstate", *args],
        cwd=cwd,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, merge_stderr: bool = False
) -> subprocess.Popen[str]:
    """Start ``python -m defstate ARGS`` in a real child process, its output piped (stderr
    into stdout with ``merge_stderr``), for tests that act while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "defstate", *args],
        cwd=cwd,
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The run's caches (downloads, parsed ``defs.yaml`` files) go to a temporary folder,
    never to the developer's ``~/.cache/defstate``; child processes inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path_factory.mktemp("defstate-cache")))
        yield


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets a test registered (values of its env templates) are not masked in later tests."""
    yield
    from defstate.redaction import forget_secrets

    forget_secrets()


# --- local HTTP servers (the HTTP components' tests) ---------------------------------------

_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy")


class LocalHttpServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 at a free port, serving from a daemon thread."""

    daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket (again: nothing happens)."""
        self.shutdown()
        self.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (test output stays clean), with one way to answer."""

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


ServerT = TypeVar("ServerT", bound=LocalHttpServer)


class HttpServers:
    """Starts local HTTP servers for one test; every one is stopped when the test ends."""

    def __init__(self) -> None:
        self.started: list[LocalHttpServer] = []

    def start(
        self, handler: Callable[..., BaseHTTPRequestHandler], server_class: type[ServerT]
    ) -> ServerT:
        server = server_class(("127.0.0.1", 0), handler)
        # a short poll interval: shutdown() waits for it
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self.started.append(server)
        return server


@pytest.fixture
def http_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpServers]:
    """Local HTTP servers: ``http_servers.start(Handler, LocalHttpServer)``. Proxy variables
    are removed for the test (urllib honours them; requests must go straight to 127.0.0.1)."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    servers = HttpServers()
    yield servers
    for server in reversed(servers.started):
        server.stop()
