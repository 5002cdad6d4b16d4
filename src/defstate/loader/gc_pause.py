"""Pausing CPython's cyclic garbage collector while a load builds its definitions.

A load allocates hundreds of thousands of small containers that all survive: parsed YAML,
component instances, asset specs and keys, then the JSON document. CPython starts a collection
every 700 container allocations and traverses the survivors again in each older generation, so
on a 1000-component project about a third of a load was spent in collections that freed
nothing. Reference counting still frees every acyclic object at once while the collector is
paused; cycles made meanwhile wait for the next full collection (see below).

Pauses cover discovery, resolving state, building and rendering definitions, never a refresh,
which runs user code for as long as the external system takes.

When a pause ends, what it built goes straight to the oldest generation. CPython counts the
allocations of a pause against the youngest generation, so without that the first allocation
after it started a collection traversing everything the pause built (13 ms after a load of
1000 components x 20 assets, for nothing: a load's objects are in use until it is replaced).
Oldest-generation objects are collected by full collections only, and CPython's trigger for
those (the long-lived objects grew by a quarter) does not count objects moved there this way:
a long-lived process that loads again and again (a server, a code location reloading in
place) would keep every load's reference cycles. So after :data:`AGED_PAUSES` pauses moved
their objects there without a full collection since, the next pause ends with one instead
(a CLI process ends after three pauses: it never runs one).
"""

from __future__ import annotations

import gc
import threading

AGED_PAUSES = 8
"""Pauses whose objects go to the oldest generation between two full collections."""


class GcPause:
    """A re-entrant, thread-safe pause of the cyclic collector: ``with paused_gc: ...``.

    The collector resumes when the last overlapping pause ends, and only if it was enabled
    when the first began (a program that disabled it itself keeps it disabled).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False
        self._aged = 0  # pauses aged since the full collection counted in _full_collections
        self._full_collections = -1

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth or not self._resume:
                return
            collect = self._end()
            gc.enable()
        if collect:  # outside the lock: the finalizers it runs may pause the collector too
            gc.collect()

    def _end(self) -> bool:
        """What the pause built goes to the oldest generation; after :data:`AGED_PAUSES`
        such pauses without a full collection, ``True`` instead: one is due."""
        full_collections = gc.get_stats()[-1]["collections"]
        if full_collections != self._full_collections:  # one ran since (the count restarts)
            self._full_collections, self._aged = full_collections, 0
        if self._aged >= AGED_PAUSES:
            self._aged = 0
            return True
        if _age_survivors():
            self._aged += 1
        return False


def _age_survivors() -> bool:
    """Move every tracked object to the oldest generation, with no traversal:
    ``gc.freeze()`` then ``gc.unfreeze()`` (each moves one list; the young count restarts at
    zero); whether it did. Skipped while the program keeps objects frozen itself (e.g.
    before forking workers): unfreezing would release them."""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    gc.unfreeze()
    return True


paused_gc = GcPause()


def freeze_before_exit() -> None:
    """Spare a process that is about to exit the collector's passes over what it built.

    Interpreter shutdown runs full collections over every object still alive, even with the
    collector disabled: after a load of 1000 components x 20 assets that was about a third
    of the whole ``list defs`` process's CPU time (0.6 s of 2 s). ``gc.freeze()`` moves the
    survivors out of the collector's sight; reference counting still frees them. Only for
    processes that end right after (the CLI, a load worker), never a long-lived server:
    cycles frozen there would never be collected.
    """
    gc.freeze()
