"""Run many refreshes on as few threads as they need: one, until some of them wait.

Most refreshes either return at once (a state computed from what is at hand) or wait (HTTP,
a subprocess, a database). Run side by side, the first kind only take the GIL from each other
at every system call, and handing each one to a pool thread costs more than the refresh
itself (a future, a queue, two thread switches: a third of a cold refresh of 1000 instant
components). So one thread takes the refreshes one after the other from a shared queue, and
the calling thread, waking every ``slow_seconds``, starts two more for each refresh that has
been running longer than that; a thread leaves again when fewer refreshes wait than the
threads they would make. Refreshes that wait reach ``workers`` threads within a few tens of
milliseconds. The calling thread runs no refresh itself: it stays free to handle signals
(``interrupts.released_on_signals``) while a refresh blocks in a call that ignores them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")

SLOW_SECONDS = 0.01
"""A call running longer than this is taken to be waiting (I/O, a subprocess)."""


def run_widening(
    call: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    slow_seconds: float | None = None,
) -> list[Result]:
    """``call(item)`` for every item, on at most ``workers`` threads at once; the results in
    the order of ``items``.

    With one worker the calls run in the calling thread. Otherwise an exception of ``call``
    stops the run (no new item starts) and is raised here once the running calls returned;
    an exception in the calling thread itself (``KeyboardInterrupt``) is raised at once, and
    the running calls finish on their own (daemon threads). ``slow_seconds`` defaults to
    :data:`SLOW_SECONDS`.
    """
    if workers <= 1:
        return [call(item) for item in items]
    slow = SLOW_SECONDS if slow_seconds is None else slow_seconds
    return _WideningRun(call, items, workers, slow).run()


class _WideningRun(Generic[Item, Result]):
    """The shared state of one :func:`run_widening`: the items left, since when each thread
    runs its current call, and the results."""

    def __init__(
        self,
        call: Callable[[Item], Result],
        items: Sequence[Item],
        workers: int,
        slow_seconds: float,
    ) -> None:
        self.call = call
        self.workers = workers
        self.slow_seconds = slow_seconds
        self.queue: deque[tuple[int, Item]] = deque(enumerate(items))
        self.results: list[Result | None] = [None] * len(items)
        self.lock = threading.Lock()
        self.running: dict[int, float] = {}  # thread number -> start of its current call
        self.threads = 0  # taking items now
        self.started = 0  # threads started so far (their numbers)
        self.finished = threading.Event()  # every thread left: nothing is left to run
        self.error: BaseException | None = None

    def run(self) -> list[Result]:
        """Start one thread, then every ``slow_seconds`` the threads now wanted."""
        if not self.queue:
            return []
        try:
            self._start(1)
            while not self.finished.wait(self.slow_seconds):
                with self.lock:
                    more = min(self._wanted() - self.threads, len(self.queue))
                self._start(more)
        finally:
            with self.lock:
                self.queue.clear()  # interrupted: start nothing more
        if self.error is not None:
            raise self.error
        return cast("list[Result]", self.results)  # every item ran: no error was raised

    def _start(self, count: int) -> None:
        for _ in range(count):
            with self.lock:
                self.threads += 1
                self.started += 1
                number = self.started
            thread = threading.Thread(
                target=self._take, args=(number,), name=f"defstate-refresh-{number}"
            )
            thread.daemon = True
            thread.start()

    def _next(self, number: int) -> tuple[int, Item] | None:
        """The next item for thread ``number``, or ``None`` when it leaves: nothing is left,
        or fewer calls wait than would keep this many threads busy."""
        with self.lock:
            if self.queue and self.threads <= self._wanted():
                self.running[number] = time.monotonic()
                return self.queue.popleft()
            self.threads -= 1
            if not self.threads:
                self.finished.set()
            return None

    def _take(self, number: int) -> None:
        """Thread ``number``: call items until :meth:`_next` says leave."""
        while (item := self._next(number)) is not None:
            index, value = item
            try:
                self.results[index] = self.call(value)
            except BaseException as exc:
                with self.lock:
                    self.error = self.error or exc
                    self.queue.clear()
            finally:
                with self.lock:
                    del self.running[number]

    def _wanted(self) -> int:
        """Threads worth running now (under the lock): one, and two more per slow call."""
        now = time.monotonic()
        slow = sum(1 for started in self.running.values() if now - started > self.slow_seconds)
        return min(self.workers, 1 + 2 * slow)
