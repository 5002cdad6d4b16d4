"""``LEGACY_CODE_SERVER_SNAPSHOTS``: state that travels inside the pin.

Refreshed at every initialization load; the bytes (base64, a directory archived) are stored
in the load's ``StateVersion.snapshot``, so a reconstruction from the pin needs no storage and
never calls ``write_state_to_path``. Materialised into a private temporary folder to be read.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self

import attrs

from defstate.errors import AlreadyRefreshingError, StateStorageError
from defstate.state_storage.archive import pack_state, sha256_bytes, unpack_state, verify
from defstate.state_storage.atomic import folder_aside
from defstate.state_storage.base import (
    StorageProject,
    WorkdirWrite,
    make_workdir,
    require_written,
)
from defstate.state_storage.keys import encode_key
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import CODE_SERVER_VERSION, StateVersion, utc_iso

DEFAULT_SNAPSHOT_LIMIT = 10 * 1024 * 1024


@attrs.define
class SnapshotStateWrite(WorkdirWrite):
    storage: SnapshotStateStorage
    key: str
    workdir: Path
    committed: bool = False

    def commit(self) -> StateVersion:
        require_written(self.path, self.key)
        data, is_directory = pack_state(self.path)
        limit = self.storage.max_bytes
        if len(data) > limit:
            raise StateStorageError(
                f"code-server snapshot for key {self.key!r} is {len(data)} bytes, over the "
                f"{limit}-byte limit; use VERSIONED_STATE_STORAGE or LOCAL_FILESYSTEM for large "
                "state (or raise [tool.defstate] snapshot_max_bytes)"
            )
        version = StateVersion(
            key=self.key,
            version=CODE_SERVER_VERSION,
            created_at=utc_iso(),
            management_type=ManagementType.LEGACY_CODE_SERVER_SNAPSHOTS,
            size=len(data),
            sha256=sha256_bytes(data),
            is_directory=is_directory,
            snapshot=base64.b64encode(data).decode("ascii"),
        )
        self.storage.snapshots[self.key] = version
        self.committed = True
        self.abort()  # the bytes live in the pin now: the working copy can go
        return version


@attrs.define
class SnapshotStateStorage:
    """Snapshots held in memory for one load; see the module docstring."""

    max_bytes: int = DEFAULT_SNAPSHOT_LIMIT
    snapshots: dict[str, StateVersion] = attrs.field(factory=dict)
    _records: list[RefreshRecord] = attrs.field(factory=list, init=False)
    _locks: dict[str, threading.Lock] = attrs.field(factory=dict, init=False)
    _tmp: Path | None = attrs.field(default=None, init=False)

    management_type: ClassVar[ManagementType] = ManagementType.LEGACY_CODE_SERVER_SNAPSHOTS
    refreshed_at_initialization: ClassVar[bool] = True  # the state lives only in the pin
    remote: ClassVar[bool] = False
    shared: ClassVar[bool] = False
    reads_old_versions: ClassVar[bool] = True  # a pin carries its snapshot
    keeps_versions: ClassVar[bool] = False
    uses_leases: ClassVar[bool] = False  # one process: a threading lock per key

    @classmethod
    def for_project(cls, project: StorageProject, component: str) -> Self:
        return cls(max_bytes=project.snapshot_max_bytes)

    def write_record(self, record: RefreshRecord) -> None:
        self._records.append(record)  # snapshots live in one process; so do their records

    def records_many(self, keys: Sequence[str], limit: int = 50) -> dict[str, list[RefreshRecord]]:
        return {}  # records are read where they are: one key after the other costs nothing

    def records(self, key: str, limit: int = 50) -> list[RefreshRecord]:
        return [r for r in reversed(self._records) if r.key == key][:limit]

    @contextlib.contextmanager
    def refresh_lock(self, key: str, *, wait: bool, ttl: float) -> Iterator[bool]:
        lock = self._locks.setdefault(key, threading.Lock())
        waited = not lock.acquire(blocking=False)
        if waited:
            if not wait:
                raise AlreadyRefreshingError(f"state key {key!r} is already being refreshed")
            lock.acquire()
        try:
            yield waited
        finally:
            lock.release()

    def describe(self) -> str:
        return "code-server snapshots (in the pin)"

    def latest_many(self, keys: Sequence[str]) -> Mapping[str, StateVersion | None]:
        return {key: self.snapshots.get(key) for key in keys}

    def latest(self, key: str) -> StateVersion | None:
        return self.snapshots.get(key)

    def stored_keys(self) -> list[str]:
        return sorted(self.snapshots)

    def has_local_copy(self, version: StateVersion) -> bool:
        return True  # the bytes are in the pin

    def state_path(self, version: StateVersion) -> Path:
        if version.snapshot is None:
            raise StateStorageError(f"the pin holds no snapshot bytes for key {version.key!r}")
        data = base64.b64decode(version.snapshot)
        verify(
            data,
            size=version.size,
            sha256=version.sha256,
            what=f"code-server snapshot for key {version.key!r}",
        )
        # one folder per key and content, written aside and renamed: never shared by two keys
        target = self._tmpdir() / f"{encode_key(version.key).as_posix().replace('/', '_')}"
        target = target / (version.sha256 or sha256_bytes(data))  # verified just above
        if not target.exists():
            with folder_aside(target) as tmp:  # another thread may make it first: same bytes
                unpack_state(data, tmp / "state", is_directory=version.is_directory)
        return target / "state"

    def begin_write(
        self, key: str, metadata: Mapping[str, str] | None = None
    ) -> SnapshotStateWrite:
        return SnapshotStateWrite(self, key, make_workdir("defstate-snap-"))

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="defstate-snapshots-"))
            atexit.register(shutil.rmtree, self._tmp, True)
        return self._tmp
