"""The four ways ``write_state_to_path`` runs, chosen by ``defs_state.executor``.

* in a thread, abandoned after the timeout (``executor: thread``, a sync method);
* in ``asyncio.run`` under ``wait_for`` (an ``async def`` method);
* in a shared pool of spawned processes (``executor: process``, no timeout);
* in a dedicated spawned process, killed after the timeout (``executor: process`` with one).

Whatever runs, it writes into a pending location that is published only afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from defstate.components.state_backed import StateBackedComponent
from defstate.errors import RefreshTimeoutError
from defstate.redaction import adopt_secrets, secret_values
from defstate.user_code import annotate, describe_exception

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.connection import Connection


def write_state(component: StateBackedComponent, state_path: Path, timeout: float | None) -> None:
    """Run ``component.write_state_to_path(state_path)`` on its executor, within ``timeout``
    seconds (``RefreshTimeoutError`` past it)."""
    if component.defs_state.executor != "process":
        _call_with_timeout(lambda: component.write_state_to_path(state_path), timeout)
    elif timeout is not None:
        _write_in_own_process(component, state_path, timeout)
    else:
        _process_pool().submit(_write_state, component, state_path, secret_values()).result()


def _call_with_timeout(func: Callable[[], object], timeout: float | None) -> None:
    """Run ``func`` (sync, or returning an awaitable) and give up after ``timeout`` seconds.

    A sync function cannot be stopped from outside; it is abandoned on a daemon thread, and
    whatever it still writes goes to a pending location that is never published.
    """

    def run() -> None:
        _complete(func(), timeout)

    if timeout is None:
        run()
        return
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            run()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=guarded, name="defstate-refresh-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise RefreshTimeoutError(f"write_state_to_path did not finish within {timeout:g}s")
    if errors:
        raise errors[0]


def _complete(outcome: object, timeout: float | None) -> None:
    """Await ``outcome`` when ``write_state_to_path`` was an ``async def``."""
    if outcome is None:  # a plain method returned: no need to import asyncio
        return
    import asyncio  # only async refreshes need these; keep `import defstate` light
    import inspect

    if inspect.isawaitable(outcome):
        asyncio.run(_await(outcome, timeout))


async def _await(awaitable: Awaitable[object], timeout: float | None) -> None:
    import asyncio

    try:
        await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RefreshTimeoutError(
            f"write_state_to_path did not finish within {timeout:g}s"
        ) from None


def _write_state(
    component: StateBackedComponent, state_path: Path, secrets: frozenset[str]
) -> None:
    """``write_state_to_path`` in a worker process (a top-level function: it is pickled).

    ``secrets`` are the parent's: what the child prints and raises is redacted too, and an
    exception keeps where it was raised (its traceback is not pickled)."""
    adopt_secrets(secrets)
    try:
        _complete(component.write_state_to_path(state_path), None)
    except BaseException as exc:
        annotate(exc)
        raise


_PROCESS_POOL: ProcessPoolExecutor | None = None
_PROCESS_POOL_LOCK = threading.Lock()


def _process_pool() -> ProcessPoolExecutor:
    """One pool per process, one worker per core; ``spawn``: forking a threaded process is
    unsafe, and spawned workers receive this process's ``sys.path`` to import components."""
    global _PROCESS_POOL
    with _PROCESS_POOL_LOCK:
        if _PROCESS_POOL is None:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            _PROCESS_POOL = ProcessPoolExecutor(
                max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")
            )
        return _PROCESS_POOL


def _write_state_and_report(
    component: StateBackedComponent,
    state_path: Path,
    connection: Connection,
    secrets: frozenset[str],
) -> None:
    """Child side of :func:`_write_in_own_process`: report success or the error."""
    try:
        _write_state(component, state_path, secrets)
        connection.send(None)
    except BaseException as exc:
        try:
            connection.send(exc)
        except Exception:  # not picklable: send its text
            connection.send(RuntimeError(describe_exception(exc)))


def _write_in_own_process(
    component: StateBackedComponent, state_path: Path, timeout: float
) -> None:
    """A process refresh with a timeout gets a process of its own, so that a refresh that
    hangs can be killed (a pool worker cannot be, and would keep the pool busy)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_write_state_and_report,
        args=(component, state_path, sender, secret_values()),
        daemon=True,
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise RefreshTimeoutError(f"write_state_to_path did not finish within {timeout:g}s")
        try:
            error = receiver.recv()
        except EOFError:  # the child died without a word (killed, crashed)
            error = RuntimeError(f"the refresh process exited with code {process.exitcode}")
        if error is not None:
            raise error
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
