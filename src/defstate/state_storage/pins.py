"""Live pin records: a running process tells gc which versions it uses.

A process that serves a load (``serve``, ``dev``, or ``load_defs(..., keep_pinned=True)``)
is a *holder* (a uuid4). It records the versions it uses, rewrites the record every
``ttl / 3`` seconds, and deletes it when it stops. A record not rewritten for ``ttl`` seconds
(by the storage's clock, so no two hosts' clocks are compared) is dead: its process is gone,
and gc no longer keeps its versions for it.

Where the records are depends on the storage's layout, which the storage answers
(:meth:`VersionStore.pin_records_per_holder`):

- layout 2: one *holder record*, ``<url>/_pins.d/<holder>.json``, names every key's versions
  (``{"keys": {key: [version, ...]}, ...}``): one write to start, one per renewal, one
  delete at exit, whatever the number of keys; gc lists ``_pins.d/`` once per run;
- layout 1: one record per key, ``<url>/<key>/pins/<holder>.json`` (what defstate before
  layout 2 reads). gc honours those on every layout: publications and rollbacks write
  short-lived per-key *claims*, and processes of an older defstate may still run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from defstate.errors import DefstateError
from defstate.state_storage.base import VersionStore
from defstate.state_storage.state_info import StateInfo

log = logging.getLogger("defstate.state_storage")

DEFAULT_PIN_TTL = 600.0
HOLDER_RECORD_FORMAT = 1


def is_live(age: float, ttl: float) -> bool:
    """Whether a pin record last written ``age`` seconds ago (by the storage's clock) still
    pins its versions: for ``ttl`` seconds after each write."""
    return age <= ttl


def is_abandoned(age: float, ttl: float) -> bool:
    """Whether gc deletes an expired pin record: once it is more than twice its ``ttl`` old
    (per-key records and holder records alike)."""
    return age > 2 * ttl


def record_identity(holder: str, *, ttl: float, purpose: str) -> dict[str, Any]:
    """The fields every pin record carries besides its versions (no secrets: the holder's
    uuid, host name and process id, the ttl and what the process does)."""
    return {
        "holder": holder,
        "ttl": ttl,
        "purpose": purpose,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def holder_record_bytes(
    holder: str, versions: Mapping[str, Sequence[str]], *, ttl: float, purpose: str
) -> bytes:
    """A holder record: the versions of every key ``holder`` uses."""
    record = {
        "format": HOLDER_RECORD_FORMAT,
        **record_identity(holder, ttl=ttl, purpose=purpose),
        "keys": {key: list(names) for key, names in sorted(versions.items())},
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


@attrs.frozen
class HolderRecord:
    """A holder record as read: its ttl and the versions it names per key."""

    ttl: float
    versions: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_bytes(cls, data: bytes) -> HolderRecord:
        """Parse a record; ``ValueError`` says how it is damaged."""
        try:
            doc = json.loads(data)
            ttl = float(doc["ttl"])
            keys = doc["keys"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl {ttl!r} is not a positive number of seconds")
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
            for k, v in keys.items()
        ):
            raise ValueError('"keys" is not an object of version lists')
        return cls(ttl, {k: tuple(v) for k, v in keys.items()})


@attrs.frozen
class ReadHolderRecord:
    """A holder record read from storage with the listing token it had before the read (a
    later listing showing the same token needs no second read)."""

    token: str | None
    record: HolderRecord


@attrs.frozen
class LiveHolders:
    """The holder records of one storage as one listing found them.

    ``live``: the versions per key that unexpired records name. ``now``: the storage's
    clock at that listing (``None`` when nothing was listed); a later re-check judges ages
    against it, which can only make a record look younger. ``read``: every record read, by
    path, so a re-check reads only the records that changed. ``problems``: damaged records
    (reported and ignored).
    """

    live: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    now: float | None = None
    read: Mapping[str, ReadHolderRecord] = attrs.field(factory=dict)
    problems: tuple[str, ...] = ()

    def versions_of(self, key: str) -> frozenset[str]:
        return self.live.get(key, frozenset())


class LivePins:
    """Pin records of one process for one storage, renewed by a daemon thread until
    :meth:`close`. Thread-safe; :meth:`hold` replaces what is pinned."""

    def __init__(self, storage: VersionStore, *, ttl: float = DEFAULT_PIN_TTL) -> None:
        self.storage = storage
        self.ttl = ttl
        self.holder = str(uuid.uuid4())
        self._versions: dict[str, tuple[str, ...]] = {}
        self._purpose = "serve"
        #: keys that may have a per-key record of this holder (layout 1, or before a
        #: migration), and whether its holder record may exist
        self._per_key: set[str] = set()
        self._holder_record = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, versions: Mapping[str, Sequence[str]], *, purpose: str = "serve") -> None:
        """Pin exactly ``versions`` (``{key: [version, ...]}``) from now on: the records
        are written at once, and keys no longer held are dropped from them."""
        wanted = {k: tuple(dict.fromkeys(v)) for k, v in versions.items() if v}
        with self._lock:
            self._versions = wanted
            self._purpose = purpose
            self._store()
        if self._thread is None and wanted:
            self._thread = threading.Thread(target=self._renew, name="defstate-pins", daemon=True)
            self._thread.start()

    def hold_pin(self, pin: StateInfo, *extra: StateInfo, purpose: str = "serve") -> None:
        """Pin the versions of one or more state infos that are in this storage."""
        versions: dict[str, list[str]] = {}
        for info in (pin, *extra):
            for key, version in info.versions.items():
                if version.management_type is self.storage.management_type:
                    versions.setdefault(key, []).append(version.version)
        self.hold(versions, purpose=purpose)

    @property
    def held(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return dict(self._versions)

    def _store(self) -> None:
        """Write what is held (called with the lock): the holder record where the storage
        keeps one per holder, else one record per key; then remove the records that no
        longer apply. Every per-key write is tried; the first failure is raised after."""
        wanted = self._versions
        if wanted and self.storage.pin_records_per_holder():
            self.storage.write_holder_pins(self.holder, wanted, ttl=self.ttl, purpose=self._purpose)
            self._holder_record = True
            stale = set(self._per_key)  # written before a migration: the record has them
        else:
            if self._holder_record:  # nothing is held any more
                self._delete_holder_record()
            failure: Exception | None = None
            for key, names in wanted.items():
                self._per_key.add(key)
                try:
                    self.storage.write_pin(
                        key, self.holder, names, ttl=self.ttl, purpose=self._purpose
                    )
                except Exception as exc:
                    failure = failure or exc
            stale = self._per_key - set(wanted)
            if failure is not None:
                raise failure
        for key in stale:
            self._delete(key)

    def renew(self) -> None:
        """Rewrite the records now, as the renewing thread does every ``ttl / 3`` (one write
        where the storage keeps one record per holder). A failure is logged, not raised: the
        records live ``ttl``, so the next renewal retries in time."""
        with self._lock:
            try:
                self._store()
            except Exception as exc:
                log.warning(
                    "could not renew the live pins of %s at %s: %s",
                    self.holder,
                    self.storage.describe(),
                    exc,
                )

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew()

    def _delete(self, key: str) -> None:
        try:
            self.storage.delete_pin(key, self.holder)
            self._per_key.discard(key)
        except DefstateError as exc:  # it expires on its own
            log.warning("could not remove the live pin of key %r: %s", key, exc)

    def _delete_holder_record(self) -> None:
        try:
            self.storage.delete_holder_pins(self.holder)
            self._holder_record = False
        except DefstateError as exc:  # it expires on its own
            log.warning("could not remove the live pins of %s: %s", self.holder, exc)

    def close(self) -> None:
        """Stop renewing and delete the records (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            if self._holder_record:
                self._delete_holder_record()
            for key in list(self._per_key):
                self._delete(key)
            self._versions = {}
