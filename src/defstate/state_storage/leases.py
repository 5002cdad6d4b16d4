"""The single-flight refresh lease of a key in object storage: ``<key>/lease.json``.

Protocol (see docs/reliability.md):

- The lease object is only ever replaced by a conditional write (``write_if`` with the token
  that was read), so two contenders can never both win it.
- It is free when absent, released (``{"released": true}``), damaged (anything that does not
  parse as a lease: a warning names it), or expired.
- Expired means: not rewritten for ``ttl`` seconds *by the storage's own clock* (the lease
  object's modification time against an object written just now). No machine's wall clock is
  compared with another's, so clock skew between hosts cannot admit two holders.
- The holder renews it every ``ttl / 3`` seconds; a holder killed with SIGKILL stops renewing,
  so waiters take it over at most ``ttl`` seconds later. SIGTERM and SIGINT release it
  (:func:`release_held_leases`, called by the command line's signal handlers,
  :mod:`defstate.state_storage.interrupts`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs

from defstate.errors import AlreadyRefreshingError
from defstate.state_storage.objects import ObjectInfo, ObjectStore

T = TypeVar("T")
log = logging.getLogger("defstate.state_storage")

MAX_TTL = 24 * 3600.0
POLL_SECONDS = 0.5

Call = Callable[[str, Callable[[float | None], T]], T]
"""Runs one storage call with retries and a deadline: ``call(what, func(timeout))``."""


@attrs.frozen
class LeaseDocument:
    """What a lease object says; ``problem`` is set when it could not be understood."""

    holder: str | None = None
    host: str = "?"
    pid: int | None = None
    ttl: float = 0.0
    released: bool = False
    problem: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> LeaseDocument:
        try:
            doc = json.loads(data)
        except ValueError:
            return cls(problem="not JSON")
        if not isinstance(doc, dict):
            return cls(problem=f"a JSON {type(doc).__name__}, not an object")
        if doc.get("released") is True:
            return cls(released=True)
        holder, ttl = doc.get("holder"), doc.get("ttl")
        if not isinstance(holder, str) or not holder:
            return cls(problem="no holder")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            return cls(problem="no ttl")
        if not math.isfinite(ttl) or not 0 < ttl <= MAX_TTL:
            return cls(problem=f"ttl {ttl!r} is not between 0 and {MAX_TTL:g} seconds")
        pid = doc.get("pid")
        return cls(holder, str(doc.get("host", "?")), pid if isinstance(pid, int) else None, ttl)


def _lease_bytes(holder: str, ttl: float) -> bytes:
    return json.dumps(
        {
            "holder": holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "ttl": ttl,
            "renewed_at": time.time(),  # for people reading it; expiry uses storage times
            "nonce": uuid.uuid4().hex,  # every renewal changes the object
        }
    ).encode()


@attrs.define(eq=False)
class HeldLease:
    """A lease this process holds; renewed by a thread until released."""

    store: ObjectStore
    path: str
    key: str
    holder: str
    ttl: float
    token: str
    call: Call[Any]
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    lost: bool = False
    released: bool = False

    def renew(self) -> None:
        with self._lock:
            if self.released or self.lost:
                return
            token = self.call(
                f"renew the refresh lease of key {self.key!r}",
                lambda t: self.store.write_if(
                    self.path, _lease_bytes(self.holder, self.ttl), self.token, t
                ),
            )
            if token is None:
                self.lost = True
                log.error(
                    "lost the refresh lease %s of key %r: it was not renewed for %.0fs and "
                    "another process took it over",
                    self.path,
                    self.key,
                    self.ttl,
                )
            else:
                self.token = token

    def run_renewals(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except Exception as exc:  # a blip must not end renewal: try again next cycle
                log.warning("could not renew the refresh lease of %r: %s", self.key, exc)
            if self.lost:
                return

    def release(self) -> None:
        """Mark the lease released (only if it is still ours); idempotent."""
        self._stop.set()
        with self._lock:
            if self.released:
                return
            self.released = True
            if self.lost:
                return
            released = json.dumps({"released": True, "holder": self.holder}).encode()
            self.call(
                f"release the refresh lease of key {self.key!r}",
                lambda t: self.store.write_if(self.path, released, self.token, t),
            )


_HELD: set[HeldLease] = set()
_HELD_LOCK = threading.Lock()


def release_held_leases() -> list[str]:
    """Release every lease this process holds (from a SIGTERM/SIGINT handler); returns the
    keys released. Failures are logged: a lease that cannot be released expires anyway."""
    with _HELD_LOCK:
        held = list(_HELD)
    released = []
    for lease in held:
        try:
            lease.release()
            released.append(lease.key)
        except Exception as exc:
            log.warning("could not release the refresh lease of %r: %s", lease.key, exc)
    return released


def _acquire(
    store: ObjectStore,
    path: str,
    clock: str,
    key: str,
    *,
    wait: bool,
    ttl: float,
    call: Call[Any],
) -> tuple[HeldLease, bool]:
    holder = uuid.uuid4().hex
    waited = False
    while True:
        current = call(
            f"read the refresh lease of key {key!r}", lambda t: store.read_with_info(path, t)
        )
        holding = _holder_if_live(store, path, clock, key, current, call)
        if holding is None:
            token = None if current is None else current[1].token
            new_token = call(
                f"take the refresh lease of key {key!r}",
                lambda t, token=token: store.write_if(path, _lease_bytes(holder, ttl), token, t),  # type: ignore[misc]
            )
            if new_token is not None:
                return HeldLease(store, path, key, holder, ttl, new_token, call), waited
            continue  # someone else changed it first: look again
        doc, age = holding
        if not wait:
            raise AlreadyRefreshingError(
                f"state key {key!r} is already being refreshed (lease {path} held by "
                f"{doc.host} pid {doc.pid}, renewed {max(age, 0):.0f}s ago; a holder that "
                f"died loses it {doc.ttl:.0f}s after its last renewal)"
            )
        if not waited:
            log.warning(
                "waiting for the refresh of key %r running elsewhere (lease %s, held by %s "
                "pid %s; taken over if not renewed for %.0fs)",
                key,
                path,
                doc.host,
                doc.pid,
                doc.ttl,
            )
        waited = True
        time.sleep(POLL_SECONDS)


def _holder_if_live(
    store: ObjectStore,
    path: str,
    clock: str,
    key: str,
    current: tuple[bytes, ObjectInfo] | None,
    call: Call[Any],
) -> tuple[LeaseDocument, float] | None:
    """The live lease's document and age (seconds since its last renewal, by the storage's
    clock), or ``None`` when the lease is free: absent, released, damaged or expired."""
    if current is None:
        return None
    doc = LeaseDocument.parse(current[0])
    if doc.problem is not None:
        log.warning(
            "the refresh lease %s of key %r is damaged (%s): treating it as expired",
            path,
            key,
            doc.problem,
        )
        return None
    if doc.released:
        return None
    now = call(f"read the storage clock for key {key!r}", lambda t: store.now(clock, t))
    age = now - current[1].mtime
    if age > doc.ttl:
        log.warning(
            "taking over the refresh lease of key %r from %s (pid %s): not renewed for %.0fs "
            "(ttl %.0fs)",
            key,
            doc.host,
            doc.pid,
            age,
            doc.ttl,
        )
        return None
    return doc, age


@contextmanager
def hold_lease(
    store: ObjectStore,
    path: str,
    clock: str,
    key: str,
    *,
    wait: bool,
    ttl: float,
    call: Call[Any],
) -> Iterator[bool]:
    """Hold ``key``'s lease at ``path`` for the block; yields whether acquiring it waited."""
    lease, waited = _acquire(store, path, clock, key, wait=wait, ttl=ttl, call=call)
    with _HELD_LOCK:
        _HELD.add(lease)
    renewer = threading.Thread(target=lease.run_renewals, name="defstate-lease", daemon=True)
    renewer.start()
    try:
        yield waited
    finally:
        try:
            lease.release()
        except Exception as exc:  # never hide the block's own outcome: it expires anyway
            log.warning("could not release the refresh lease of %r: %s", key, exc)
        renewer.join()
        with _HELD_LOCK:
            _HELD.discard(lease)
