"""Exact, bounded operations on single objects of an fsspec store.

Everything versioned state storage does to a bucket or folder goes through an
:class:`ObjectStore`. Three rules hold for every call:

- **Paths are literal.** Only single-object calls on exact paths (``_cat_file``,
  ``_pipe_file``, ``_rm_file``, ``_info``) and prefix listings (``ls``/``find``) are used;
  nothing is glob-expanded, so keys like ``DbtProject[shop]`` or ``a*?{b}%`` are just names.
- **Writes are whole.** An object is visible complete or not at all (local files are written
  aside and renamed; object stores commit a PUT or a finished multipart upload atomically).
- **Conditional writes.** ``write_if`` replaces an object only if it still has the token
  (S3 ETag, GCS generation, a local file's inode and mtime) that was read; ``None`` means
  "only if absent". Pointers and leases are compare-and-swapped with it.

Which implementation serves a URL is a capability of the store classes
(:data:`STORE_CLASSES`, keyed by fsspec protocol); callers never branch on protocol names.
Retries and deadlines are in :mod:`defstate.state_storage.calls`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs

from defstate.errors import StateStorageError
from defstate.state_storage.atomic import TMP_PREFIX, written_aside

log = logging.getLogger("defstate.state_storage")

_COPY_BLOCK = 1 << 20
_TMP_PREFIX = TMP_PREFIX
# Uploads and downloads stream in parts of this size, a few at a time: peak memory stays
# bounded whatever the state's size.
STREAM_CHUNK = 8 * 1024 * 1024
STREAM_CONCURRENCY = 2


@attrs.frozen
class ObjectInfo:
    """One stored object: exact path, size, modification time by the *storage's* clock, and
    the token a conditional write must present to replace it."""

    path: str
    size: int
    mtime: float
    token: str | None = None


@attrs.frozen
class Timeouts:
    """Client-level timeouts (seconds) applied to the storage's HTTP client."""

    connect: float = 5.0
    read: float = 20.0


