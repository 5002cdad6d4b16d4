"""Every storage call has a deadline: retries on transient errors, bounded in time.

A call is attempted up to ``attempts`` times, each attempt bounded by what is left of the
operation's deadline (``deadline`` seconds, or less inside :func:`operation_deadline`, which a
refresh uses so that ``--timeout`` bounds its publication too). Each retry logs a warning that
says so. The final error names the operation, the key and the storage URL.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs

from defstate.errors import StateStorageError, is_transient
from defstate.retrying import Attempts, DeadlineExpired, Failure, retry

T = TypeVar("T")
log = logging.getLogger("defstate.state_storage")

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "defstate_storage_deadline", default=None
)


_TRANSFER_BYTES_PER_SECOND = 1024 * 1024  # the slowest link a transfer's deadline allows


class StorageDeadlineError(StateStorageError):
    """A storage operation did not finish within its deadline."""


@attrs.frozen
class CallPolicy:
    """How storage calls are retried and bounded (``[tool.defstate.state_storage]``:
    ``attempts``, ``deadline``, ``connect_timeout``, ``read_timeout``)."""

    attempts: int = 4
    deadline: float = 60.0
    connect_timeout: float = 5.0
    read_timeout: float = 20.0


@contextlib.contextmanager
def operation_deadline(seconds: float | None) -> Iterator[None]:
    """Storage calls inside the block finish within ``seconds`` from now (``None``: no
    extra bound). Nested scopes keep the earlier deadline."""
    if seconds is None:
        yield
        return
    end = time.monotonic() + max(0.0, seconds)
    outer = _DEADLINE.get()
    token = _DEADLINE.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def describe_error(exc: BaseException) -> str:
    """A one-line reason, never including credentials (storage options are never printed)."""
    if isinstance(exc, PermissionError):
        return f"access denied ({exc}); check the credentials in storage_options or the env"
    if isinstance(exc, FileNotFoundError):
        return f"not found ({exc})"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on device ({exc.filename or exc})"
    if type(exc).__name__ in ("FSTimeoutError", "TimeoutError", "CancelledError"):
        return "no answer in time"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def call_with_deadline(
    policy: CallPolicy,
    what: str,
    where: str,
    func: Callable[[float | None], T],
    *,
    transfer_bytes: int | None = None,
) -> T:
    """``func(attempt_timeout)`` with retries on transient errors, all within the deadline.

    ``what`` says what is done ("read state for key 'x'"), ``where`` is the storage URL.
    A small call's attempt is bounded by the client timeouts (so a silent endpoint is
    retried within the deadline); an upload or download of ``transfer_bytes`` gets one more
    second of deadline per MiB and attempts bounded only by the deadline.
    """
    deadline, cap = _budget(policy, transfer_bytes)
    started, attempts = time.monotonic(), Attempts()
    try:
        return retry(
            func,
            attempts=policy.attempts,
            retryable=_retryable,
            pause=_pause,
            deadline=deadline,
            attempt_timeout=cap,
            on_retry=lambda failure, _: _log_retry(what, where, policy, failure),
            counter=attempts,
        )
    except StateStorageError:
        raise  # says what and where already (raised by a storage's own step)
    except DeadlineExpired as exc:
        raise _deadline_error(what, where, time.monotonic() - started, exc) from exc.last
    except Exception as exc:
        raise StateStorageError(
            f"cannot {what} at {where}: {describe_error(exc)}"
            + (f" (after {attempts.made} attempts)" if attempts.made > 1 else ""),
            transient=is_transient(exc),
        ) from exc


def _budget(policy: CallPolicy, transfer_bytes: int | None) -> tuple[float, float | None]:
    """Seconds the whole call may take (never past an :func:`operation_deadline`), and the
    cap on one attempt (``None``: a transfer, bounded only by the deadline)."""
    if transfer_bytes is None:
        deadline = policy.deadline
        cap: float | None = policy.connect_timeout + policy.read_timeout + 1.0
    else:
        deadline = policy.deadline + transfer_bytes / _TRANSFER_BYTES_PER_SECOND
        cap = None
    scoped = _DEADLINE.get()
    if scoped is not None:
        deadline = min(deadline, scoped - time.monotonic())
    return deadline, cap


def _retryable(exc: Exception) -> bool:
    return not isinstance(exc, StateStorageError) and is_transient(exc)


def _pause(failure: Failure) -> float:
    return min(2.0, 0.2 * 2.0 ** (failure.attempt - 1))


def _log_retry(what: str, where: str, policy: CallPolicy, failure: Failure) -> None:
    log.warning(
        "cannot %s at %s: %s; retrying (attempt %d of %d, %.0fs left)",
        what,
        where,
        describe_error(failure.error),
        failure.attempt + 1,
        policy.attempts,
        failure.left or 0.0,
    )


def _deadline_error(
    what: str, where: str, elapsed: float, expired: DeadlineExpired
) -> StorageDeadlineError:
    last = f"; last: {describe_error(expired.last)}" if expired.last is not None else ""
    return StorageDeadlineError(
        f"cannot {what} at {where}: no answer within the deadline "
        f"({elapsed:.0f}s, {expired.attempts} attempt(s){last})",
        transient=True,
    )
