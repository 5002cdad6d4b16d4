"""Refresh policies set per component (``defs_state:``), per schedule or on the command line.

The retry vocabulary is dlt's: ``none``; ``fixed`` (wait ``min`` seconds between attempts);
``backoff`` (exponential: ``multiplier * 2**n`` seconds, clamped to ``[min, max]``), each with
``max_attempts`` attempts in all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

import attrs

if TYPE_CHECKING:  # the loop itself is imported by the refreshes that retry, not by loads
    from defstate.retrying import Failure

RetryType = Literal["none", "fixed", "backoff"]
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often, and how patiently, a failed operation is retried.

    ``type`` is dlt's name for the strategy (``none | fixed | backoff``, default ``backoff``);
    ``kind`` is accepted as an alias. After construction both hold the strategy.
    """

    type: RetryType | None = None
    kind: RetryType | None = attrs.field(default=None, metadata={"alias_of": "type"})
    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    multiplier: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    min: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        if self.type is not None and self.kind is not None and self.type != self.kind:
            raise ValueError(
                f"retry type {self.type!r} and kind {self.kind!r} disagree (kind is an alias "
                "of type: set one)"
            )
        strategy = self.type or self.kind or "backoff"
        object.__setattr__(self, "type", strategy)
        object.__setattr__(self, "kind", strategy)
        if self.min > self.max:
            raise ValueError(f"retry min ({self.min:g}) is larger than max ({self.max:g})")

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(type="none")

    @property
    def strategy(self) -> RetryType:
        """``none``, ``fixed`` or ``backoff``."""
        return self.type or "backoff"

    @property
    def attempts(self) -> int:
        """How many attempts in all (1 for ``type: none``)."""
        return 1 if self.strategy == "none" else self.max_attempts

    def pause(self, failure: Failure) -> float:
        """Seconds to wait after ``failure`` (its ``attempt``-th attempt) before the next."""
        if self.strategy == "backoff":
            seconds = self.multiplier * 2.0 ** (failure.attempt - 1)
            return max(self.min, min(seconds, self.max))
        if self.strategy == "fixed":
            return self.min
        return 0.0

    def call(
        self,
        attempt: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool],
        pause: Callable[[Failure], float] | None = None,
    ) -> T:
        """``attempt()``, retried as this policy says while it raises what ``retryable``
        accepts; the last error propagates. ``pause`` replaces the policy's pauses (e.g. to
        honour a server's ``Retry-After``). The loop is :func:`defstate.retrying.retry`."""
        from defstate.retrying import retry

        return retry(
            lambda _left: attempt(),
            attempts=self.attempts,
            retryable=retryable,
            pause=pause or self.pause,
        )


@attrs.frozen(kw_only=True)
class RefreshGuard:
    """Refuse to publish a refresh that drops too many of the previous version's assets.

    ``max_removed_fraction: 0.5`` rejects a new state whose definitions lack more than half of
    the asset keys the current state defines (an API answering with an empty list must not
    wipe out a production code location).
    """

    max_removed_fraction: float = attrs.field(
        validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
