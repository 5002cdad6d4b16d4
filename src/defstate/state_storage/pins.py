"""Live pin records: a running process tells gc which versions it uses.

A process that serves a load (``serve``, ``dev``, or ``load_defs(..., keep_pinned=True)``)
writes ``<key>/pins/<holder>.json`` naming the versions it uses, rewrites it every
``ttl / 3`` seconds, and deletes it when it stops. A record not rewritten for ``ttl`` seconds
(by the storage's clock, so no two hosts' clocks are compared) is dead: its process is gone,
and gc no longer keeps its versions for it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence

from defstate.errors import DefstateError
from defstate.state_storage.base import VersionStore
from defstate.state_storage.state_info import StateInfo

log = logging.getLogger("defstate.state_storage")

DEFAULT_PIN_TTL = 600.0


class LivePins:
    """Pin records of one process for one storage, renewed by a daemon thread until
    :meth:`close`. Thread-safe; :meth:`hold` replaces what is pinned."""

    def __init__(self, storage: VersionStore, *, ttl: float = DEFAULT_PIN_TTL) -> None:
        self.storage = storage
        self.ttl = ttl
        self.holder = str(uuid.uuid4())
        self._versions: dict[str, tuple[str, ...]] = {}
        self._purpose = "serve"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, versions: Mapping[str, Sequence[str]], *, purpose: str = "serve") -> None:
        """Pin exactly ``versions`` (``{key: [version, ...]}``) from now on: records are
        written for them at once, and removed for keys no longer held."""
        wanted = {k: tuple(dict.fromkeys(v)) for k, v in versions.items() if v}
        with self._lock:
            dropped = set(self._versions) - set(wanted)
            for key, names in wanted.items():
                self.storage.write_pin(key, self.holder, names, ttl=self.ttl, purpose=purpose)
            for key in dropped:
                self._delete(key)
            self._versions = wanted
            self._purpose = purpose
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

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                for key, names in self._versions.items():
                    try:
                        self.storage.write_pin(
                            key, self.holder, names, ttl=self.ttl, purpose=self._purpose
                        )
                    except Exception as exc:  # retried next cycle; the record lives ttl
                        log.warning("could not renew the live pin of key %r: %s", key, exc)

    def _delete(self, key: str) -> None:
        try:
            self.storage.delete_pin(key, self.holder)
        except DefstateError as exc:  # it expires on its own
            log.warning("could not remove the live pin of key %r: %s", key, exc)

    def close(self) -> None:
        """Stop renewing and delete the records (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for key in list(self._versions):
                self._delete(key)
            self._versions = {}
