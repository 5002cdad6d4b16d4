"""The interface every state storage strategy implements.

State storage knows nothing about components: it stores the bytes a refresh wrote under a
state key, names each written copy with a :class:`StateVersion`, and hands readers a local
path for a version.

Each storage class declares what it can do as class attributes (as fsspec filesystems declare
``protocol`` and ``local_file``); callers ask these, never which class or management type a
storage is. :mod:`defstate.state_storage.registry` maps a management type to its class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, cast

from defstate.errors import StateStorageError
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion

if TYPE_CHECKING:
    from defstate.state_storage.pins import LiveHolders
    from defstate.state_storage.versioned import StoredVersion


class StateWrite(Protocol):
    """One refresh's pending write: fill ``path``, then ``commit()``; leaving without
    committing (or with an exception) discards it and leaves the previous state in place."""

    @property
    def path(self) -> Path:
        """Where ``write_state_to_path`` writes: a file or a directory, not there yet."""
        ...

    @property
    def unchanged(self) -> bool:
        """After ``commit()``: the state equalled the latest version's (nothing published)."""
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


class StorageSettings(Protocol):
    """``[tool.defstate.state_storage]``: where versioned state lives."""

    @property
    def url(self) -> str: ...

    @property
    def storage_options(self) -> Mapping[str, Any]: ...

    @property
    def call_settings(self) -> Mapping[str, float]:
        """``attempts``, ``deadline``, ``connect_timeout``, ``read_timeout`` when set."""
        ...


class StorageProject(Protocol):
    """What a storage needs to know about the project it serves."""

    @property
    def defs_dir(self) -> Path: ...

    @property
    def pyproject(self) -> Path: ...

    @property
    def snapshot_max_bytes(self) -> int: ...

    @property
    def state_storage(self) -> StorageSettings | None: ...


class StateStorage(Protocol):
    """Stores state for keys of one management type.

    Capabilities (class attributes; see docs/architecture.md, "Storages"):

    ``refreshed_at_initialization``
        Every initialization load refreshes its keys: the state lives only in the load's pin,
        so ``state refresh`` has nothing to write and a missing state is this load's own.
    ``remote``
        Reading the latest version may go over the network (loads do it concurrently).
    ``shared``
        Other processes publish to it, so a running code location can poll it for new
        versions (``--reload-on-new-state``).
    ``reads_old_versions``
        A pin of an older version still reads that version after newer ones were published
        (a reconstruction load sees exactly what the pin names).
    ``keeps_versions``
        It stores every published version: history, ``show``/``diff`` of old versions,
        rollback and gc work on it (see :func:`version_store`).
    ``uses_leases``
        Single-flight across machines through an expiring lease object in the storage
        (otherwise a lock that only processes of one machine share).
    """

    management_type: ClassVar[ManagementType]
    refreshed_at_initialization: ClassVar[bool]
    remote: ClassVar[bool]
    shared: ClassVar[bool]
    reads_old_versions: ClassVar[bool]
    keeps_versions: ClassVar[bool]
    uses_leases: ClassVar[bool]

    @classmethod
    def for_project(cls, project: StorageProject, component: str) -> Self:
        """The storage ``project`` configures; ``component`` names the asker in errors."""
        ...

    def latest(self, key: str) -> StateVersion | None:
        """The key's current version, or ``None`` when it has never been refreshed."""
        ...

    def latest_many(self, keys: Sequence[str]) -> Mapping[str, StateVersion | None]:
        """What :meth:`latest` says for those of ``keys`` this storage can answer together
        in fewer round trips than one per key (possibly none of them). Callers read the
        keys missing from the answer with :meth:`latest`."""
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

    def stored_keys(self) -> list[str]:
        """Every key with something stored (state, records or a lease), sorted."""
        ...

    def write_record(self, record: RefreshRecord) -> None:
        """Store one refresh record next to the key's state."""
        ...

    def records(self, key: str, limit: int = 50) -> list[RefreshRecord]:
        """The key's refresh records, newest first."""
        ...

    def records_many(
        self, keys: Sequence[str], limit: int = 50
    ) -> Mapping[str, list[RefreshRecord]]:
        """What :meth:`records` says for those of ``keys`` this storage can answer together
        faster than one key after the other (possibly none of them). Callers read the keys
        missing from the answer with :meth:`records`."""
        ...

    def refresh_lock(self, key: str, *, wait: bool, ttl: float) -> AbstractContextManager[bool]:
        """Hold the key's single-flight lock; yields whether acquiring it had to wait.

        Raises ``AlreadyRefreshingError`` when ``wait`` is false and another refresh holds it.
        ``ttl`` bounds how long a crashed holder can block others (object storage leases).
        """
        ...