def _merge(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` over ``defaults``, merging nested tables (the user's values win)."""
    merged = dict(defaults)
    for name, value in options.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def _epoch(value: Any) -> float:
    """A storage timestamp (datetime, ISO string or number) as seconds since the epoch."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)


class ObjectStore:
    """A store reached through fsspec. Subclasses add what their backend can do."""

    protocols: ClassVar[tuple[str, ...]] = ()
    #: whether ``write_if`` is atomic across processes and machines
    atomic_conditional_writes: ClassVar[bool] = False
    #: whether the tokens ``list_objects`` returns change whenever an object's content does
    #: (S3 ETags, GCS generations, local inode+mtime+size, memory sha256), so one listing
    #: tells which of many objects changed since they were last read
    listing_tokens_track_content: ClassVar[bool] = False
    #: whether calls take a ``timeout`` (fsspec's async file systems do)
    bounded_calls: ClassVar[bool] = False
    #: whether the root's first part is a bucket that must exist (a missing one is an error)
    has_buckets: ClassVar[bool] = False
    #: whether paths are this machine's files (folders must be made, nothing is remote)
    local_files: ClassVar[bool] = False

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    # -- construction -------------------------------------------------------------------

    @classmethod
    def check_url(cls, url: str) -> None:
        """Raise ``StateStorageError`` for a URL this store cannot use as given."""

    @classmethod
    def client_options(cls, timeouts: Timeouts) -> dict[str, Any]:
        """fsspec options that put ``timeouts`` on the backend's client."""
        return {}

    def tune(self) -> None:
        """Adjust the file system after creation (e.g. turn off the client's own retries)."""

    def _kw(self, timeout: float | None) -> dict[str, Any]:
        return {"timeout": timeout} if self.bounded_calls and timeout else {}

    # -- reads ----------------------------------------------------------------------------

    def read(self, path: str, timeout: float | None = None) -> bytes | None:
        """The object's bytes, or ``None`` when it does not exist."""
        try:
            data: bytes = self.fs.cat_file(path, **self._kw(timeout))
            return data
        except FileNotFoundError:
            return None

    def digest(self, path: str, timeout: float | None = None) -> tuple[int, str] | None:
        """Size and sha256 of one object, read in ``STREAM_CHUNK`` ranges (never whole, and
        no file object whose read-ahead cache grows); ``None`` when it does not exist."""
        info = self.stat(path, timeout)
        if info is None:
            return None
        digest, size = hashlib.sha256(), 0
        for begin in range(0, info.size, STREAM_CHUNK):
            end = min(begin + STREAM_CHUNK, info.size)
            block = self.fs.cat_file(path, start=begin, end=end, **self._kw(timeout))
            digest.update(block)
            size += len(block)
        return size, digest.hexdigest()

    def stat(self, path: str, timeout: float | None = None) -> ObjectInfo | None:
        try:
            info = self.fs.info(path, **self._kw(timeout))
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        return self._object_info(path, info)

    def _object_info(self, path: str, info: Mapping[str, Any]) -> ObjectInfo:
        raise NotImplementedError

    def read_with_info(
        self, path: str, timeout: float | None = None
    ) -> tuple[bytes, ObjectInfo] | None:
        """Bytes and token of one object. The token is read first: if the object changes in
        between, the token is older than the bytes and a conditional write with it fails
        (never the reverse, which would let a stale read win)."""
        info = self.stat(path, timeout)
        if info is None:
            return None
        data = self.read(path, timeout)
        if data is None:
            return None
        return data, info

    def list_objects(self, prefix: str, timeout: float | None = None) -> list[ObjectInfo]:
        """Every object under ``prefix/`` (recursively), by exact prefix, never a glob."""
        try:
            found = self.fs.find(prefix, detail=True, **self._kw(timeout))
        except FileNotFoundError:
            return []
        return [
            self._object_info(name, info)
            for name, info in sorted(found.items())
            if info.get("type") != "directory"
        ]

    def list_names(self, prefix: str, timeout: float | None = None) -> list[str]:
        """The direct children of ``prefix`` (full paths)."""
        try:
            names = self.fs.ls(prefix, detail=False, **self._kw(timeout))
        except FileNotFoundError:
            return []
        return sorted(n.rstrip("/") for n in names)

    def list_folders(self, prefix: str, timeout: float | None = None) -> list[str]:
        """The names of the direct sub-folders of ``prefix``."""
        try:
            entries = self.fs.ls(prefix, detail=True, **self._kw(timeout))
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1]
            for e in entries
            if e.get("type") == "directory"
        )

    def now(self, probe: str, timeout: float | None = None) -> float:
        """The storage's clock: the modification time of an object written just now.

        Expiry of leases and pin records compares this with objects' modification times, so
        no two machines' wall clocks are ever compared.
        """
        self.write(probe, uuid.uuid4().hex.encode(), timeout)
        info = self.stat(probe, timeout)
        if info is None:
            raise StateStorageError(f"the clock probe {probe} vanished right after writing it")
        return info.mtime

    # -- writes ---------------------------------------------------------------------------

    def write(self, path: str, data: bytes, timeout: float | None = None) -> None:
        """Write one object whole: readers see all of it or none of it."""
        self.fs.pipe_file(path, data, **self._kw(timeout))

    def write_if(
        self, path: str, data: bytes, token: str | None, timeout: float | None = None
    ) -> str | None:
        """Write ``data`` only if the object still has ``token`` (``None``: only if it does
        not exist). Returns the new token, or ``None`` when someone else changed it first."""
        raise NotImplementedError

    def upload(self, local: Path, path: str, timeout: float | None = None) -> None:
        """Stream a local file into one object (chunked; visible only when complete)."""
        self.fs.put_file(str(local), path, **self._kw(timeout))

    def download(self, path: str, local: Path, timeout: float | None = None) -> None:
        """Stream one object into a local file (which is removed on failure)."""
        try:
            self.fs.get_file(path, str(local), **self._kw(timeout))
        except BaseException:
            with contextlib.suppress(OSError):
                local.unlink()
            raise

    def delete(self, path: str, timeout: float | None = None) -> bool:
        """Delete one object; ``False`` when it was already gone (never an error)."""
        try:
            self.fs.rm_file(path, **self._kw(timeout))
            return True
        except FileNotFoundError:
            return False

    def remove_empty_folder(self, path: str) -> None:
        """Object stores have no folders; local ones do."""


class LocalObjectStore(ObjectStore):
    """``file://`` (and plain paths): POSIX renames and ``flock``."""

    protocols = ("file", "local")
    atomic_conditional_writes = True
    listing_tokens_track_content = True
    local_files = True

    @classmethod
    def check_url(cls, url: str) -> None:
        parts = urlsplit(url)
        path = url if not parts.scheme else parts.path
        if parts.scheme and parts.netloc not in ("", "localhost"):
            path = ""  # file://relative/x: "relative" would be read as a host name
        if not os.path.isabs(path):
            raise StateStorageError(
                f"state storage URL {url!r} has no absolute path: write file:///absolute/path "
                "(three slashes), or use {{ project_root }} in the URL"
            )

    def _object_info(self, path: str, info: Mapping[str, Any]) -> ObjectInfo:
        stat = os.stat(path)
        return ObjectInfo(path, stat.st_size, stat.st_mtime, self._token(stat))

    @staticmethod
    def _token(stat: os.stat_result) -> str:
        return f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"

    def stat(self, path: str, timeout: float | None = None) -> ObjectInfo | None:
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(path):
            return None
        return ObjectInfo(path, stat.st_size, stat.st_mtime, self._token(stat))

    def read(self, path: str, timeout: float | None = None) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list_objects(self, prefix: str, timeout: float | None = None) -> list[ObjectInfo]:
        found = []
        for folder, _dirs, files in os.walk(prefix):
            for name in files:
                if name.startswith(_TMP_PREFIX) or name.endswith(".lock"):
                    continue
                info = self.stat(f"{folder}/{name}")
                if info is not None:
                    found.append(info)
        return sorted(found, key=lambda i: i.path)

    def list_names(self, prefix: str, timeout: float | None = None) -> list[str]:
        try:
            names = os.listdir(prefix)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            f"{prefix}/{n}" for n in names if not n.startswith(_TMP_PREFIX) and n != ".clock"
        )

    @staticmethod
    def _aside(path: str) -> contextlib.AbstractContextManager[str]:
        """A temporary sibling of ``path``, renamed onto it on success and removed on any
        failure (a full disk leaves no partial file behind)."""
        return written_aside(path)

    def write(self, path: str, data: bytes, timeout: float | None = None) -> None:
        with self._aside(path) as tmp, open(tmp, "wb") as handle:
            handle.write(data)

    @contextlib.contextmanager
    def _locked(self, path: str) -> Iterator[None]:
        import fcntl

        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def write_if(
        self, path: str, data: bytes, token: str | None, timeout: float | None = None
    ) -> str | None:
        with self._locked(path):
            current = self.stat(path)
            if (current.token if current else None) != token:
                return None
            self.write(path, data)
            written = self.stat(path)
            return written.token if written else None

    def upload(self, local: Path, path: str, timeout: float | None = None) -> None:
        with self._aside(path) as tmp:
            shutil.copyfile(local, tmp)

    def download(self, path: str, local: Path, timeout: float | None = None) -> None:
        try:
            shutil.copyfile(path, local)
        except BaseException:
            with contextlib.suppress(OSError):
                local.unlink()
            raise

    def delete(self, path: str, timeout: float | None = None) -> bool:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def remove_empty_folder(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(path)


_MEMORY_LOCK = threading.Lock()


class MemoryObjectStore(ObjectStore):
    """``memory://``: one store per process, so a process-wide lock makes writes conditional."""

    protocols = ("memory",)
    atomic_conditional_writes = True
    listing_tokens_track_content = True

    def _object_info(self, path: str, info: Mapping[str, Any]) -> ObjectInfo:
        data = self.fs.cat_file(path)
        token = hashlib.sha256(data).hexdigest()
        return ObjectInfo(path, len(data), _epoch(info.get("created", 0)), token)

    def now(self, probe: str, timeout: float | None = None) -> float:
        return time.time()  # one process: one clock

    def write_if(
        self, path: str, data: bytes, token: str | None, timeout: float | None = None
    ) -> str | None:
        with _MEMORY_LOCK:
            current = self.stat(path)
            if (current.token if current else None) != token:
                return None
            self.fs.pipe_file(path, data)
            return hashlib.sha256(data).hexdigest()

    def upload(self, local: Path, path: str, timeout: float | None = None) -> None:
        self.fs.pipe_file(path, local.read_bytes())  # memory:// holds it whole anyway


class S3ObjectStore(ObjectStore):
    """``s3://`` through s3fs: ETags with ``If-Match`` / ``If-None-Match``."""

    protocols = ("s3", "s3a")
    atomic_conditional_writes = True
    listing_tokens_track_content = True
    bounded_calls = True
    has_buckets = True

    @classmethod
    def client_options(cls, timeouts: Timeouts) -> dict[str, Any]:
        # botocore's own retries would multiply ours (a refused connection took 21-43 s)
        return {
            "config_kwargs": {
                "connect_timeout": timeouts.connect,
                "read_timeout": timeouts.read,
                "retries": {"max_attempts": 1, "mode": "standard"},
            },
            "max_concurrency": STREAM_CONCURRENCY,
        }

    def tune(self) -> None:
        self.fs.retries = 1  # s3fs's retry loop: defstate retries with its own deadline

    def read(self, path: str, timeout: float | None = None) -> bytes | None:
        # One GET: with max_concurrency above 1, s3fs first sends a HEAD for the size (to
        # split large objects into ranges), doubling the requests of every small read.
        try:
            data: bytes = self.fs.cat_file(path, max_concurrency=1, **self._kw(timeout))
            return data
        except FileNotFoundError:
            return None

    def _object_info(self, path: str, info: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            path,
            int(info.get("size") or 0),
            _epoch(info["LastModified"]),
            str(info.get("ETag")),
        )

    def write_if(
        self, path: str, data: bytes, token: str | None, timeout: float | None = None
    ) -> str | None:
        condition = {"mode": "create"} if token is None else {"IfMatch": token}
        try:
            out = self.fs.pipe_file(path, data, **condition, **self._kw(timeout))
        except FileExistsError:
            return None
        except FileNotFoundError:
            if token is None:
                raise  # no bucket
            return None  # If-Match on an object deleted meanwhile
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
        etag = out.get("ETag") if isinstance(out, Mapping) else None
        if etag is None:
            info = self.stat(path, timeout)
            etag = info.token if info else None
        return str(etag)

    def upload(self, local: Path, path: str, timeout: float | None = None) -> None:
        self.fs.put_file(str(local), path, chunksize=STREAM_CHUNK, **self._kw(timeout))

    def download(self, path: str, local: Path, timeout: float | None = None) -> None:
        try:
            self.fs.get_file(path, str(local), chunksize=STREAM_CHUNK, **self._kw(timeout))
        except BaseException:
            with contextlib.suppress(OSError):
                local.unlink()
            raise


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, Mapping):
        return response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")
    return "precondition" in str(exc).lower() or "412" in str(exc)


class GcsObjectStore(ObjectStore):
    """``gs://`` through gcsfs: generations with ``ifGenerationMatch``."""

    protocols = ("gs", "gcs")
    atomic_conditional_writes = True
    listing_tokens_track_content = True
    bounded_calls = True
    has_buckets = True

    @classmethod
    def client_options(cls, timeouts: Timeouts) -> dict[str, Any]:
        # gcsfs probes for zonal buckets over gRPC first, which stalls each call for a
        # minute where that endpoint is unreachable; it reads this at import time.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        return {"requests_timeout": timeouts.connect + timeouts.read}

    def _object_info(self, path: str, info: Mapping[str, Any]) -> ObjectInfo:
        stamp = info.get("updated") or info.get("mtime") or info.get("timeCreated") or 0
        return ObjectInfo(
            path, int(info.get("size") or 0), _epoch(stamp), str(info.get("generation"))
        )

    def write_if(
        self, path: str, data: bytes, token: str | None, timeout: float | None = None
    ) -> str | None:
        # A multipart upload with ifGenerationMatch (0: must not exist). gcsfs offers only
        # mode="create"; the emulator ignores preconditions on media and resumable uploads.
        bucket, name, _ = self.fs.split_path(path)
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                json.dumps({"name": name}).encode(),
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        try:
            out = self.fs.call(
                "POST",
                f"{self.fs._location}/upload/storage/v1/b/{{}}/o",
                bucket,
                uploadType="multipart",
                ifGenerationMatch=token or "0",
                headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
                data=body,
                json_out=True,
                **self._kw(timeout),
            )
        except FileExistsError:
            return None
        except FileNotFoundError:
            if token is None:
                raise  # no bucket
            return None
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
        return str(out["generation"])

    def upload(self, local: Path, path: str, timeout: float | None = None) -> None:
        self.fs.put_file(str(local), path, chunksize=STREAM_CHUNK, **self._kw(timeout))


class GenericObjectStore(ObjectStore):
    """Any other fsspec store: conditional writes are check-then-write (not atomic across
    processes). Leases and pointer moves work, but two machines racing can both win."""

    def _object_info(self, path: str, info: Mapping[str, Any]) -> ObjectInfo:
        stamp = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
        token = info.get("ETag") or info.get("generation") or f"{stamp}:{info.get('size')}"
        return ObjectInfo(path, int(info.get("size") or 0), _epoch(stamp), str(token))

    def write_if(
        self, path: str, data: bytes, token: str | None, timeout: float | None = None
    ) -> str | None:
        with _MEMORY_LOCK:
            current = self.stat(path, timeout)
            if (current.token if current else None) != token:
                return None
            self.write(path, data, timeout)
            written = self.stat(path, timeout)
            return written.token if written else None


STORE_CLASSES: tuple[type[ObjectStore], ...] = (
    LocalObjectStore,
    MemoryObjectStore,
    S3ObjectStore,
    GcsObjectStore,
)


def store_class_for(url: str) -> type[ObjectStore]:
    """The store class whose protocols include the URL's scheme (plain paths are local)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else "file"
    for cls in STORE_CLASSES:
        if scheme in cls.protocols:
            return cls
    return GenericObjectStore


def open_store(
    url: str, storage_options: Mapping[str, Any], timeouts: Timeouts
) -> tuple[ObjectStore, str]:
    """The store for ``url`` and the root path inside it (``StateStorageError`` if it
    cannot be opened)."""
    import fsspec  # heavy: only when versioned storage is used

    cls = store_class_for(url)
    cls.check_url(url)
    options = _merge(
        {
            "use_listings_cache": False,
            "skip_instance_cache": True,
            **cls.client_options(timeouts),
        },
        storage_options,
    )
    fs, root = fsspec.core.url_to_fs(url, **options)
    store = cls(fs)
    store.tune()
    return store, root.rstrip("/")
