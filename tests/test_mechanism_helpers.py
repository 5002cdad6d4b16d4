"""The one helper per mechanism: keyed diff and retry loop."""

from __future__ import annotations

import pytest

from defstate.components.policies import RetryPolicy
from defstate.keyed_diff import diff_by_key


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