class VersionStore(StateStorage, Protocol):
    """A storage that keeps versions (``keeps_versions``): every published version stays
    readable until deleted, and the latest pointer can be moved back."""

    def version(self, key: str, version: str) -> StateVersion:
        """Stored ``version`` of ``key``; ``StateStorageError`` when it is not there."""
        ...

    def versions(self, key: str) -> list[StateVersion]:
        """Every stored version of ``key``, oldest first."""
        ...

    def rollback(self, key: str, version: str) -> StateVersion:
        """Point ``key``'s latest back at stored ``version``."""
        ...

    def delete_version(
        self, key: str, stored: StoredVersion | str, *, holders: LiveHolders | None = None
    ) -> bool:
        """Delete a stored version unless it is (or just became) latest or pinned; ``True``
        when deleted. Objects already gone (a concurrent gc) are not an error. ``holders``:
        the holder records as gc read them at its start (only changed ones are read again)."""
        ...

    def inventory(self, key: str) -> list[StoredVersion]:
        """Every version folder of ``key`` (complete, incomplete, damaged), oldest first."""
        ...

    def pointer_info(self, key: str) -> tuple[str | None, str | None, float] | None:
        """``(latest, previous, moved_at by the storage's clock)``, or ``None``."""
        ...

    def live_pins(self, key: str, holders: LiveHolders | None = None) -> tuple[set[str], list[str]]:
        """Versions of ``key`` named by unexpired live pin records (its per-key records, and
        the holder records: ``holders`` as read before, else read now), and problems found."""
        ...

    def live_holder_pins(self, previous: LiveHolders | None = None) -> LiveHolders:
        """Every holder record (one listing; a record ``previous`` read with the same
        listing token is not read again). Damaged records are reported, expired ones
        deleted (not in a re-check, i.e. with ``previous``)."""
        ...

    def storage_now(self, key: str) -> float:
        """The storage's own clock (for expiry and grace periods)."""
        ...

    def pin_records_per_holder(self) -> bool:
        """Whether a holder keeps one live pin record for all its keys here
        (:meth:`write_holder_pins`) rather than one per key (:meth:`write_pin`)."""
        ...

    def write_holder_pins(
        self, holder: str, versions: Mapping[str, Sequence[str]], *, ttl: float, purpose: str
    ) -> None:
        """Write or renew the one live pin record of ``holder`` (a uuid): ``versions`` per
        key are in use for the next ``ttl`` seconds."""
        ...

    def delete_holder_pins(self, holder: str) -> None:
        """Remove ``holder``'s record (already gone is fine)."""
        ...

    def write_pin(
        self, key: str, holder: str, versions: Sequence[str], *, ttl: float, purpose: str
    ) -> None:
        """Write or renew the per-key live pin record ``holder`` (a uuid) naming ``versions``."""
        ...

    def delete_pin(self, key: str, holder: str) -> None:
        """Remove a per-key live pin record (already gone is fine)."""
        ...


def version_store(storage: StateStorage) -> VersionStore | None:
    """``storage`` as a :class:`VersionStore` when it keeps versions, else ``None``."""
    return cast(VersionStore, storage) if storage.keeps_versions else None


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
    without ``commit()`` (or with an exception) calls ``abort()``.

    ``unchanged`` is set by ``commit()`` when the state equalled the latest version's and
    nothing new was published."""

    committed: bool
    unchanged: bool = False

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


_WORKDIRS: set[Path] = set()  # this process's pending writes' folders (see remove_workdirs)


def make_workdir(prefix: str) -> Path:
    """A private temporary folder (under ``$TMPDIR``) for a pending write; its ``abort()``
    removes it, or :func:`remove_workdirs` when a signal ends the process first."""
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    _WORKDIRS.add(workdir)
    return workdir


def remove_workdirs() -> None:
    """Delete every pending write's folder: the last act of a process that SIGTERM or SIGINT
    ends without unwinding (a refresh in a worker thread cannot be unwound)."""
    for workdir in list(_WORKDIRS):
        remove_path(workdir)


class WorkdirWrite(PendingWrite):
    """A pending write whose component writes into a private temporary folder (from
    :func:`make_workdir`), uploaded or copied on commit; aborting (or finishing) removes it."""

    workdir: Path

    @property
    def path(self) -> Path:
        return self.workdir / "state"

    def abort(self) -> None:
        remove_path(self.workdir)
        _WORKDIRS.discard(self.workdir)
