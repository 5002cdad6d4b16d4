"""``LOCAL_FILESYSTEM`` state: ``<defs_dir>/.local_defs_state/<encoded key>/state``.

A refresh writes into a temporary sibling (``.tmp-<pid>-<random>``) in the key's folder and
then renames it into place, so readers see the old state or the new one, never a half-written
one; a refresh that raises or is killed leaves the previous ``state`` untouched. Directory
states are swapped with Linux's ``renameat2(RENAME_EXCHANGE)`` where available; elsewhere the
old state is first renamed to ``.old-<uuid>`` and readers fall back to it in the instant it
takes.

The key's folder is its single-flight lock (``flock``) and holds its refresh records. Under
the lock a refresh lists the folder at most once (temporaries of dead processes to remove,
records to keep 50 of), and not at all when the lock itself just created it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from stat import S_ISDIR
from typing import Any, ClassVar, Self

import attrs

from defstate.errors import AlreadyRefreshingError, StateStorageError
from defstate.state_storage.atomic import TMP_PREFIX, abandoned, temporary_name, write_atomic
from defstate.state_storage.base import (
    PendingWrite,
    StorageProject,
    path_size,
    remove_path,
    require_written,
)
from defstate.state_storage.keys import encode_key, find_keys
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import LOCAL_VERSION, StateVersion, utc_iso

LOCAL_STATE_DIRNAME = ".local_defs_state"
STATE_NAME = "state"
_OLD_PREFIX = ".old-"
_GITIGNORE = "# Written by defstate: local state is built, not versioned.\n*\n"
_RECORD_PREFIX = "record-"
LEGACY_RECORDS_DIRNAME = "records"  # where earlier versions kept records: still read
MAX_LOCAL_RECORDS = 50
_LOCK_NAME = ".refresh.lock"  # only where the key's folder itself cannot be flock()ed


@functools.cache
def _renameat2() -> Any:
    """``renameat2`` from libc, when the platform has it (loaded on first use)."""
    if not hasattr(os, "O_PATH"):  # not Linux
        return None
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    return getattr(libc, "renameat2", None)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Atomically swap two existing paths; ``False`` when the platform cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _is_record(name: str) -> bool:
    return name.startswith(_RECORD_PREFIX) and name.endswith(".json")


def _local_version(key: str, mtime: float, size: int | None, is_directory: bool) -> StateVersion:
    """The version of a key's local state (there is one: ``LOCAL_VERSION``)."""
    return StateVersion(
        key=key,
        version=LOCAL_VERSION,
        created_at=utc_iso(mtime),
        management_type=ManagementType.LOCAL_FILESYSTEM,
        size=size,
        is_directory=is_directory,
    )


@attrs.define
class LocalStateWrite(PendingWrite):
    """A pending local refresh; see :class:`defstate.state_storage.base.StateWrite`."""

    key: str
    key_dir: Path
    path: Path
    committed: bool = False
    unchanged: bool = False

    def commit(self) -> StateVersion:
        try:
            pending = os.lstat(self.path)
        except FileNotFoundError:
            require_written(self.path, self.key)  # raises: nothing was written
            raise
        is_directory = S_ISDIR(pending.st_mode)
        target = os.path.join(self.key_dir, STATE_NAME)
        try:
            current = os.stat(target)
        except FileNotFoundError:  # the first state (or a dangling link)
            current = None
        if current is not None and self._same_as(target):
            return self._keep_current(target, current, is_directory)
        now = time.time()
        os.utime(self.path, (now, now))  # created_at is the publication time
        size = path_size(self.path) if is_directory else pending.st_size
        target_is_directory = None if current is None else S_ISDIR(current.st_mode)
        if target_is_directory is None or not (is_directory or target_is_directory):
            os.replace(self.path, target)
        elif _exchange(self.path, target):
            remove_path(self.path)  # now holds the previous state
        else:
            old = self.key_dir / f"{_OLD_PREFIX}{uuid.uuid4().hex}"
            os.replace(target, old)
            os.replace(self.path, target)
            remove_path(old)
        self.committed = True
        return _local_version(self.key, now, size, is_directory)

    def _same_as(self, target: str) -> bool:
        from defstate.state_storage.archive import same_state  # refreshes only: tarfile, gzip

        return same_state(self.path, Path(target))

    def _keep_current(
        self, target: str, current: os.stat_result, is_directory: bool
    ) -> StateVersion:
        """The state equals the current one (``target``): leave that in place, untouched (its
        time, so ``created_at`` and anything watching it see nothing new), and drop the
        pending copy."""
        self.abort()
        self.committed = self.unchanged = True
        size = path_size(Path(target)) if is_directory else current.st_size
        return _local_version(self.key, current.st_mtime, size, is_directory)

    def abort(self) -> None:
        remove_path(self.path)


