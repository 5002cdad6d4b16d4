"""``VERSIONED_STATE_STORAGE``: uuid-versioned state in any fsspec location.

Layout under the storage URL (a compatibility promise, documented in the README)::

    <url>/<encoded key>/versions/<uuid>/state            a file state's bytes
    <url>/<encoded key>/versions/<uuid>/state.tar.gz     a directory state, archived
    <url>/<encoded key>/versions/<uuid>/manifest.json    key, version, created_at, size, sha256, ...
    <url>/_pointers.d/<encoded key>.json                 the pointer: the latest manifest + previous
    <url>/_pins.d/<holder>.json                          live pin records of one process (layout 2)
    <url>/<encoded key>/pins/<holder>.json               per-key live pin records and claims
    <url>/<encoded key>/lease.json                       the single-flight refresh lease
    <url>/<encoded key>/records/<time>-<id>.json         refresh records
    <url>/_layout.json                                   {"layout": 2}

That is layout 2; a storage without ``_layout.json`` is layout 1, whose pointers are
``<url>/<encoded key>/latest.json`` and whose processes keep per-key pin records only, and
is still read and written as such until
``defstate state migrate-layout`` moves it (see :mod:`defstate.state_storage.pointer_layout`).

The pointer protocol (docs/reliability.md has the proof sketch) keeps one invariant: **the
pointer never names a version whose manifest or bytes are missing**.

- A publication (or rollback) first writes a *claim* (a pin record naming its version), then
  the bytes, then the manifest, then moves the pointer with a conditional write, then drops
  the claim.
- gc deletes a version's manifest first, then re-reads the pointer and the pin records (the
  key's own and the holder records of ``_pins.d/``, see :mod:`defstate.state_storage.pins`); if
  either names the version (or that re-read fails) it puts the manifest back and keeps it,
  otherwise it deletes the bytes. Objects already deleted (by a concurrent gc) are not an error.

A publication whose bytes equal the latest version's (same sha256) publishes nothing and
does not move the pointer (``unchanged``). Everything that touches the pointer is in this
module, so a change of pointer layout stays local to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Self, TypeVar

import attrs

from defstate.errors import (
    ProjectConfigError,
    SourceLocation,
    StateIntegrityError,
    StateStorageError,
    StateVersionMissingError,
)
from defstate.redaction import redact_url
from defstate.state_storage.archive import pack_directory_to_file, sha256_file, verify_file
from defstate.state_storage.base import (
    StorageProject,
    WorkdirWrite,
    make_workdir,
    remove_path,
    require_written,
)
from defstate.state_storage.cache import (
    CachedEntries,
    DownloadCache,
    default_cache_dir,
    fallback_cache_dir,
)
from defstate.state_storage.calls import CallPolicy, call_with_deadline, describe_error
from defstate.state_storage.keys import encode_key, find_keys
from defstate.state_storage.leases import hold_lease
from defstate.state_storage.management import ManagementType
from defstate.state_storage.objects import ObjectInfo, ObjectStore, Timeouts, open_store
from defstate.state_storage.pins import (
    HolderRecord,
    LiveHolders,
    ReadHolderRecord,
    holder_record_bytes,
    is_abandoned,
    is_live,
    record_identity,
)
from defstate.state_storage.pointer_layout import (
    CURRENT_LAYOUT,
    LAYOUT_MARKER_NAME,
    LEGACY_POINTER_NAME,
    POINTERS_DIRNAME,
    CachedPointer,
    PointerCache,
    is_tombstone,
    key_of_pointer,
    layout_marker,
    parse_layout,
    pointer_name,
    tombstone,
    version_fields,
)
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion, utc_iso

T = TypeVar("T")
log = logging.getLogger("defstate.state_storage")

__all__ = [
    "LayoutMigration",
    "Publication",
    "StoredVersion",
    "VersionedStateStorage",
    "VersionedStateWrite",
    "describe_error",
    "manifest_document",
    "redact_url",
]

LEASE_NAME = "lease.json"
PINS_DIRNAME = "pins"
HOLDER_PINS_DIRNAME = "_pins.d"
HOLDER_CLOCK_NAME = "_pins.clock"
_HOLDER_RECORD_NAME = re.compile(r"[0-9a-f]{32}\.json")
CLOCK_NAME = ".clock"
RECORDS_DIRNAME = "records"
VERSIONS_DIRNAME = "versions"
MANIFEST_NAME = "manifest.json"
FILE_STATE_NAME = "state"
DIRECTORY_STATE_NAME = "state.tar.gz"
LAYOUT_FORMAT = 1
_POINTER_RACE_LIMIT = 100


def _check_version_id(key: str, version: str) -> None:
    """Versions are uuid4 strings; anything else (say ``../other``) never reaches a path."""
    try:
        valid = str(uuid.UUID(version)) == version
    except (ValueError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise StateStorageError(f"{version!r} is not a version of key {key!r} (a uuid4)")


@attrs.define
class VersionedStateWrite(WorkdirWrite):
    """A pending versioned refresh: the component writes into a local temporary folder."""

    storage: VersionedStateStorage
    key: str
    metadata: Mapping[str, str]
    workdir: Path
    committed: bool = False
    unchanged: bool = False

    def commit(self) -> StateVersion:
        require_written(self.path, self.key)
        published = self.storage.publish(self.key, self.path, self.metadata, self.workdir)
        self.unchanged = published.unchanged
        self.committed = True
        self.abort()  # the bytes are uploaded: the local working copy can go
        return published.version


@attrs.frozen
class Publication:
    """What :meth:`VersionedStateStorage.publish` did: the key's latest version now, and
    whether it is the one that was already latest (same bytes: nothing was published)."""

    version: StateVersion
    unchanged: bool = False


@attrs.frozen
class _Pointer:
    """Where a key's pointer is, its bytes (``None``: no pointer yet) and, when asked for,
    its object info (the token a conditional write must present)."""

    path: str
    data: bytes | None = None
    info: ObjectInfo | None = None

    @property
    def token(self) -> str | None:
        return self.info.token if self.info is not None else None


@attrs.frozen
class LayoutMigration:
    """What :meth:`VersionedStateStorage.migrate_layout` did."""

    storage: str
    layout_before: int
    layout: int
    moved: tuple[str, ...]
    unchanged: tuple[str, ...]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "storage": self.storage,
            "layout_before": self.layout_before,
            "layout": self.layout,
            "moved": list(self.moved),
            "unchanged": list(self.unchanged),
        }


@attrs.frozen
class StoredVersion:
    """A version folder found in storage: its manifest (``None`` when missing or damaged,
    ``problem`` says which), its objects, and when it was published by the storage's clock."""

    version: str
    manifest: StateVersion | None
    objects: tuple[ObjectInfo, ...]
    problem: str | None = None

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def published_at(self) -> float:
        """The manifest's modification time (the last object a publication writes)."""
        for info in self.objects:
            if info.path.endswith(f"/{MANIFEST_NAME}"):
                return info.mtime
        return max((o.mtime for o in self.objects), default=0.0)

    @property
    def sort_key(self) -> tuple[str, float]:
        created = self.manifest.created_at if self.manifest else ""
        return (created, self.published_at)


