"""The interface every state storage strategy implements.

State storage knows nothing about components: it stores the bytes a refresh wrote under a
state key, names each written copy with a :class:`StateVersion`, and hands readers a local
path for a version.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from defstate.errors import StateStorageError
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion


class StateWrite(Protocol):
    """One refresh's pending write: fill ``path``, then ``commit()``; leaving without
    committing (or with an exception) discards it and leaves the previous state in place."""

    @property
    def path(self) -> Path:
        """Where ``write_state_to_path`` writes: a file or a directory, not there yet."""
        ...

    def commit(self) -> StateVersion: ...

    def abort(self) -> None: ...

    def __enter__(self) -> StateWrite: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StateStorage(Protocol):
    """Stores state for keys of one management type."""

    management_type: ManagementType

    def latest(self, key: str) -> StateVersion | None:
        """The key's current version, or ``None`` when it has never been refreshed."""
        ...

    def state_path(self, version: StateVersion) -> Path:
        """A local path holding exactly ``version``'s state (a file or a directory)."""
        ...

    def has_local_copy(self, version: StateVersion) -> bool:
        """Whether ``state_path(version)`` needs no network (a loader runs the others
        concurrently)."""
        ...

    def begin_write(self, key: str, metadata: Mapping[str, str] | None = None) -> StateWrite:
        """Start a refresh of ``key``; ``metadata`` (e.g. the component type) is recorded
        with the version where the storage keeps manifests. See :class:`StateWrite`."""
        ...

    def describe(self) -> str:
        """Where this storage keeps state, for messages (never includes credentials)."""
        ...

    def write_record(self, record: RefreshRecord) -> None:
        """Store one refresh record next to the key's state."""
        ...

    def records(self, key: str, limit: int = 50) -> list[RefreshRecord]:
        """The key's refresh records, newest first."""
        ...

    def refresh_lock(self, key: str, *, wait: bool, ttl: float) -> AbstractContextManager[bool]:
        """Hold the key's single-flight lock; yields whether acquiring it had to wait.

        Raises ``AlreadyRefreshingError`` when ``wait`` is false and another refresh holds it.
        ``ttl`` bounds how long a crashed holder can block others (object storage leases).
        """
        ...


def path_size(path: Path) -> int:
    """Bytes in a file, or in all files under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def remove_path(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        import shutil  # imports bz2 and lzma: ~3 ms that loads, which only read, never need

        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def require_written(path: Path, key: str) -> None:
    """Fail clearly when ``write_state_to_path`` returned without writing anything."""
    if not path.exists():
        raise StateStorageError(
            f"write_state_to_path for key {key!r} returned without writing anything at {path}"
        )


class PendingWrite:
    """Context-manager behaviour shared by the storages' pending writes: leaving the block
    without ``commit()`` (or with an exception) calls ``abort()``."""

    committed: bool

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.abort()


class WorkdirWrite(PendingWrite):
    """A pending write whose component writes into a private temporary folder, uploaded or
    copied on commit; aborting (or finishing) removes the folder."""

    workdir: Path

    @property
    def path(self) -> Path:
        return self.workdir / "state"

    def abort(self) -> None:
        remove_path(self.workdir)