@attrs.define
class LocalStateStorage:
    """State kept in a folder next to the project (``<defs_dir>/.local_defs_state``)."""

    root: Path
    _key_dirs: dict[str, Path] = attrs.field(factory=dict, init=False, repr=False, eq=False)
    # the keys whose lock this process holds: the record files in their folders seen under
    # it (None until a listing under the lock saw them)
    _records_seen: dict[str, list[str] | None] = attrs.field(
        factory=dict, init=False, repr=False, eq=False
    )
    _state_files: dict[str, Path] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    management_type: ClassVar[ManagementType] = ManagementType.LOCAL_FILESYSTEM
    refreshed_at_initialization: ClassVar[bool] = False
    remote: ClassVar[bool] = False
    shared: ClassVar[bool] = False
    reads_old_versions: ClassVar[bool] = False  # only the current state is kept
    keeps_versions: ClassVar[bool] = False
    uses_leases: ClassVar[bool] = False  # a file lock: one machine's processes share it

    @classmethod
    def for_project(cls, project: StorageProject, component: str) -> Self:
        return cls.for_defs_dir(project.defs_dir)

    @classmethod
    def for_defs_dir(cls, defs_dir: Path) -> Self:
        return cls(defs_dir / LOCAL_STATE_DIRNAME)

    def describe(self) -> str:
        return str(self.root)

    def stored_keys(self) -> list[str]:
        def folders(relative: PurePosixPath) -> list[str]:
            try:
                with os.scandir(self.root / relative) as entries:
                    return [e.name for e in entries if e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                return []

        return find_keys(folders)

    def key_dir(self, key: str) -> Path:
        key_dir = self._key_dirs.get(key)
        if key_dir is None:
            key_dir = self._key_dirs[key] = self.root.joinpath(*encode_key(key).parts)
        return key_dir

    def _state_file(self, key: str) -> Path:
        """``<key dir>/state`` (made once per key: a load asks for it twice per key)."""
        state = self._state_files.get(key)
        if state is None:
            state = self._state_files[key] = self.key_dir(key) / STATE_NAME
        return state

    def _current_path(self, key: str) -> Path | None:
        state = self._state_file(key)
        if os.path.lexists(state):
            return state
        # A non-atomic swap (no renameat2) was interrupted between its two renames.
        key_dir = state.parent
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            olds = sorted(key_dir.glob(f"{_OLD_PREFIX}*"), key=lambda p: p.stat().st_mtime)
            if olds:
                return olds[-1]
        return None

    def latest_many(self, keys: Sequence[str]) -> Mapping[str, StateVersion | None]:
        return {}  # no read of many keys is cheaper than latest() of each here

    def latest(self, key: str) -> StateVersion | None:
        try:  # the usual case in one system call
            stat = os.stat(self._state_file(key))
        except (FileNotFoundError, NotADirectoryError):
            path = self._current_path(key)  # an interrupted swap, or a dangling link
            if path is None:
                return None
            stat = path.stat()
        is_directory = S_ISDIR(stat.st_mode)
        size = None if is_directory else stat.st_size  # loads are hot: no directory walk
        return _local_version(key, stat.st_mtime, size, is_directory)

    def has_local_copy(self, version: StateVersion) -> bool:
        return True

    def state_path(self, version: StateVersion) -> Path:
        path = self._current_path(version.key)
        if path is None:
            raise StateStorageError(
                f"the pinned local state of key {version.key!r} is missing from {self.root}: "
                f"create it with `defstate state refresh --key '{version.key}'`"
            )
        return path

    def begin_write(self, key: str, metadata: Mapping[str, str] | None = None) -> LocalStateWrite:
        key_dir = self.key_dir(key)
        if self._records_seen.get(key) is None:  # else: listed (or created) under this lock
            try:
                self._look_into(key)
            except FileNotFoundError:
                self._make_key_dir(key_dir)
        return LocalStateWrite(key=key, key_dir=key_dir, path=key_dir / temporary_name())

    def _make_key_dir(self, folder: Path) -> bool:
        """Create a key's folder, and the root with its ``.gitignore`` the first time;
        whether this call created it. Callers try their operation first and come here on
        ``FileNotFoundError``: a refresh of a key that exists creates no folder."""
        try:
            os.mkdir(folder)
        except FileExistsError:
            return False
        except FileNotFoundError:
            self._ensure_root()
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(folder)
            except FileExistsError:
                return False
        return True

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        gitignore = self.root / ".gitignore"
        if not gitignore.exists():
            write_atomic(gitignore, _GITIGNORE.encode())

    def _look_into(self, key: str) -> None:
        """One listing of the key's folder (``FileNotFoundError`` when it does not exist
        yet): delete temporaries left by refreshes whose process died (e.g. SIGKILL), and,
        while this process holds the key's lock, remember its record files (``write_record``
        then trims them without listing the folder again)."""
        key_dir = self.key_dir(key)
        records: list[str] | None = []
        temporaries = []
        with os.scandir(key_dir) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(TMP_PREFIX):
                    temporaries.append(name)
                elif records is not None and _is_record(name):
                    records.append(name)
                elif name == LEGACY_RECORDS_DIRNAME:
                    records = None  # seen only by a listing of that folder too
        if records is not None and key in self._records_seen:
            self._records_seen[key] = records
        for name in temporaries:
            if abandoned(name):
                remove_path(key_dir / name)

    # -- refresh records and single-flight --------------------------------------------------

    def write_record(self, record: RefreshRecord) -> None:
        key_dir = self.key_dir(record.key)
        name = f"{_RECORD_PREFIX}{record.file_name}"
        path = os.path.join(key_dir, name)
        data = record.to_bytes()
        try:
            write_atomic(path, data, make_parents=False)
        except FileNotFoundError:
            self._make_key_dir(key_dir)
            write_atomic(path, data, make_parents=False)
        seen = self._records_seen.get(record.key)
        if seen is None:  # not listed under the lock: list it now
            old_records = self._record_files(key_dir)[:-MAX_LOCAL_RECORDS]
        else:
            seen.append(name)
            seen.sort()  # oldest first: the names start with the time
            old_records = [os.path.join(key_dir, old) for old in seen[:-MAX_LOCAL_RECORDS]]
            del seen[:-MAX_LOCAL_RECORDS]
        for old in old_records:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    def records_many(self, keys: Sequence[str], limit: int = 50) -> dict[str, list[RefreshRecord]]:
        return {}  # records are read where they are: one key after the other costs nothing

    def records(self, key: str, limit: int = 50) -> list[RefreshRecord]:
        found = []
        for path in self._record_files(self.key_dir(key))[::-1][:limit]:
            with contextlib.suppress(OSError, ValueError, TypeError), open(path, "rb") as handle:
                found.append(RefreshRecord.from_json_dict(json.load(handle)))
        return found

    @staticmethod
    def _record_files(key_dir: Path) -> list[str]:
        """A key's record files, oldest first: ``record-*.json`` in its folder, and those an
        earlier defstate kept in its ``records/`` sub-folder (one more folder per key)."""
        named: list[tuple[str, str]] = []
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            os.scandir(key_dir) as entries,
        ):
            for entry in entries:
                name = entry.name
                if _is_record(name):
                    named.append((name[len(_RECORD_PREFIX) :], entry.path))
                elif name == LEGACY_RECORDS_DIRNAME and entry.is_dir():
                    with os.scandir(entry.path) as legacy:
                        named.extend(
                            (e.name, e.path)
                            for e in legacy
                            if e.name.endswith(".json") and not e.name.startswith(".")
                        )
        return [path for _, path in sorted(named)]

    @contextlib.contextmanager
    def refresh_lock(self, key: str, *, wait: bool, ttl: float) -> Iterator[bool]:
        """``flock`` on the key's folder itself (released by the OS if the holder dies): no
        lock file to create, so a first refresh creates one inode fewer per key."""
        key_dir = self.key_dir(key)
        if _flock is None:  # not POSIX
            yield from _filelock(key_dir / _LOCK_NAME, key, key_dir, self, wait=wait)
            return
        created = False
        try:
            fd = os.open(key_dir, _LOCK_FLAGS)
        except FileNotFoundError:
            created = self._make_key_dir(key_dir)
            fd = os.open(key_dir, _LOCK_FLAGS)
        try:
            waited = _flock(fd, key, wait=wait)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_FLOCK:
                raise
            # e.g. some NFS: filelock knows the fallbacks
            yield from _filelock(key_dir / _LOCK_NAME, key, key_dir, self, wait=wait)
            return
        except BaseException:
            os.close(fd)
            raise
        try:
            with self._holding(key, fresh=created and not waited):
                yield waited
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def _holding(self, key: str, *, fresh: bool) -> Iterator[None]:
        """While this process holds the key's lock, no other writes into its folder, so
        what one listing saw stays true: a folder this very lock created holds nothing yet
        (``begin_write`` need not list it) and its records are counted from then on."""
        self._records_seen[key] = [] if fresh else None
        try:
            yield
        finally:
            self._records_seen.pop(key, None)