@attrs.define
class VersionedStateStorage:
    """State versions in an fsspec location (``s3://``, ``gs://``, ``file://``, ``memory://``)."""

    url: str
    storage_options: Mapping[str, Any] = attrs.field(factory=dict)
    policy: CallPolicy = attrs.field(factory=CallPolicy)
    _store: ObjectStore | None = attrs.field(default=None, init=False)
    _root: str = attrs.field(default="", init=False)
    _root_checked: bool = attrs.field(default=False, init=False)
    _open_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _cache: DownloadCache | None = attrs.field(default=None, init=False)
    _layout: int | None = attrs.field(default=None, init=False)
    _layout_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    #: keys this instance wrote objects for (a new storage holding only these is empty)
    _touched: set[str] = attrs.field(factory=set, init=False)

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
        policy = CallPolicy(**settings.call_settings)  # type: ignore[arg-type]
        return cls(settings.url, dict(settings.storage_options), policy)

    def describe(self) -> str:
        return redact_url(self.url)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            with self._open_lock:  # loads resolve keys from several threads
                if self._store is None:
                    self._open()
        assert self._store is not None
        return self._store

    @property
    def fs(self) -> Any:
        """The underlying fsspec file system (for tests and tools)."""
        return self.store.fs

    def _open(self) -> None:
        timeouts = Timeouts(self.policy.connect_timeout, self.policy.read_timeout)
        try:
            store, root = open_store(self.url, self.storage_options, timeouts)
        except StateStorageError as exc:
            raise StateStorageError(f"cannot open state storage: {exc}") from None
        except (ImportError, ValueError, TypeError) as exc:
            raise StateStorageError(
                f"cannot open state storage {self.describe()}: {describe_error(exc)}"
            ) from None
        self._root = root
        self._store = store  # last: other threads check only _store before using _root

    @property
    def is_local(self) -> bool:
        """Whether the store is this machine's files (``file://``)."""
        return self.store.local_files

    @property
    def is_object_store(self) -> bool:
        """Whether the store is an object store with buckets (``s3://``, ``gs://``)."""
        return self.store.has_buckets

    @property
    def cache(self) -> DownloadCache:
        if self._cache is None:
            self._cache = DownloadCache.for_storage(default_cache_dir(), self.url)
        return self._cache

    def _scratch(self) -> Path:
        """A scratch folder in the download cache, or in a temporary cache when the
        configured one cannot be written (a load must not fail for that)."""
        try:
            return self.cache.scratch_dir()
        except OSError as exc:
            fallback = DownloadCache.for_storage(fallback_cache_dir(), self.url)
            log.warning(
                "the download cache %s cannot be written (%s); using %s for this process",
                self.cache.root,
                exc.strerror or exc,
                fallback.root,
            )
            self._cache = fallback
            return fallback.scratch_dir()

    def key_path(self, key: str) -> str:
        self.store  # noqa: B018  (sets _root)
        return "/".join((self._root, *encode_key(key).parts))

    def version_path(self, key: str, version: str) -> str:
        _check_version_id(key, version)
        return f"{self.key_path(key)}/{VERSIONS_DIRNAME}/{version}"

    def state_object_path(self, key: str, version: str, *, is_directory: bool) -> str:
        name = DIRECTORY_STATE_NAME if is_directory else FILE_STATE_NAME
        return f"{self.version_path(key, version)}/{name}"

    def _path(self, key: str, name: str) -> str:
        return f"{self.key_path(key)}/{name}"

    def _call(
        self,
        what: str,
        key: str,
        func: Callable[[float | None], T],
        transfer_bytes: int | None = None,
    ) -> T:
        """One storage operation with retries and a deadline; errors name key and URL."""
        return call_with_deadline(
            self.policy,
            f"{what} state for key {key!r}",
            self.describe(),
            func,
            transfer_bytes=transfer_bytes,
        )

    def _lease_call(self, what: str, func: Callable[[float | None], T]) -> T:
        return call_with_deadline(self.policy, what, self.describe(), func)

    def _check_root(self, key: str) -> None:
        """A missing bucket is a configuration error, not "no state yet"."""
        if self._root_checked or not self.store.has_buckets:
            return
        bucket = self._root.split("/", 1)[0]
        fs = self.store.fs
        if not self._call("read", key, lambda t: fs.exists(bucket, **self.store._kw(t))):
            raise StateStorageError(
                f"cannot read state for key {key!r} at {self.describe()}: "
                f"bucket {bucket!r} does not exist"
            )
        self._root_checked = True

    # -- reading ----------------------------------------------------------------------------

    def stored_keys(self) -> list[str]:
        store = self.store  # sets _root

        def folders(relative: PurePosixPath) -> list[str]:
            prefix = "/".join((self._root, *relative.parts))
            return call_with_deadline(
                self.policy,
                "list the state keys",
                self.describe(),
                lambda t: store.list_folders(prefix, t),
            )

        return find_keys(folders)

    def latest(self, key: str) -> StateVersion | None:
        return self._version_at(key, self._locate_pointer(key))

    def _version_at(self, key: str, found: _Pointer) -> StateVersion | None:
        """The version the located pointer ``found`` names (``None``: the key has none)."""
        if found.data is None:
            self._check_root(key)
            return None
        return self._parse_manifest(key, found.data, found.path)

    def latest_many(self, keys: Sequence[str]) -> dict[str, StateVersion | None]:
        """The latest versions of ``keys`` from one listing of the pointers (layout 2): a
        pointer whose listing token matches the pointer cache is not read again, the others
        are. Keys missing from the answer (every key on layout 1, a damaged pointer) are read
        with :meth:`latest`, which reports their problem."""
        if not keys or self.layout(key=keys[0]) < CURRENT_LAYOUT:
            return {}
        first = keys[0]
        prefix = f"{self._root}/{POINTERS_DIRNAME}"
        listing = self._call("list", first, lambda t: self.store.list_objects(prefix, t))
        listed = {key_of_pointer(info.path[len(prefix) + 1 :]): info for info in listing}
        tokens_track = self.store.listing_tokens_track_content
        cache = PointerCache(self.cache.root / ".pointers.json")
        cached = cache.load() if tokens_track else {}
        read: dict[str, CachedPointer] = {}
        found: dict[str, StateVersion | None] = {}
        unread = []
        for key in keys:
            info = listed.get(key)
            entry = cached.get(pointer_name(key)) if info is not None else None
            if info is None or entry is None or entry.token != info.token:
                unread.append(key)
                continue
            try:
                found[key] = self._version_from_doc(key, entry.fields, info.path)
            except StateStorageError:
                unread.append(key)  # a damaged cache entry: read the pointer
        for key, got in zip(unread, self._each(self._read_listed(listed), unread), strict=True):
            if isinstance(got, tuple):
                found[key] = got[0]
                if got[1] is not None:
                    read[pointer_name(key)] = got[1]
            elif got is None:
                found[key] = None
        if tokens_track:
            self._update_pointer_cache(cache, cached, listed, read)
        return found

    @staticmethod
    def _update_pointer_cache(
        cache: PointerCache,
        cached: Mapping[str, CachedPointer],
        listed: Mapping[str | None, ObjectInfo],
        read: Mapping[str, CachedPointer],
    ) -> None:
        """Keep what is still current (other projects' keys too: a storage can be shared),
        add what was just read, drop pointers that are gone; write only if that changed."""
        tokens = {pointer_name(k): i.token for k, i in listed.items() if k is not None}
        updated = {n: e for n, e in cached.items() if tokens.get(n) == e.token}
        updated.update(read)
        if updated != cached:
            cache.save(updated)

    def _read_listed(
        self, listed: Mapping[str | None, ObjectInfo]
    ) -> Callable[[str], tuple[StateVersion, CachedPointer | None] | Exception | None]:
        """Read one key's pointer for :meth:`latest_many`: ``(version, cache entry)``,
        ``None`` for a key without state, or the exception (the key is then left out)."""

        def read(key: str) -> tuple[StateVersion, CachedPointer | None] | Exception | None:
            try:
                info = listed.get(key)
                if info is None:  # no layout-2 pointer: a layout-1 one, or no state at all
                    found = self._locate_pointer(key, listed_missing=True)
                    version = self._version_at(key, found)
                    return None if version is None else (version, None)
                data = self._call("read", key, lambda t: self.store.read(info.path, t))
                if data is None:  # deleted since the listing: latest() decides
                    raise StateStorageError("pointer vanished")
                doc = json.loads(data)
                version = self._version_from_doc(key, doc, info.path)
                return version, CachedPointer(str(info.token), version_fields(doc))
            except Exception as exc:
                return exc

        return read

    def _each(self, func: Callable[[str], T], keys: Sequence[str]) -> list[T]:
        """``func`` over ``keys``, concurrently when there are several (each is one round
        trip to the storage)."""
        if len(keys) <= 1:
            return [func(key) for key in keys]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
            return list(pool.map(func, keys))

    # -- where a key's pointer is -----------------------------------------------------------

    def layout(self, *, fresh: bool = False, key: str | None = None) -> int:
        """The storage's layout (``_layout.json``; none: 1). Read once per instance, or again
        with ``fresh`` while it is 1 (a layout never goes back, so 2 is never read again).
        ``key``: the key whose operation needs it (its errors name it)."""
        if self._layout is not None and (self._layout >= CURRENT_LAYOUT or not fresh):
            return self._layout
        marker = self._marker_path()
        what = "read the layout marker" + (f" for key {key!r}" if key is not None else "")
        data = self._lease_call(what, lambda t: self.store.read(marker, t))
        self._layout = parse_layout(data, f"{marker} at {self.describe()}")
        return self._layout

    def _marker_path(self) -> str:
        self.store  # noqa: B018  (sets _root)
        return f"{self._root}/{LAYOUT_MARKER_NAME}"

    def pointer_path(self, key: str) -> str:
        """The layout-2 pointer of ``key`` (where it lives once the storage is layout 2)."""
        self.store  # noqa: B018  (sets _root)
        return f"{self._root}/{POINTERS_DIRNAME}/{pointer_name(key)}"

    def _locate_pointer(
        self,
        key: str,
        *,
        with_info: bool = False,
        fresh: bool = False,
        listed_missing: bool = False,
    ) -> _Pointer:
        """The object that is ``key``'s pointer now, with its bytes (``None`` when the key
        has no pointer yet: then ``path`` is where a new one goes).

        One rule for readers and writers. Layout 2: the layout-2 pointer if it exists, else
        a layout-1 one that is not a tombstone (a key that a process which had not yet seen
        the marker created). Layout 1: the layout-1 pointer unless it is missing or a
        tombstone, else the layout-2 one (a key a migration already moved). A pointer that
        exists never goes back to missing, and a tombstone is written only after its
        layout-2 copy, so reading the two one after the other answers as of one moment.
        ``listed_missing``: a listing of ``_pointers.d/`` (on layout 2) has just shown no
        layout-2 pointer for ``key``; it stands for the first read.
        """
        legacy, current = self._path(key, LEGACY_POINTER_NAME), self.pointer_path(key)
        if self.layout(fresh=fresh, key=key) >= CURRENT_LAYOUT:
            if listed_missing:
                found = _Pointer(current)
            else:
                found = self._read_pointer(key, current, with_info)
            if found.data is not None:
                return found
            old = self._read_pointer(key, legacy, with_info)
            if old.data is not None and not is_tombstone(old.data):
                return old
            if old.data is None:
                return found
            return self._read_pointer(key, current, with_info)  # moved meanwhile
        old = self._read_pointer(key, legacy, with_info)
        if old.data is not None and not is_tombstone(old.data):
            return old
        found = self._read_pointer(key, current, with_info)
        return found if found.data is not None or old.data is not None else old

    def _read_pointer(self, key: str, path: str, with_info: bool) -> _Pointer:
        if not with_info:
            return _Pointer(path, self._call("read", key, lambda t: self.store.read(path, t)))
        read = self._call("read", key, lambda t: self.store.read_with_info(path, t))
        return _Pointer(path) if read is None else _Pointer(path, read[0], read[1])

    def _parse_manifest(self, key: str, data: bytes, where: str) -> StateVersion:
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise StateIntegrityError(
                f"state for key {key!r} at {self.describe()}: {where} is not a valid manifest "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return self._version_from_doc(key, manifest, where)

    def _version_from_doc(self, key: str, manifest: Any, where: str) -> StateVersion:
        try:
            version = StateVersion(
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
                f"({type(exc).__name__}: {exc})"
            ) from None
        _check_version_id(key, version.version)
        return version

    def has_local_copy(self, version: StateVersion) -> bool:
        return self.cache.contains(version)

    def state_path(self, version: StateVersion) -> Path:
        _check_version_id(version.key, version.version)  # before it names a cache folder
        what = f"state for key {version.key!r} version {version.version} at {self.describe()}"
        cached = self.cache.get(version, what)
        if cached is not None:
            return cached
        source = self.state_object_path(
            version.key, version.version, is_directory=version.is_directory
        )
        scratch = self._scratch()
        target = scratch / "download"

        def download(timeout: float | None) -> None:
            try:
                self.store.download(source, target, timeout)
            except FileNotFoundError:
                raise StateVersionMissingError(
                    f"{what}: its bytes are gone (collected by `defstate state gc`, or deleted)"
                ) from None

        try:
            self._call("download", version.key, download, transfer_bytes=version.size or 0)
            verify_file(target, size=version.size, sha256=version.sha256, what=what)
            return self.cache.install_download(version, target)
        finally:
            remove_path(scratch)

    def begin_write(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> VersionedStateWrite:
        workdir = make_workdir("defstate-refresh-")
        return VersionedStateWrite(self, key, dict(metadata or {}), workdir)

    # -- publication ------------------------------------------------------------------------

    def publish(
        self,
        key: str,
        path: Path,
        metadata: Mapping[str, str],
        scratch: Path | None = None,
    ) -> Publication:
        """Upload ``path`` (a file, or a directory archived on disk) as a new version of
        ``key`` and move the key's pointer to it, streaming: the state is never held in
        memory. Same bytes as the latest version: nothing is published (``unchanged``)."""
        is_directory = path.is_dir()
        packed = path
        if is_directory:
            import tempfile

            packed = Path(tempfile.mkdtemp(dir=scratch)) / DIRECTORY_STATE_NAME
            pack_directory_to_file(path, packed)
        size, sha256 = packed.stat().st_size, sha256_file(packed)
        latest = self.latest(key)
        if latest is not None and (latest.sha256, latest.size, latest.is_directory) == (
            sha256,
            size,
            is_directory,
        ):
            if is_directory:
                remove_path(packed.parent)
            return Publication(latest, unchanged=True)
        version = StateVersion(
            key=key,
            version=str(uuid.uuid4()),
            created_at=utc_iso(),
            management_type=self.management_type,
            size=size,
            sha256=sha256,
            is_directory=is_directory,
        )
        try:
            self._upload_version(version, packed, metadata)
            try:  # the writer's next load needs no download; the publication is done anyway
                self.cache.install_download(version, packed)
            except Exception as exc:
                log.warning(
                    "published state for key %r version %s at %s but could not cache it "
                    "locally: %s",
                    key,
                    version.version,
                    self.describe(),
                    exc,
                )
        finally:
            if is_directory:
                remove_path(packed.parent)
        return Publication(version)

    def _upload_version(
        self, version: StateVersion, packed: Path, metadata: Mapping[str, str]
    ) -> None:
        """Claim, bytes, manifest, pointer, unclaim (see the module docstring)."""
        key = version.key
        manifest = manifest_document(version, metadata)
        base = self.version_path(key, version.version)
        state = self.state_object_path(key, version.version, is_directory=version.is_directory)
        manifest_path = f"{base}/{MANIFEST_NAME}"
        with self.claim(key, version.version, "publish"):
            try:
                self._call(
                    "upload",
                    key,
                    lambda t: self.store.upload(packed, state, t),
                    transfer_bytes=version.size or 0,
                )
                data = json.dumps(manifest, indent=1, sort_keys=True).encode()
                self._call("write", key, lambda t: self.store.write(manifest_path, data, t))
            except BaseException:
                # Never pointed at: remove what was uploaded (best effort; gc also would).
                for leftover in (manifest_path, state):
                    with contextlib.suppress(Exception):
                        self.store.delete(leftover)
                self.store.remove_empty_folder(base)
                raise
            self._move_pointer(key, manifest)

    def _move_pointer(self, key: str, manifest: Mapping[str, Any]) -> None:
        """Compare-and-swap the pointer to ``manifest`` (retried while others move it)."""
        for _ in range(_POINTER_RACE_LIMIT):
            current = self._locate_pointer(key, with_info=True, fresh=True)
            path, previous = current.path, None
            if current.data is None and path != self.pointer_path(key):
                if self._adopt_current_layout():  # the first pointer of a new storage
                    path = self.pointer_path(key)
            else:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    doc = json.loads(current.data or b"null")
                    previous = doc.get("version")
                    if previous == manifest["version"]:
                        previous = doc.get("previous")  # the same version again
            data = json.dumps({**manifest, "previous": previous}, indent=1, sort_keys=True)
            written = self._write_pointer(key, path, data.encode(), current.token)
            if written is not None:
                return
        raise StateStorageError(
            f"cannot move the latest pointer of key {key!r} at {self.describe()}: it kept "
            f"changing ({_POINTER_RACE_LIMIT} concurrent moves)"
        )

    def _write_pointer(self, key: str, pointer: str, data: bytes, token: str | None) -> str | None:
        return self._call("write", key, lambda t: self.store.write_if(pointer, data, token, t))

    def _adopt_current_layout(self) -> bool:
        """Make a new storage layout 2: when its root holds nothing but what this instance is
        publishing, write the marker (only if absent). Whether the storage is layout 2 now."""
        with self._layout_lock:
            # the caller has just read the marker: only another thread's adoption is news
            if self.layout() >= CURRENT_LAYOUT:
                return True
            ours = {encode_key(key).parts[0] for key in list(self._touched)}
            names = self._lease_call(
                "list the storage root", lambda t: self.store.list_names(self._root, t)
            )
            others = [
                name
                for name in (n.rsplit("/", 1)[-1] for n in names)
                if name not in ours and "." not in name  # "." never in a key's folder name
            ]
            if others:
                return False  # a layout-1 storage: `state migrate-layout` moves it
            return self._write_marker() >= CURRENT_LAYOUT

    def _write_marker(self) -> int:
        """Write the layout marker unless one exists; the layout after (read again only
        when another process wrote a marker first)."""
        marker = self._marker_path()
        written = self._lease_call(
            "write the layout marker",
            lambda t: self.store.write_if(marker, layout_marker(), None, t),
        )
        if written is not None:
            self._layout = CURRENT_LAYOUT
        return self.layout(fresh=True)

    def pointer_info(self, key: str) -> tuple[str | None, str | None, float] | None:
        """``(latest, previous, moved_at)`` from the pointer (``moved_at`` by the storage's
        clock), or ``None`` without a pointer."""
        current = self._locate_pointer(key, with_info=True)
        if current.data is None or current.info is None:
            return None
        try:
            doc = json.loads(current.data)
            latest, previous = doc.get("version"), doc.get("previous")
        except (ValueError, AttributeError) as exc:
            raise StateIntegrityError(
                f"state for key {key!r} at {self.describe()}: {current.path} is not a valid "
                f"pointer ({exc})"
            ) from None
        return (
            latest if isinstance(latest, str) else None,
            previous if isinstance(previous, str) else None,
            current.info.mtime,
        )

    def version(self, key: str, version: str) -> StateVersion:
        """Stored version ``version`` of ``key``, from its manifest."""
        return self._read_manifest(key, version)[0]

    def _read_manifest(self, key: str, version: str) -> tuple[StateVersion, bytes]:
        manifest = f"{self.version_path(key, version)}/{MANIFEST_NAME}"
        data = self._call("read", key, lambda t: self.store.read(manifest, t))
        if data is None:
            raise StateStorageError(f"no version {version} of key {key!r} at {self.describe()}")
        return self._parse_manifest(key, data, manifest), data

    def rollback(self, key: str, version: str) -> StateVersion:
        """Make stored ``version`` the key's latest again (it must be complete)."""
        with self.claim(key, version, "rollback"):  # gc keeps it from here on
            target, data = self._read_manifest(key, version)
            state = self.state_object_path(key, version, is_directory=target.is_directory)
            if self._call("read", key, lambda t: self.store.stat(state, t)) is None:
                raise StateStorageError(
                    f"version {version} of key {key!r} at {self.describe()} has no state bytes"
                )
            self._move_pointer(key, json.loads(data))
        return target

    # -- listing and deleting versions ------------------------------------------------------

    def inventory(self, key: str) -> list[StoredVersion]:
        """Every version folder of ``key`` (complete, incomplete and damaged), oldest first.

        One listing of the key's ``versions/`` prefix, then one read per manifest.
        """
        prefix = f"{self.key_path(key)}/{VERSIONS_DIRNAME}"
        objects = self._call("list", key, lambda t: self.store.list_objects(prefix, t))
        folders: dict[str, list[ObjectInfo]] = {}
        for info in objects:
            relative = info.path[len(prefix) :].strip("/").split("/")
            if len(relative) >= 2:
                folders.setdefault(relative[0], []).append(info)
        found = []
        for name, infos in folders.items():
            manifest, problem = None, None
            if not any(i.path.endswith(f"/{MANIFEST_NAME}") for i in infos):
                problem = "incomplete: no manifest (an upload that never finished)"
            else:
                try:
                    _check_version_id(key, name)
                    manifest = self.version(key, name)
                except StateStorageError as exc:
                    problem = str(exc)
            found.append(StoredVersion(name, manifest, tuple(infos), problem))
        return sorted(found, key=lambda v: v.sort_key)

    def stored_digest(self, version: StateVersion) -> tuple[int, str] | None:
        """Size and sha256 of ``version``'s stored bytes, streamed (``state verify``);
        ``None`` when the bytes are missing."""
        path = self.state_object_path(
            version.key, version.version, is_directory=version.is_directory
        )
        return self._call(
            "verify",
            version.key,
            lambda t: self.store.digest(path, t),
            transfer_bytes=version.size or 0,
        )

    def versions(self, key: str) -> list[StateVersion]:
        """Every complete stored version of ``key``, oldest first. A damaged manifest is
        reported (a warning naming it) and skipped, never fatal for the others."""
        result = []
        for stored in self.inventory(key):
            if stored.manifest is not None:
                result.append(stored.manifest)
            elif not (stored.problem or "").startswith("incomplete"):
                log.warning(
                    "skipping version %s of key %r: %s", stored.version, key, stored.problem
                )
        return result

    def storage_now(self, key: str) -> float:
        """The storage's clock (see :meth:`ObjectStore.now`)."""
        clock = self._path(key, CLOCK_NAME)
        return self._call("read", key, lambda t: self.store.now(clock, t))

    def delete_version(
        self, key: str, stored: StoredVersion | str, *, holders: LiveHolders | None = None
    ) -> bool:
        """Delete a stored version unless it is (or just became) in use; ``True`` if deleted.

        The manifest goes first; then the pointer and the live pins are read again (the
        holder records as a re-check of ``holders``, gc's read at its start: one listing,
        and reads of changed records only), and a version either names is restored and
        kept. Objects already gone are not an error.
        """
        if isinstance(stored, str):
            stored = next((v for v in self.inventory(key) if v.version == stored), None) or (
                StoredVersion(stored, None, ())
            )
        _check_version_id(key, stored.version)
        manifest_path = f"{self.version_path(key, stored.version)}/{MANIFEST_NAME}"
        manifest = self._call("read", key, lambda t: self.store.read(manifest_path, t))
        if manifest is not None:
            self._call("delete", key, lambda t: self.store.delete(manifest_path, t))
        try:
            pointer = self.pointer_info(key)
            in_use = pointer is not None and pointer[0] == stored.version
            again = self.live_holder_pins(holders) if holders is not None else None
            pinned = stored.version in self.live_pins(key, again)[0]
        except BaseException:  # perhaps in use: put back what was deleted, then report
            if manifest is not None:
                self._put_back(key, manifest_path, manifest)
            raise
        if in_use or pinned:
            if manifest is None and in_use:
                manifest = self._manifest_from_pointer(key, stored.version)
            if manifest is not None:  # put back (or repair, after a gc killed mid-way)
                self._call("write", key, lambda t: self.store.write(manifest_path, manifest, t))
            return False
        names = {o.path for o in stored.objects} - {manifest_path}
        base = self.version_path(key, stored.version)
        names |= {f"{base}/{FILE_STATE_NAME}", f"{base}/{DIRECTORY_STATE_NAME}"}
        for name in sorted(names):
            self._call("delete", key, lambda t, name=name: self.store.delete(name, t))  # type: ignore[misc]
        self.store.remove_empty_folder(base)
        return True

    def _put_back(self, key: str, manifest_path: str, manifest: bytes) -> None:
        """Restore a manifest gc deleted, as far as the storage lets it now (the error that
        interrupted the deletion is the one reported)."""
        with contextlib.suppress(Exception):
            self._call("write", key, lambda t: self.store.write(manifest_path, manifest, t))

    def _manifest_from_pointer(self, key: str, version: str) -> bytes | None:
        """The manifest the pointer carries for ``version`` (``None`` if it moved on)."""
        data = self._locate_pointer(key).data
        try:
            doc = json.loads(data or b"null")
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("version") != version:
            return None
        doc.pop("previous", None)
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    # -- live pins --------------------------------------------------------------------------

    def pin_records_per_holder(self) -> bool:
        """Layout 2 keeps one live pin record per holder (``_pins.d/<holder>.json``); layout
        1 one per key, which defstate before layout 2 reads. Asked again while the storage
        is layout 1, so a holder switches once a migration is done."""
        return self.layout(fresh=True) >= CURRENT_LAYOUT

    def _holder_path(self, holder: str) -> str:
        self.store  # noqa: B018  (sets _root)
        return f"{self._root}/{HOLDER_PINS_DIRNAME}/{uuid.UUID(holder).hex}.json"

    def write_holder_pins(
        self, holder: str, versions: Mapping[str, Sequence[str]], *, ttl: float, purpose: str
    ) -> None:
        """Write (or renew) ``holder``'s one record: ``versions`` per key are in use for the
        next ``ttl`` seconds (by the storage's clock). One write, whatever the keys."""
        for key, names in versions.items():
            for version in names:
                _check_version_id(key, version)
        path = self._holder_path(holder)
        data = holder_record_bytes(holder, versions, ttl=ttl, purpose=purpose)
        self._lease_call(
            f"write the live pin record of holder {holder}",
            lambda t: self.store.write(path, data, t),
        )

    def delete_holder_pins(self, holder: str) -> None:
        path = self._holder_path(holder)
        self._lease_call(
            f"delete the live pin record of holder {holder}",
            lambda t: self.store.delete(path, t),
        )

    def live_holder_pins(self, previous: LiveHolders | None = None) -> LiveHolders:
        """The holder records: one listing of ``_pins.d/``, then one read per record whose
        listing token differs from the one ``previous`` read it with. A record is live while
        its age (the storage's clock minus its modification time) is at most its ttl; with
        ``previous`` ages are judged against ``previous.now`` (never later than now, so a
        record can only look younger) and nothing is deleted."""
        self.store  # noqa: B018  (sets _root)
        prefix = f"{self._root}/{HOLDER_PINS_DIRNAME}"
        listing = [
            info
            for info in self._lease_call(
                "list the live pin records", lambda t: self.store.list_objects(prefix, t)
            )
            if _HOLDER_RECORD_NAME.fullmatch(info.path.rsplit("/", 1)[-1])
        ]
        now = previous.now if previous is not None else None
        if not listing:
            return LiveHolders(now=now)
        if now is None:
            clock = f"{self._root}/{HOLDER_CLOCK_NAME}"
            now = self._lease_call("read the storage's clock", lambda t: self.store.now(clock, t))
        known = previous.read if previous and self.store.listing_tokens_track_content else {}
        by_path = {info.path: info for info in listing}
        reads = self._each(
            lambda p: self._read_holder_record(by_path[p], known.get(p)), list(by_path)
        )
        live: dict[str, set[str]] = {}
        read: dict[str, ReadHolderRecord] = {}
        problems: list[str] = []
        for info, got in zip(by_path.values(), reads, strict=True):
            if isinstance(got, str):
                problems.append(got)
            elif got is not None:
                read[info.path] = got
                if is_live(now - info.mtime, got.record.ttl):
                    for key, names in got.record.versions.items():
                        live.setdefault(key, set()).update(names)
                elif previous is None and is_abandoned(now - info.mtime, got.record.ttl):
                    self._delete_expired(info.path)
        frozen = {key: frozenset(names) for key, names in live.items()}
        return LiveHolders(frozen, now, read, tuple(problems))

    def _read_holder_record(
        self, info: ObjectInfo, known: ReadHolderRecord | None
    ) -> ReadHolderRecord | str | None:
        """One holder record: as read before when its token is unchanged, else read now;
        ``None`` when it was removed meanwhile, a problem when it is damaged."""
        if known is not None and info.token is not None and known.token == info.token:
            return known
        data = self._lease_call("read a live pin record", lambda t: self.store.read(info.path, t))
        if data is None:
            return None
        try:
            return ReadHolderRecord(info.token, HolderRecord.from_bytes(data))
        except ValueError as exc:
            return f"live pin record {info.path} is damaged ({exc}): ignored"

    def _delete_expired(self, path: str) -> None:
        with contextlib.suppress(StateStorageError):
            self._lease_call(
                "delete an expired live pin record", lambda t: self.store.delete(path, t)
            )

    def write_pin(
        self, key: str, holder: str, versions: Sequence[str], *, ttl: float, purpose: str
    ) -> None:
        """Write (or renew) the per-key pin record ``holder`` of ``key``: these versions are
        in use for the next ``ttl`` seconds (by the storage's clock)."""
        for version in versions:
            _check_version_id(key, version)
        path = f"{self.key_path(key)}/{PINS_DIRNAME}/{uuid.UUID(holder).hex}.json"
        self._touched.add(key)
        record = {**record_identity(holder, ttl=ttl, purpose=purpose), "versions": list(versions)}
        data = json.dumps(record, sort_keys=True).encode()
        self._call("write", key, lambda t: self.store.write(path, data, t))

    def delete_pin(self, key: str, holder: str) -> None:
        path = f"{self.key_path(key)}/{PINS_DIRNAME}/{uuid.UUID(holder).hex}.json"
        self._call("delete", key, lambda t: self.store.delete(path, t))

    def live_pins(self, key: str, holders: LiveHolders | None = None) -> tuple[set[str], list[str]]:
        """Versions of ``key`` that live (unexpired) pin records name: its per-key records
        and the holder records (``holders``, else read now, with their problems). Damaged
        records are reported and ignored, expired ones deleted."""
        live, problems = self._key_pins(key)
        if holders is None:
            holders = self.live_holder_pins()
            problems.extend(holders.problems)
        live.update(holders.versions_of(key))
        return live, problems

    def _key_pins(self, key: str) -> tuple[set[str], list[str]]:
        """The per-key pin records of ``key`` (``<key>/pins/``)."""
        prefix = f"{self.key_path(key)}/{PINS_DIRNAME}"
        records = self._call("list", key, lambda t: self.store.list_objects(prefix, t))
        if not records:
            return set(), []
        now = self.storage_now(key)
        live: set[str] = set()
        problems: list[str] = []
        for info in records:
            data = self._call("read", key, lambda t, p=info.path: self.store.read(p, t))  # type: ignore[misc]
            if data is None:
                continue  # removed meanwhile
            try:
                record = json.loads(data)
                ttl = float(record["ttl"])
                versions = [str(v) for v in record["versions"]]
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"pin record {info.path} is damaged ({exc}): ignored")
                continue
            if is_live(now - info.mtime, ttl):
                live.update(versions)
            elif is_abandoned(now - info.mtime, ttl):
                with contextlib.suppress(StateStorageError):
                    self._call("delete", key, lambda t, p=info.path: self.store.delete(p, t))  # type: ignore[misc]
        return live, problems

    @contextlib.contextmanager
    def claim(self, key: str, version: str, purpose: str) -> Iterator[None]:
        """A short-lived pin while a publication or rollback is moving the pointer."""
        holder = str(uuid.uuid4())
        ttl = 4 * self.policy.deadline + 60
        self.write_pin(key, holder, [version], ttl=ttl, purpose=purpose)
        try:
            yield
        finally:
            try:
                self.delete_pin(key, holder)
            except StateStorageError as exc:  # it expires on its own
                log.warning("could not remove the %s claim of key %r: %s", purpose, key, exc)

    # -- deleting a key, and moving keys to the current layout -----------------------------

    def forget_key(self, key: str, folder: str | None = None) -> None:
        """Delete everything stored for ``key``: its pointer, versions, records, pins."""
        self._call("delete", key, lambda t: self.store.delete(self.pointer_path(key), t))
        folder = folder or self.key_path(key)
        if self.store.local_files:
            shutil.rmtree(folder, ignore_errors=True)
            return
        # object by object on exact paths: s3fs/gcsfs glob-expand rm(recursive=True)
        for info in self._call("list", key, lambda t: self.store.list_objects(folder, t)):
            self._call("delete", key, lambda t, p=info.path: self.store.delete(p, t))  # type: ignore[misc]

    def migrate_layout(self) -> LayoutMigration:
        """Move every key's pointer to layout 2, then write the marker (idempotent).

        Safe while other processes (of a defstate that knows layout 2) load and publish: each
        key's pointer is copied, then the old one is replaced by a tombstone with a
        conditional write, and copied again if it moved meanwhile. A migration killed at any
        point leaves every key readable; run it again to finish. One migration runs at a time
        (a lease on the storage root).
        """
        before = self.layout(fresh=True)
        moved: list[str] = []
        unchanged: list[str] = []
        root = self._marker_path().rsplit("/", 1)[0]
        with hold_lease(
            self.store,
            f"{root}/_migration.lease.json",
            f"{root}/_migration.clock",
            "(layout migration)",
            wait=True,
            ttl=60.0,
            call=self._lease_call,
        ):
            marked = self.layout(fresh=True) >= CURRENT_LAYOUT
            for key in self.stored_keys():
                (moved if self._migrate_key(key, marked=marked) else unchanged).append(key)
            layout = self.layout() if marked else self._write_marker()
        return LayoutMigration(self.describe(), before, layout, tuple(moved), tuple(unchanged))

    def _migrate_key(self, key: str, *, marked: bool) -> bool:
        """Copy ``key``'s layout-1 pointer to layout 2 and tombstone it; whether it moved.

        Before the marker the layout-1 pointer is the key's pointer (see
        :meth:`_locate_pointer`), so the copy overwrites a layout-2 one an interrupted run
        left. After it, a layout-2 pointer that already exists wins: the old one is only
        tombstoned. A copy that someone else's write replaced is newer: it is kept.
        """
        legacy, current = self._path(key, LEGACY_POINTER_NAME), self.pointer_path(key)
        there = self._read_pointer(key, current, with_info=True)
        newer_exists = marked and there.data is not None
        token = there.token
        for _ in range(_POINTER_RACE_LIMIT):
            old = self._read_pointer(key, legacy, with_info=True)
            if old.data is None or is_tombstone(old.data):
                return False
            if not newer_exists:
                data = old.data
                written = self._write_pointer(key, current, data, token)
                if written is None:
                    if marked:
                        newer_exists = True  # a publication moved the new pointer: it wins
                    else:
                        token = self._read_pointer(key, current, with_info=True).token
                    continue
                token = written
            grave = tombstone(f"{POINTERS_DIRNAME}/{pointer_name(key)}")
            if self._write_pointer(key, legacy, grave, old.token) is not None:
                return True
        raise StateStorageError(
            f"cannot migrate the pointer of key {key!r} at {self.describe()}: it kept "
            f"changing ({_POINTER_RACE_LIMIT} concurrent moves)"
        )

    # -- refresh records --------------------------------------------------------------------

    def write_record(self, record: RefreshRecord) -> None:
        path = f"{self.key_path(record.key)}/{RECORDS_DIRNAME}/{record.file_name}"
        self._touched.add(record.key)
        self._call("write", record.key, lambda t: self.store.write(path, record.to_bytes(), t))

    def records(self, key: str, limit: int = 50) -> list[RefreshRecord]:
        folder = f"{self.key_path(key)}/{RECORDS_DIRNAME}"
        names = self._call("list", key, lambda t: self.store.list_names(folder, t))
        names = sorted((n for n in names if n.endswith(".json")), reverse=True)[:limit]
        found = []
        for name in names:
            data = self._call("read", key, lambda t, n=name: self.store.read(n, t))  # type: ignore[misc]
            if data is None:
                continue
            with contextlib.suppress(ValueError, TypeError):
                found.append(RefreshRecord.from_json_dict(json.loads(data)))
        return found

    def records_many(self, keys: Sequence[str], limit: int = 50) -> dict[str, list[RefreshRecord]]:
        """:meth:`records` of many keys: their folders listed concurrently, and only records
        not read before downloaded (a record never changes once written, so a cache beside
        the download cache keeps them by path). A key whose listing or a read of one of its
        records failed is left out: :meth:`records` reads it and reports the error."""
        cache = CachedEntries(self.cache.root / ".records.json", "records")
        known = {n: e for n, e in cache.load().items() if isinstance(e, dict)}
        listed = self._each(lambda key: self._newest_records(key, limit), keys)
        names = {n for found in listed if isinstance(found, list) for n in found}
        missing = sorted(names - set(known))
        docs = dict(known)
        failed = set()
        for name, got in zip(missing, self._each(self._read_record_doc, missing), strict=True):
            if isinstance(got, Exception):
                failed.add(name)
            elif got is not None:
                docs[name] = got
        answered: dict[str, list[RefreshRecord]] = {}
        for key, found in zip(keys, listed, strict=True):
            if isinstance(found, list) and not failed.intersection(found):
                answered[key] = [r for n in found if (r := _record_of(docs.get(n))) is not None]
        folders = {f"{self.key_path(key)}/{RECORDS_DIRNAME}" for key in answered}
        kept = {n: d for n, d in docs.items() if n in names or n.rsplit("/", 1)[0] not in folders}
        if kept != known:
            cache.save(kept)
        return answered

    def _newest_records(self, key: str, limit: int) -> list[str] | Exception:
        folder = f"{self.key_path(key)}/{RECORDS_DIRNAME}"
        try:
            names = self._call("list", key, lambda t: self.store.list_names(folder, t))
        except Exception as exc:
            return exc
        return sorted((n for n in names if n.endswith(".json")), reverse=True)[:limit]

    def _read_record_doc(self, name: str) -> dict[str, Any] | Exception | None:
        """One record's document (``None``: gone, or not a record)."""
        try:
            data = self._lease_call("read a refresh record", lambda t: self.store.read(name, t))
        except Exception as exc:
            return exc
        with contextlib.suppress(ValueError):
            doc = json.loads(data) if data is not None else None
            return doc if isinstance(doc, dict) and _record_of(doc) is not None else None
        return None

    # -- single-flight lease ----------------------------------------------------------------

    def refresh_lock(
        self, key: str, *, wait: bool, ttl: float = 60.0
    ) -> contextlib.AbstractContextManager[bool]:
        """The key's lease (see :mod:`defstate.state_storage.leases`); yields whether
        acquiring it waited. A holder that died blocks others for at most ``ttl`` seconds."""
        self._touched.add(key)
        return hold_lease(
            self.store,
            self._path(key, LEASE_NAME),
            self._path(key, CLOCK_NAME),
            key,
            wait=wait,
            ttl=ttl,
            call=self._lease_call,
        )


def manifest_document(
    version: StateVersion, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``manifest.json`` a publication stores for ``version`` (its pointer carries the
    same document plus ``previous``); ``metadata``: the caller's extra fields."""
    from defstate import __version__

    extra = {k: v for k, v in (metadata or {}).items() if k not in ("key", "version", "previous")}
    return {
        "format": LAYOUT_FORMAT,
        "key": version.key,
        "version": version.version,
        "created_at": version.created_at,
        "size": version.size,
        "sha256": version.sha256,
        "is_directory": version.is_directory,
        "defstate_version": __version__,
        "host": socket.gethostname(),
        **extra,
    }


def _record_of(doc: Mapping[str, Any] | None) -> RefreshRecord | None:
    """The refresh record ``doc`` describes (``None``: none, or not a valid record)."""
    if doc is None:
        return None
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return RefreshRecord.from_json_dict(dict(doc))
    return None
