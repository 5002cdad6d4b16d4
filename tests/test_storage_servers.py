"""Sanity checks for the loopback S3 (moto) and GCS (fake-gcs-server) test endpoints.

Besides proving the fixtures work, these tests pin down the storage primitives that versioned
state storage relies on: atomic whole-object writes, create-if-absent, and compare-and-swap.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import fsspec
import pytest

from storage_servers import (
    free_port,
    gcs_env,
    gcs_storage_options,
    s3_env,
    s3_storage_options,
)

# ------------------------------------------------------------------------------------- helpers


def _s3(endpoint: str) -> Any:
    return fsspec.filesystem("s3", **s3_storage_options(endpoint))


def _gcs(endpoint: str) -> Any:
    return fsspec.filesystem("gcs", **gcs_storage_options(endpoint))


def gcs_put_if_generation_match(fs: Any, path: str, data: bytes, generation: str | int) -> Any:
    """Upload ``data`` to ``path`` only if its live generation is ``generation`` (0: absent).

    gcsfs's ``pipe_file`` only offers ``mode="create"`` (ifGenerationMatch=0), so compare-and-swap
    needs a direct call. It must be a *multipart* upload: fake-gcs-server ignores preconditions
    on media and resumable uploads (real GCS honours them on all). A random boundary keeps any
    payload intact; gcsfs's fixed "==0==" boundary breaks on payloads containing "\\n--==0==".
    Returns the new object resource (``["generation"]`` is the new generation, a str).
    Raises FileExistsError on a precondition failure (HTTP 412), FileNotFoundError for a
    missing bucket.
    """
    bucket, key, _ = fs.split_path(path)
    boundary = uuid.uuid4().hex
    head = json.dumps({"name": key}).encode()
    body = b"".join(
        [
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
            head,
            f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return fs.call(
        "POST",
        f"{fs._location}/upload/storage/v1/b/{{}}/o",
        bucket,
        uploadType="multipart",
        ifGenerationMatch=str(generation),
        headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
        data=body,
        json_out=True,
    )


# ------------------------------------------------------------------------------------------ S3


def test_s3_write_read_list_delete(s3_endpoint: str, s3_bucket: str) -> None:
    fs = _s3(s3_endpoint)
    path = f"{s3_bucket}/state/key/v1.json"
    fs.pipe_file(path, b'{"a": 1}')
    assert fs.cat_file(path) == b'{"a": 1}'
    assert fs.ls(f"{s3_bucket}/state/key", detail=False) == [path]
    fs.rm(path)
    assert not fs.exists(path)


def test_s3_bucket_is_fresh_and_env_points_at_moto(s3_endpoint: str, s3_bucket: str) -> None:
    # No endpoint/credential options: only the env vars set by the fixture lead to moto.
    fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)
    assert fs.ls("", detail=False) == [s3_bucket]  # moto was reset: other tests' buckets are gone
    assert os.environ["AWS_ENDPOINT_URL"] == s3_endpoint


def test_s3_create_if_absent(s3_endpoint: str, s3_bucket: str) -> None:
    fs = _s3(s3_endpoint)
    path = f"{s3_bucket}/latest"
    out = fs.pipe_file(path, b"first", mode="create")  # put_object(IfNoneMatch="*")
    assert out["ETag"] == fs.info(path)["ETag"]  # the PUT response already carries the ETag
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"second", mode="create")
    with pytest.raises(FileExistsError):  # the same, spelled as a boto kwarg
        fs.pipe_file(path, b"second", IfNoneMatch="*")
    assert fs.cat_file(path) == b"first"


def test_s3_compare_and_swap(s3_endpoint: str, s3_bucket: str) -> None:
    fs = _s3(s3_endpoint)
    path = f"{s3_bucket}/latest"
    fs.pipe_file(path, b"v1")
    etag_v1 = fs.info(path)["ETag"]  # quoted, e.g. '"6654c7..."'; pass it back as is
    etag_v2 = fs.pipe_file(path, b"v2", IfMatch=etag_v1)["ETag"]
    assert etag_v2 != etag_v1
    # A stale ETag: 412 PreconditionFailed, which s3fs maps to OSError(EINVAL), not
    # FileExistsError (that is reserved for If-None-Match failures).
    with pytest.raises(OSError) as excinfo:
        fs.pipe_file(path, b"v3", IfMatch=etag_v1)
    assert excinfo.type is OSError and excinfo.value.errno == errno.EINVAL
    assert excinfo.value.__cause__.response["Error"]["Code"] == "PreconditionFailed"  # type: ignore[union-attr]
    assert fs.cat_file(path) == b"v2"
    # IfMatch on a missing object is a 404, not a 412.
    with pytest.raises(FileNotFoundError):
        fs.pipe_file(f"{s3_bucket}/absent", b"x", IfMatch=etag_v1)


def test_s3_missing_bucket_and_unreachable_endpoint(s3_endpoint: str, s3_bucket: str) -> None:
    fs = _s3(s3_endpoint)
    with pytest.raises(FileNotFoundError):
        fs.pipe_file("no-such-bucket/k", b"x")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("no-such-bucket/k")
    # Nothing listens on this port; one botocore attempt keeps the test fast (default: ~2 s).
    from botocore.exceptions import EndpointConnectionError

    opts = s3_storage_options(f"http://127.0.0.1:{free_port()}")
    dead = fsspec.filesystem("s3", config_kwargs={"retries": {"max_attempts": 1}}, **opts)
    with pytest.raises(EndpointConnectionError):
        dead.cat_file(f"{s3_bucket}/k")


# ----------------------------------------------------------------------------------------- GCS


def test_gcs_uses_plain_gcsfs_without_grpc_probe(gcs_endpoint: str) -> None:
    import gcsfs.core

    # ExtendedGcsFileSystem would mean GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT was not honoured.
    assert type(_gcs(gcs_endpoint)) is gcsfs.core.GCSFileSystem


def test_gcs_write_read_list_delete(gcs_endpoint: str, gcs_bucket: str) -> None:
    fs = _gcs(gcs_endpoint)
    path = f"{gcs_bucket}/state/key/v1.json"
    fs.pipe_file(path, b'{"a": 1}')
    assert fs.cat_file(path) == b'{"a": 1}'
    assert fs.ls(f"{gcs_bucket}/state/key", detail=False) == [path]
    fs.rm(path)
    assert not fs.exists(path)


def test_gcs_env_points_at_emulator(gcs_endpoint: str, gcs_bucket: str) -> None:
    # No endpoint_url: STORAGE_EMULATOR_HOST set by the fixture leads to the emulator.
    fs = fsspec.filesystem("gcs", token="anon", skip_instance_cache=True)
    fs.pipe_file(f"{gcs_bucket}/x", b"1")
    assert fs.cat_file(f"{gcs_bucket}/x") == b"1"


def test_gcs_create_if_absent(gcs_endpoint: str, gcs_bucket: str) -> None:
    fs = _gcs(gcs_endpoint)
    path = f"{gcs_bucket}/latest"
    out = fs.pipe_file(path, b"first", mode="create")  # ifGenerationMatch=0
    assert out["generation"] == fs.info(path)["generation"]  # the upload returns the object
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"second", mode="create")
    assert fs.cat_file(path) == b"first"


def test_gcs_compare_and_swap(gcs_endpoint: str, gcs_bucket: str) -> None:
    fs = _gcs(gcs_endpoint)
    path = f"{gcs_bucket}/latest"
    gen_v1 = fs.pipe_file(path, b"v1")["generation"]
    assert fs.info(path)["generation"] == gen_v1  # a str of digits
    gen_v2 = gcs_put_if_generation_match(fs, path, b"v2", gen_v1)["generation"]
    assert gen_v2 != gen_v1
    with pytest.raises(FileExistsError):  # gcsfs maps every 412 to FileExistsError
        gcs_put_if_generation_match(fs, path, b"v3", gen_v1)
    assert fs.cat_file(path) == b"v2"
    with pytest.raises(FileExistsError):  # generation 0 means "must not exist"
        gcs_put_if_generation_match(fs, path, b"v3", 0)
    # Binary payloads survive the multipart framing.
    blob = bytes(range(256)) + b"\n--==0==--"
    gcs_put_if_generation_match(fs, f"{gcs_bucket}/blob", blob, 0)
    assert fs.cat_file(f"{gcs_bucket}/blob") == blob


def test_gcs_missing_bucket(gcs_endpoint: str) -> None:
    fs = _gcs(gcs_endpoint)
    with pytest.raises(FileNotFoundError):
        fs.pipe_file("no-such-bucket/k", b"x")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("no-such-bucket/k")
    assert not fs.exists("no-such-bucket/k")
    # (An unreachable GCS endpoint is not tested: gcsfs retries connection errors 6 times with
    # exponential backoff, ~33 s, before raising aiohttp.ClientConnectorError.)


# ---------------------------------------------------------------------------------- subprocess


def test_helpers_work_in_a_subprocess(
    s3_endpoint: str, s3_bucket: str, gcs_endpoint: str, gcs_bucket: str
) -> None:
    _s3(s3_endpoint).pipe_file(f"{s3_bucket}/k", b"from-s3")
    _gcs(gcs_endpoint).pipe_file(f"{gcs_bucket}/k", b"from-gcs")
    script = textwrap.dedent(
        f"""
        import fsspec
        from storage_servers import gcs_storage_options, s3_storage_options
        s3 = fsspec.filesystem("s3", **s3_storage_options({s3_endpoint!r}))
        gcs = fsspec.filesystem("gcs", **gcs_storage_options({gcs_endpoint!r}))
        print(s3.cat_file({s3_bucket!r} + "/k").decode())
        print(gcs.cat_file({gcs_bucket!r} + "/k").decode())
        """
    )
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    # Start from a clean environment plus the helpers' variables, as a spawned worker would.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": tests_dir}
    env |= s3_env(s3_endpoint) | gcs_env(gcs_endpoint)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["from-s3", "from-gcs"]
    assert time.monotonic() - started < 30  # no gRPC probe or metadata-server stall