# flock is missing on this file system: filelock knows the fallbacks
_NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)
_LOCK_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _posix_flock() -> Any:
    """``flock(fd, key, wait=...)`` where ``fcntl`` exists (else ``None``): lock ``fd``
    exclusively, returning whether it had to wait."""
    try:
        import fcntl
    except ImportError:
        return None

    def flock(fd: int, key: str, *, wait: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            if not wait:
                raise AlreadyRefreshingError(
                    f"state key {key!r} is already being refreshed by another process"
                ) from None
        _say_waiting(key)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True

    return flock


_flock = _posix_flock()


def _say_waiting(key: str) -> None:
    """Tell the user why the refresh blocks (progress, not silence)."""
    import logging  # only when waiting: the read path never imports it

    logging.getLogger("defstate.state_storage").warning(
        "waiting for the refresh of key %r running in another process", key
    )


def _filelock(
    lock_path: Path, key: str, key_dir: Path, storage: LocalStateStorage, *, wait: bool
) -> Iterator[bool]:
    """The portable single-flight lock (``filelock``) where ``fcntl.flock`` is missing."""
    from filelock import FileLock, Timeout

    storage._make_key_dir(key_dir)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
        waited = False
    except Timeout:
        if not wait:
            raise AlreadyRefreshingError(
                f"state key {key!r} is already being refreshed by another process"
            ) from None
        _say_waiting(key)
        lock.acquire()
        waited = True
    try:
        yield waited
    finally:
        lock.release()
