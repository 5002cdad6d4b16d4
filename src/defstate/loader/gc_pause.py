"""Pausing CPython's cyclic garbage collector while a load builds its definitions.

A load allocates hundreds of thousands of small containers that all survive: parsed YAML,
component instances, asset specs and keys, then the JSON document. CPython starts a collection
every 700 container allocations and traverses the survivors again in each older generation, so
on a 1000-component project about a third of a load was spent in collections that freed
nothing. Reference counting still frees every acyclic object at once while the collector is
paused; cycles made meanwhile wait for the first collection after the pause.

Pauses cover discovery, resolving state, building and rendering definitions, never a refresh,
which runs user code for as long as the external system takes.
"""

from __future__ import annotations

import gc
import threading


class GcPause:
    """A re-entrant, thread-safe pause of the cyclic collector: ``with paused_gc: ...``.

    The collector resumes when the last overlapping pause ends, and only if it was enabled
    when the first began (a program that disabled it itself keeps it disabled).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                gc.enable()


paused_gc = GcPause()
