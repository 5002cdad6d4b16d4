"""What a refresh is asked to do and what it reports: options, statuses, results."""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.errors import RefreshRejectedError, RefreshTimeoutError
from defstate.redaction import redact_optional
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateVersion
from defstate.user_code import describe_exception


class RefreshStatus(enum.StrEnum):
    """How a refresh of one key ended (a ``str``: records and JSON carry the value)."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"  # the latest version's bytes again: nothing published, no move
    FAILED = "failed"
    REJECTED = "rejected"  # the guard refused the new state
    TIMED_OUT = "timed_out"
    JOINED = "joined"  # another process refreshed the key meanwhile; its result is reported
    SKIPPED = "skipped"  # wait=False and another refresh holds the key (not a failure)


@attrs.frozen
class RefreshOptions:
    """How refreshes run; ``None`` fields fall back to each component's ``defs_state``."""

    trigger: str = "api"
    retry: RetryPolicy | None = None
    timeout: float | None = None
    guard: RefreshGuard | None = None
    wait: bool = True  # single-flight: wait for a running refresh of the key, or skip it


@attrs.frozen
class RefreshResult:
    """The outcome of refreshing one key.

    ``status`` is a :class:`RefreshStatus`.
    ``warnings`` are what the component noted about the state it wrote (see its record).
    """

    key: str
    management_type: ManagementType
    component: str
    seconds: float
    version: StateVersion | None = None
    error: str | None = attrs.field(default=None, converter=redact_optional)
    status: RefreshStatus = RefreshStatus.SUCCEEDED
    attempts: int = 1
    version_id: str | None = None
    warnings: tuple[str, ...] = ()
    # the traceback into the user's code when the component raised (shown by --debug)
    traceback: str | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def size(self) -> int | None:
        return self.version.size if self.version else None

    @property
    def published(self) -> str | None:
        """The version this refresh (or the one it joined) published."""
        return self.version.version if self.version else self.version_id

    def to_json_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "management_type": self.management_type.value,
            "component": self.component,
            "ok": self.ok,
            "status": self.status,
            "attempts": self.attempts,
            "version": self.published,
            "created_at": self.version.created_at if self.version else None,
            "bytes": self.size,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "warnings": list(self.warnings),
        }


RefreshListener = Callable[[str, RefreshResult | None], None]
"""Called with ``(key, None)`` when a key starts and ``(key, result)`` when it ends."""


def outcome(error: BaseException | None) -> tuple[RefreshStatus, str | None]:
    """The status a refresh that raised ``error`` (or nothing) ended with, and its message."""
    if error is None:
        return RefreshStatus.SUCCEEDED, None
    message = describe_exception(error)  # redacted; a user's error names where it was raised
    if isinstance(error, RefreshRejectedError):
        return RefreshStatus.REJECTED, message
    if isinstance(error, RefreshTimeoutError):
        return RefreshStatus.TIMED_OUT, message
    return RefreshStatus.FAILED, message
