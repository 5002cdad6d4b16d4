"""The one retry loop: a refresh's retry policy, an HTTP fetch and every storage call use it.

``retry(attempt, ...)`` calls ``attempt(seconds_left)`` until it returns, retrying what
``retryable`` accepts, at most ``attempts`` times, pausing ``pause(failure)`` seconds between
attempts. With a ``deadline`` (seconds from now) every attempt is told what is left of it, no
pause outlasts it, and once it has passed :class:`DeadlineExpired` ends the loop. Otherwise
the last error propagates unchanged. It imports nothing of defstate above ``errors``, so
``state_storage`` may use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import attrs

from defstate.errors import DefstateError

T = TypeVar("T")

#: a pause never takes the last moments of a deadline: an attempt still fits after it
_DEADLINE_MARGIN = 0.1


@attrs.frozen
class Failure:
    """One failed attempt, as a pause or a retry hook sees it."""

    attempt: int  # 1 for the first attempt
    error: Exception
    left: float | None  # seconds until the deadline; None without one


class DeadlineExpired(DefstateError):
    """The loop's deadline passed; ``attempts`` were made, the last failing with ``last``
    (``None`` when the deadline had passed before the first attempt). Transient: the same
    operation may finish in time later. Callers usually say what the operation was."""

    transient = True

    def __init__(self, attempts: int, last: Exception | None) -> None:
        super().__init__(f"no answer within the deadline ({attempts} attempt(s))")
        self.attempts = attempts
        self.last = last


@attrs.define
class Attempts:
    """How many attempts one :func:`retry` call made (read it after the loop ended)."""

    made: int = 0


def retry(
    attempt: Callable[[float | None], T],
    *,
    attempts: int,
    retryable: Callable[[Exception], bool],
    pause: Callable[[Failure], float],
    deadline: float | None = None,
    attempt_timeout: float | None = None,
    on_retry: Callable[[Failure, float], None] | None = None,
    counter: Attempts | None = None,
) -> T:
    """``attempt(seconds)``, retried as the module docstring says. ``seconds`` is what is
    left of the deadline, at most ``attempt_timeout`` (``None`` when neither is set).
    ``on_retry(failure, pause)`` runs before each pause; ``counter`` counts the attempts."""
    end = None if deadline is None else time.monotonic() + deadline
    made = 0
    while True:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            _count(counter, made)
            raise DeadlineExpired(made, None)
        made += 1
        try:
            result = attempt(_bounded(left, attempt_timeout))
        except Exception as exc:
            _count(counter, made)
            seconds = _next_pause(exc, made, end, attempts, retryable, pause, on_retry)
            time.sleep(seconds)
            continue
        _count(counter, made)
        return result


def _next_pause(
    exc: Exception,
    made: int,
    end: float | None,
    attempts: int,
    retryable: Callable[[Exception], bool],
    pause: Callable[[Failure], float],
    on_retry: Callable[[Failure, float], None] | None,
) -> float:
    """How long to pause after failed attempt ``made``; re-raises when the loop ends."""
    failure = Failure(made, exc, None if end is None else end - time.monotonic())
    if not retryable(exc):
        raise exc
    if failure.left is not None and failure.left <= 0:
        raise DeadlineExpired(made, exc) from exc
    if made >= attempts:
        raise exc
    seconds = _bounded_pause(pause(failure), failure.left)
    if on_retry is not None:
        on_retry(failure, seconds)
    return seconds


def _count(counter: Attempts | None, made: int) -> None:
    if counter is not None:
        counter.made = made


def _bounded(left: float | None, cap: float | None) -> float | None:
    if cap is None or left is None:
        return left if cap is None else cap
    return left if left < cap else cap


def _bounded_pause(seconds: float, left: float | None) -> float:
    if left is None:
        return max(0.0, seconds)
    return max(0.0, min(seconds, left - _DEADLINE_MARGIN))
