"""SIGTERM and SIGINT during a refresh: release the leases held, remove pending writes.

Light on purpose (no object store, no sockets): every ``state refresh`` and ``schedule run``
installs these handlers, and a refresh of local state holds no lease at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

_LEASES = "defstate.state_storage.leases"


@contextlib.contextmanager
def released_on_signals() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGINT release this process's refresh leases before the
    process exits (with 143 and 130), so waiters need not wait for the lease to expire, and
    remove the pending writes' temporary folders.

    The exit is immediate: a refresh running in a worker thread cannot be unwound, and what
    it leaves is never published. Only the main thread can install handlers; elsewhere this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        try:
            from defstate.state_storage.base import remove_workdirs

            leases = sys.modules.get(_LEASES)  # never imported: no lease was ever held
            keys = leases.release_held_leases() if leases is not None else []
            remove_workdirs()
            # the signal may have come in the middle of a write to these streams (e.g. to a
            # full pipe): another write raises there, and must not keep the process alive
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            with contextlib.suppress(Exception):
                if keys:
                    sys.stderr.write(f"released the refresh lease of {', '.join(keys)}\n")
                sys.stderr.write("interrupted\n")
                sys.stderr.flush()
        finally:
            os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
