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
    on_retry: Callable[[Failure, float], None] | None = None,
    counter: Attempts | None = None,
) -> T:
    """``attempt(seconds_left)``, retried as the module docstring says; ``on_retry(failure,
    pause)`` runs before each pause, ``counter`` counts the attempts made."""
    counter = counter if counter is not None else Attempts()
    end = None if deadline is None else time.monotonic() + deadline
    while True:
        left = _left(end)
        if left is not None and left <= 0:
            raise DeadlineExpired(counter.made, None)
        counter.made += 1
        try:
            return attempt(left)
        except Exception as exc:
            failure = Failure(counter.made, exc, _left(end))
            if not retryable(exc):
                raise
            if failure.left is not None and failure.left <= 0:
                raise DeadlineExpired(counter.made, exc) from exc
            if counter.made >= attempts:
                raise
            seconds = _bounded_pause(pause(failure), failure.left)
            if on_retry is not None:
                on_retry(failure, seconds)
            time.sleep(seconds)


def _left(end: float | None) -> float | None:
    return None if end is None else end - time.monotonic()


def _bounded_pause(seconds: float, left: float | None) -> float:
    if left is None:
        return max(0.0, seconds)
    return max(0.0, min(seconds, left - _DEADLINE_MARGIN))
