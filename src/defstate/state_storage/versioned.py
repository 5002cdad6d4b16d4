"""``VERSIONED_STATE_STORAGE``: uuid-versioned state in any fsspec location.

Layout under the storage URL (a compatibility promise, documented in the README)::

    <url>/<encoded key>/versions/<uuid>/state            a file state's bytes
    <url>/<encoded key>/versions/<uuid>/state.tar.gz     a directory state, archived
    <url>/<encoded key>/versions/<uuid>/manifest.json    key, version, created_at, size, sha256, ...
    <url>/<encoded key>/latest.json                      the pointer: a copy of the latest manifest

A refresh uploads the state bytes, then the manifest, each in one atomic call, and only then
overwrites the key's pointer. One pointer object per key means refreshes of different keys
never race. A reader that was given a pin reads ``versions/<uuid>/`` directly and never looks
at a pointer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import attrs

from defstate.errors import (
    AlreadyRefreshingError,
    ProjectConfigError,
    SourceLocation,
    StateIntegrityError,
    StateStorageError,
    is_transient,
)
from defstate.redaction import redact_url
from defstate.state_storage.archive import pack_state, sha256_bytes, verify
from defstate.state_storage.base import StorageProject, WorkdirWrite, require_written
from defstate.state_storage.cache import DownloadCache, default_cache_dir
from defstate.state_storage.keys import encode_key
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion, utc_iso

T = TypeVar("T")
log = logging.getLogger("defstate.state_storage")

_MEMORY_LOCK = threading.Lock()
_TAKEOVER_SETTLE_SECONDS = 1.0  # memory:// has no conditional writes; one process shares it

POINTER_NAME = "latest.json"
LEASE_NAME = "lease.json"
RECORDS_DIRNAME = "records"
MANIFEST_NAME = "manifest.json"
FILE_STATE_NAME = "state"
DIRECTORY_STATE_NAME = "state.tar.gz"
LAYOUT_FORMAT = 1


def _check_version_id(key: str, version: str) -> None:
    """Versions are uuid4 strings; anything else (say ``../other``) never reaches a path."""
    try:
        valid = str(uuid.UUID(version)) == version
    except (ValueError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise StateStorageError(f"{version!r} is not a version of key {key!r} (a uuid4)")


def describe_error(exc: BaseException) -> str:
    """A one-line reason, never including credentials (storage options are never printed)."""
    if isinstance(exc, PermissionError):
        return f"access denied ({exc}); check the credentials in storage_options or the env"
    if isinstance(exc, FileNotFoundError):
        return f"not found ({exc})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@attrs.define
class VersionedStateWrite(WorkdirWrite):
    """A pending versioned refresh: the component writes into a local temporary folder."""

    storage: VersionedStateStorage
    key: str
    metadata: Mapping[str, str]
    workdir: Path
    committed: bool = False

    def commit(self) -> StateVersion:
        require_written(self.path, self.key)
        version = self.storage.publish(self.key, self.path, self.metadata)
        self.committed = True
        self.abort()  # the bytes are uploaded: the local working copy can go
        return version


@attrs.define
class VersionedStateStorage:
    """State versions in an fsspec location (``s3://``, ``gs://``, ``file://``, ``memory://``)."""

    url: str
    storage_options: Mapping[str, Any] = attrs.field(factory=dict)
    attempts: int = 4
    _fs: Any = attrs.field(default=None, init=False)
    _root: str = attrs.field(default="", init=False)
    _root_checked: bool = attrs.field(default=False, init=False)
    _fs_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _cache: DownloadCache | None = attrs.field(default=None, init=False)

    management_type: ClassVar[ManagementType] = ManagementType.VERSIONED_STATE_STORAGE
    refreshed_at_initialization: ClassVar[bool] = False
    remote: ClassVar[bool] = True  # file:// too: the class cannot know, and loads only gain
    shared: ClassVar[bool] = True
    reads_old_versions: ClassVar[bool] = True
    keeps_versions: ClassVar[bool] = True
    uses_leases: ClassVar[bool] = True

    @classmethod
    def for_project(cls, project: StorageProject, component: str) -> Self:
        settings = project.state_storage
        if settings is None:
            raise ProjectConfigError(
                f"{component} uses management_type {cls.management_type.value} but no state "
                "storage is configured: set url in [tool.defstate.state_storage] "
                "(or DEFSTATE_STATE_STORAGE_URL)",
                SourceLocation(project.pyproject),
            )
        return cls(settings.url, dict(settings.storage_options))

    def describe(self) -> str:
        return redact_url(self.url)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        if self._fs is None:
            with self._fs_lock:  # loads resolve keys from several threads
                self._open()
        return self._fs

    def _open(self) -> None:
        if self._fs is None:
            import fsspec  # heavy: only when versioned storage is used

            if self.url.startswith(("gs://", "gcs://")):
                # gcsfs otherwise probes for zonal buckets over gRPC first, which stalls
                # each call for a minute where that endpoint is unreachable.
                os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

            options = {"use_listings_cache": False, "skip_instance_cache": True}
            options.update(self.storage_options)
            try:
                fs, root = fsspec.core.url_to_fs(self.url, **options)
            except (ImportError, ValueError) as exc:
                raise StateStorageError(
                    f"cannot open state storage {self.describe()}: {describe_error(exc)}"
                ) from None
            self._root = root.rstrip("/")
            self._fs = fs  # last: other threads check only _fs before using _root

    @property
    def is_local(self) -> bool:
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    @property
    def is_object_store(self) -> bool:
        return not self.is_local and "memory" not in str(self.fs.protocol)

    @property
    def cache(self) -> DownloadCache:
        if self._cache is None:
            self._cache = DownloadCache.for_storage(default_cache_dir(), self.url)
        return self._cache

    def key_path(self, key: str) -> str:
        self.fs  # noqa: B018  (sets _root)
        return "/".join((self._root, *encode_key(key).parts))

    def version_path(self, key: str, version: str) -> str:
        _check_version_id(key, version)
        return f"{self.key_path(key)}/versions/{version}"

    def state_object_path(self, key: str, version: str, *, is_directory: bool) -> str:
        name = DIRECTORY_STATE_NAME if is_directory else FILE_STATE_NAME
        return f"{self.version_path(key, version)}/{name}"

    def _call(self, what: str, key: str, func: Callable[[], T]) -> T:
        """Run one storage call with retries on transient errors; wrap the final error."""
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
        )

        try:
            for attempt in Retrying(
                retry=retry_if_exception(is_transient),
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                reraise=True,
            ):
                with attempt:
                    return func()
        except StateStorageError:
            raise
        except Exception as exc:
            raise StateStorageError(
                f"cannot {what} state for key {key!r} at {self.describe()}: {describe_error(exc)}",
                transient=is_transient(exc),
            ) from exc
        raise AssertionError("unreachable")

    def _put(self, path: str, data: bytes) -> None:
        """Write one object whole: readers see all of it or none of it."""
        if self.is_local:
            # a local write streams into the final name; write aside and rename instead
            os.replace(self._write_aside(path, data), path)
        else:
            self.fs.pipe_file(path, data)

    def _write_aside(self, path: str, data: bytes) -> str:
        """Write ``data`` to a temporary sibling of local ``path``; returns its name."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{os.getpid()}-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        return tmp

    def _check_root(self, key: str) -> None:
        """A missing bucket is a configuration error, not "no state yet"."""
        if self._root_checked or not self.is_object_store:
            return
        bucket = self._root.split("/", 1)[0]
        if not self._call("read", key, lambda: self.fs.exists(bucket)):
            raise StateStorageError(
                f"cannot read state for key {key!r} at {self.describe()}: "
                f"bucket {bucket!r} does not exist"
            )
        self._root_checked = True

    def _read_optional(self, key: str, path: str) -> bytes | None:
        """An object's bytes, or ``None`` when it does not exist (with retries, wrapped)."""

        def read() -> bytes | None:
            try:
                data: bytes = self.fs.cat_file(path)
                return data
            except FileNotFoundError:
                return None

        return self._call("read", key, read)

    # -- StateStorage -----------------------------------------------------------------------

    def latest(self, key: str) -> StateVersion | None:
        pointer = f"{self.key_path(key)}/{POINTER_NAME}"
        data = self._read_optional(key, pointer)
        if data is None:
            self._check_root(key)
            return None
        return self._parse_manifest(key, data, pointer)

    def _parse_manifest(self, key: str, data: bytes, where: str) -> StateVersion:
        try:
            manifest = json.loads(data)
            return StateVersion(
                key=key,
                version=str(manifest["version"]),
                created_at=str(manifest["created_at"]),
                management_type=self.management_type,
                size=int(manifest["size"]),
                sha256=str(manifest["sha256"]),
                is_directory=bool(manifest["is_directory"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateIntegrityError(
                f"state for key {key!r} at {self.describe()}: {where} is not a valid manifest "
                f"({exc})"
            ) from None

    def has_local_copy(self, version: StateVersion) -> bool:
        return self.cache.contains(version)

    def state_path(self, version: StateVersion) -> Path:
        _check_version_id(version.key, version.version)  # before it names a cache folder
        what = f"state for key {version.key!r} version {version.version} at {self.describe()}"
        cache = self.cache
        cached = cache.get(version, what)
        if cached is not None:
            return cached
        source = self.state_object_path(
            version.key, version.version, is_directory=version.is_directory
        )
        data = self._call("download", version.key, lambda: self.fs.cat_file(source))
        verify(data, size=version.size, sha256=version.sha256, what=what)
        return cache.put(version, data)

    def begin_write(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> VersionedStateWrite:
        workdir = Path(tempfile.mkdtemp(prefix="defstate-refresh-"))
        return VersionedStateWrite(self, key, dict(metadata or {}), workdir)

    # -- publication ------------------------------------------------------------------------

    def publish(self, key: str, path: Path, metadata: Mapping[str, str]) -> StateVersion:
        """Upload ``path`` as a new version of ``key``, then move the key's pointer to it."""
        data, is_directory = pack_state(path)
        from defstate import __version__

        version = StateVersion(
            key=key,
            version=str(uuid.uuid4()),
            created_at=utc_iso(),
            management_type=self.management_type,
            size=len(data),
            sha256=sha256_bytes(data),
            is_directory=is_directory,
        )
        manifest = {
            "format": LAYOUT_FORMAT,
            "key": key,
            "version": version.version,
            "created_at": version.created_at,
            "size": version.size,
            "sha256": version.sha256,
            "is_directory": is_directory,
            "defstate_version": __version__,
            "host": socket.gethostname(),
            **{k: v for k, v in metadata.items() if k not in ("key", "version")},
        }
        manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
        base = self.version_path(key, version.version)
        state = self.state_object_path(key, version.version, is_directory=is_directory)
        self._call("write", key, lambda: self._put(state, data))
        self._call("write", key, lambda: self._put(f"{base}/{MANIFEST_NAME}", manifest_bytes))
        self._move_pointer(key, manifest_bytes)
        what = f"state for key {key!r} version {version.version} at {self.describe()}"
        try:  # the writer's next load needs no download; the publication is done either way
            self.cache.put(version, data)
        except Exception as exc:
            log.warning("published %s but could not cache it locally: %s", what, exc)
        return version

    def _move_pointer(self, key: str, manifest_bytes: bytes) -> None:
        pointer = f"{self.key_path(key)}/{POINTER_NAME}"
        self._call("write", key, lambda: self._put(pointer, manifest_bytes))

    def version(self, key: str, version: str) -> StateVersion:
        """Stored version ``version`` of ``key``, from its manifest."""
        return self._read_manifest(key, version)[0]

    def _read_manifest(self, key: str, version: str) -> tuple[StateVersion, bytes]:
        manifest = f"{self.version_path(key, version)}/{MANIFEST_NAME}"
        data = self._read_optional(key, manifest)
        if data is None:
            raise StateStorageError(f"no version {version} of key {key!r} at {self.describe()}")
        return self._parse_manifest(key, data, manifest), data

    def rollback(self, key: str, version: str) -> StateVersion:
        """Make stored ``version`` the key's latest again (it must be complete)."""
        target, manifest = self._read_manifest(key, version)
        state = self.state_object_path(key, version, is_directory=target.is_directory)
        if not self._call("read", key, lambda: self.fs.exists(state)):
            raise StateStorageError(
                f"version {version} of key {key!r} at {self.describe()} has no state bytes"
            )
        self._move_pointer(key, manifest)  # the pointer is a copy of the manifest
        return target

    def delete_version(self, key: str, version: str) -> None:
        """Remove a stored version (never the latest: callers check)."""
        path = self.version_path(key, version)

        def delete() -> None:  # rm(recursive) would glob-expand the "[...]" of keys
            if self.is_local:
                import shutil

                shutil.rmtree(path)
                return
            for name in self.fs.find(path):
                self.fs.rm_file(name)

        self._call("delete", key, delete)

    def versions(self, key: str) -> list[StateVersion]:
        """Every stored version of ``key`` with a manifest, oldest first."""
        root = f"{self.key_path(key)}/versions"

        def read_all() -> list[StateVersion]:
            try:
                folders = self.fs.ls(root, detail=False)
            except FileNotFoundError:
                return []
            found = []
            for folder in folders:
                try:
                    data = self.fs.cat_file(f"{folder.rstrip('/')}/{MANIFEST_NAME}")
                except FileNotFoundError:
                    continue  # an upload that never completed
                found.append(self._parse_manifest(key, data, folder))
            return sorted(found, key=lambda v: v.created_at)

        return self._call("list", key, read_all)

    # -- refresh records --------------------------------------------------------------------

    def write_record(self, record: RefreshRecord) -> None:
        path = f"{self.key_path(record.key)}/{RECORDS_DIRNAME}/{record.file_name}"
        self._call("write", record.key, lambda: self._put(path, record.to_bytes()))

    def records(self, key: str, limit: int = 50) -> list[RefreshRecord]:
        folder = f"{self.key_path(key)}/{RECORDS_DIRNAME}"

        def read() -> list[RefreshRecord]:
            try:
                names = sorted(self.fs.ls(folder, detail=False), reverse=True)
            except FileNotFoundError:
                return []
            names = [n for n in names if n.endswith(".json") and "/.tmp-" not in n][:limit]
            found = []
            for name in names:
                try:
                    found.append(RefreshRecord.from_json_dict(json.loads(self.fs.cat_file(name))))
                except (FileNotFoundError, ValueError, TypeError):
                    continue
            return found

        return self._call("list", key, read)

    # -- single-flight lease ----------------------------------------------------------------

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` only if it does not exist; ``False`` if it does."""
        fs = self.fs
        if self.is_local:
            tmp = self._write_aside(path, data)
            try:
                os.link(tmp, path)  # atomic create-if-absent, with content
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if not self.is_object_store:
            with _MEMORY_LOCK:
                if fs.exists(path):
                    return False
                fs.pipe_file(path, data)
                return True
        try:
            fs.pipe_file(path, data, mode="create")  # If-None-Match / generation 0
            return True
        except FileExistsError:
            return False

    def _read_lease(self, path: str) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = json.loads(self.fs.cat_file(path))
            return lease
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # being written: treat as held

    @contextlib.contextmanager
    def refresh_lock(self, key: str, *, wait: bool, ttl: float = 60.0) -> Iterator[bool]:
        """A lease object ``<key>/lease.json`` with an expiry, renewed while held.

        A crashed holder stops renewing, so its lease expires after ``ttl`` seconds and the
        next refresh takes it over.
        """
        path = f"{self.key_path(key)}/{LEASE_NAME}"
        holder = uuid.uuid4().hex

        def lease_bytes() -> bytes:
            return json.dumps(
                {
                    "holder": holder,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "expires_at": time.time() + ttl,
                }
            ).encode()

        waited = False
        took_over = False
        while True:
            if self._call("write", key, lambda: self._create_exclusive(path, lease_bytes())):
                if not took_over:
                    break
                # Two processes can both see the same expired lease; the later one may delete
                # the earlier one's fresh lease. Settle, then check the lease is still ours.
                time.sleep(_TAKEOVER_SETTLE_SECONDS)
                mine = self._call("read", key, lambda: self._read_lease(path))
                if mine is not None and mine.get("holder") == holder:
                    break
                took_over = False
                continue
            current = self._call("read", key, lambda: self._read_lease(path))
            if current and float(current.get("expires_at", 0)) < time.time():
                # Expired: its holder died. Remove it only if it is still that same lease.
                again = self._call("read", key, lambda: self._read_lease(path))
                if again == current:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(path)
                    took_over = True
                continue
            if not wait:
                raise AlreadyRefreshingError(
                    f"state key {key!r} is already being refreshed (lease {path} held by "
                    f"{(current or {}).get('host', '?')})"
                )
            waited = True
            time.sleep(0.2)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    current = self._read_lease(path)
                    if current is not None and current.get("holder") != holder:
                        return  # taken over after we stalled: nothing to renew
                    self._put(path, lease_bytes())
                except Exception as exc:  # a blip must not end renewal: try again next cycle
                    log.warning("could not renew the refresh lease of %s: %s", key, exc)

        renewer = threading.Thread(target=renew, name="defstate-lease", daemon=True)
        renewer.start()
        try:
            yield waited
        finally:
            stop.set()
            renewer.join()
            current = self._read_lease(path)
            if current is not None and current.get("holder") == holder:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
