"""The one helper per mechanism: keyed diff and the retry loop (``defstate.retrying``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from defstate.components.policies import RetryPolicy
from defstate.keyed_diff import diff_by_key
from defstate.retrying import Attempts, DeadlineExpired, Failure, retry


def test_diff_by_key_names_added_removed_and_changed_sorted() -> None:
    before = {"b": 1, "a": 1, "gone": 0}
    after = {"b": 2, "a": 1, "new2": 0, "new1": 0}
    changes = diff_by_key(before, after)
    assert changes == (("new1", "new2"), ("gone",), ("b",))
    assert changes.changed == ("b",)


def test_retry_policy_call_retries_only_what_is_retryable() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "done"

    policy = RetryPolicy(type="fixed", max_attempts=3, min=0.0)
    assert policy.call(flaky, retryable=lambda e: isinstance(e, ConnectionError)) == "done"
    assert len(calls) == 3

    calls.clear()
    with pytest.raises(ConnectionError):
        policy.call(flaky, retryable=lambda e: False)
    assert len(calls) == 1

    calls.clear()
    with pytest.raises(ConnectionError):
        RetryPolicy.none().call(flaky, retryable=lambda e: True)
    assert len(calls) == 1

    def always() -> str:
        raise ValueError("never")

    with pytest.raises(ValueError, match="never"):
        policy.call(always, retryable=lambda e: True)


def test_retry_policy_pauses_as_dlt_says() -> None:
    failure = lambda n: Failure(n, ValueError(), None)  # noqa: E731
    backoff = RetryPolicy(type="backoff", multiplier=1.0, min=0.5, max=3.0)
    assert [backoff.pause(failure(n)) for n in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 3.0]
    assert RetryPolicy(type="backoff", multiplier=0.1, min=0.5).pause(failure(1)) == 0.5
    assert RetryPolicy(type="fixed", min=0.7).pause(failure(5)) == 0.7
    assert RetryPolicy.none().pause(failure(1)) == 0.0


def test_one_retry_loop_bounds_attempts_and_pauses_by_its_deadline() -> None:
    """The loop storage calls use: each attempt is told what is left, no pause outlasts the
    deadline, and a transient failure past it ends with DeadlineExpired (the last error)."""
    seen: list[float | None] = []
    pauses: list[float] = []

    def slow_failure(left: float | None) -> str:
        seen.append(left)
        time.sleep(0.05)
        raise ConnectionError("no answer")

    counter = Attempts()
    with pytest.raises(DeadlineExpired) as caught:
        retry(
            slow_failure,
            attempts=100,
            retryable=lambda e: True,
            pause=lambda f: 10.0,  # asks for more than the deadline allows
            deadline=0.5,
            on_retry=lambda f, seconds: pauses.append(seconds),
            counter=counter,
        )
    assert isinstance(caught.value.last, ConnectionError) and caught.value.transient
    assert counter.made == caught.value.attempts == len(seen) >= 2
    assert all(s is not None and 0 < s <= 0.5 for s in seen)
    assert pauses and all(p < 0.5 for p in pauses)

    with pytest.raises(DeadlineExpired) as expired:  # no time left: no attempt at all
        retry(slow_failure, attempts=3, retryable=lambda e: True, pause=lambda f: 0, deadline=0)
    assert expired.value.attempts == 0 and expired.value.last is None

    with pytest.raises(KeyError):  # not retryable: the error itself, at once
        retry(_raise(KeyError("x")), attempts=5, retryable=lambda e: False, pause=lambda f: 0)
    assert retry(lambda left: left, attempts=1, retryable=lambda e: True, pause=lambda f: 0) is None


def _raise(exc: Exception) -> Callable[[float | None], None]:
    def attempt(left: float | None) -> None:
        raise exc

    return attempt
