"""The refresh of one key, as a chain of single-purpose steps.

:func:`run_refresh` → :func:`_refresh_holding_lock` (the key's single-flight lock) →
:func:`_join_running_refresh` (someone else just refreshed it) → :func:`_refresh_with_retries`
→ :func:`_attempt` (write the state on its executor) → :func:`_check_guard` → publish
(``commit``) → :func:`_write_record`. Every step below the lock reports by returning or
raising; only :func:`run_refresh` turns exceptions into a :class:`RefreshResult`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.components.state_backed import RefreshNotes, StateBackedComponent
from defstate.definitions import AssetKey
from defstate.errors import (
    AlreadyRefreshingError,
    DefstateError,
    RefreshRejectedError,
    RefreshTimeoutError,
    is_transient,
)
from defstate.loader.discovery import ComponentInstance
from defstate.loader.groups import KeyGroup
from defstate.loader.refresh.executors import write_state
from defstate.loader.refresh.results import (
    RefreshListener,
    RefreshOptions,
    RefreshResult,
    RefreshStatus,
    outcome,
)
from defstate.loader.refresh.widening import run_widening
from defstate.state_storage.base import StateStorage, StateWrite, require_written
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion, utc_iso
from defstate.user_code import format_traceback


@attrs.frozen
class RefreshTarget:
    """One key to refresh: the component instance that writes it and where it goes."""

    key: str
    instance: ComponentInstance[StateBackedComponent]
    storage: StateStorage
    readers: tuple[ComponentInstance[StateBackedComponent], ...] = ()
    """The other instances of the key: the guard counts their assets too."""

    @property
    def component(self) -> StateBackedComponent:
        return self.instance.component

    @property
    def management_type(self) -> ManagementType:
        return self.component.defs_state.management_type


def plan_targets(
    groups: Iterable[KeyGroup], storages: Mapping[str, StateStorage]
) -> list[RefreshTarget]:
    """A refresh target for each group whose storage could be set up."""
    return [
        RefreshTarget(g.key, g.writer, storages[g.key], g.instances[1:])
        for g in groups
        if g.key in storages
    ]


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt could succeed: defstate's errors say so themselves (never for
    invalid configuration, a ``TerminalRefreshError`` or a guard rejection); a component's
    own exception is retried unless it means denied access or missing credentials."""
    return is_transient(exc, unknown=True)


@attrs.define
class _Run:
    """One refresh of one key in progress: its settings and what it has done so far."""

    target: RefreshTarget
    options: RefreshOptions
    retry: RetryPolicy
    timeout: float | None
    guard: RefreshGuard | None
    start: float = attrs.field(factory=time.perf_counter)
    requested_at: str = attrs.field(factory=utc_iso)
    attempts: int = 0
    version: StateVersion | None = None
    notes: RefreshNotes = attrs.field(factory=RefreshNotes)
    unchanged: bool = False  # the last attempt's state equalled the latest version's

    @classmethod
    def begin(cls, target: RefreshTarget, options: RefreshOptions) -> _Run:
        config = target.component.defs_state
        timeout = options.timeout if options.timeout is not None else config.timeout
        retry = options.retry or config.retry
        return cls(target, options, retry, timeout, options.guard or config.guard)

    def result(
        self,
        status: RefreshStatus,
        error: str | None = None,
        version_id: str | None = None,
        traceback: str | None = None,
    ) -> RefreshResult:
        """The result so far, ending with ``status``."""
        target = self.target
        return RefreshResult(
            target.key,
            target.management_type,
            target.instance.source,
            time.perf_counter() - self.start,
            version=self.version,
            error=error,
            status=status,
            attempts=self.attempts,
            version_id=version_id,
            warnings=self.notes.warnings,
            traceback=traceback,
        )

    def outcome(self, error: BaseException | None) -> tuple[RefreshStatus, str | None]:
        """:func:`outcome`, with ``unchanged`` for a publication of identical bytes."""
        status, message = outcome(error)
        if status is RefreshStatus.SUCCEEDED and self.unchanged:
            status = RefreshStatus.UNCHANGED
        return status, message

    def finish(self, error: BaseException | None) -> RefreshResult:
        """The result of a run that raised ``error`` (or nothing); the traceback of a
        component's own error is kept for ``--debug``."""
        status, message = self.outcome(error)
        user_error = error is not None and not isinstance(error, DefstateError)
        return self.result(
            status, message, traceback=format_traceback(error) if user_error else None
        )


def run_refresh(target: RefreshTarget, options: RefreshOptions | None = None) -> RefreshResult:
    """Refresh one key: single-flight, retries, timeout, guard, then atomic publication.

    Any exception of the component becomes the result's ``error``; the previous state stays.
    Every attempt that ran leaves a refresh record; a record that cannot be written is logged.
    """
    run = _Run.begin(target, options or RefreshOptions())
    try:
        return _refresh_holding_lock(run)
    except AlreadyRefreshingError:
        return run.result(RefreshStatus.SKIPPED)
    except Exception as exc:  # the lock itself failed (e.g. storage unreachable)
        return run.finish(exc)


def _refresh_holding_lock(run: _Run) -> RefreshResult:
    """Hold the key's lock (``ttl`` outlasts a slow attempt) for the rest of the chain."""
    target = run.target
    ttl = max(60.0, 3 * (run.timeout or 0))
    with target.storage.refresh_lock(target.key, wait=run.options.wait, ttl=ttl) as waited:
        joined = _join_running_refresh(run) if waited else None
        if joined is not None:
            return joined
        started_at = utc_iso()
        error = _refresh_with_retries(run)
        _write_record(run, started_at, error)
    return run.finish(error)


def _join_running_refresh(run: _Run) -> RefreshResult | None:
    """After waiting for another refresh of the key: its result, if it finished meanwhile."""
    try:
        records = run.target.storage.records(run.target.key, limit=5)
    except DefstateError:
        return None
    for record in records:
        if record.finished_at >= run.requested_at:
            failed = record.status not in (RefreshStatus.SUCCEEDED, RefreshStatus.UNCHANGED)
            return run.result(
                RefreshStatus.JOINED, record.error if failed else None, record.version
            )
    return None


def _refresh_with_retries(run: _Run) -> BaseException | None:
    """Attempts as the retry policy allows; the last error, or ``None`` once one published."""

    def attempt() -> None:
        run.attempts += 1
        run.version, run.notes, run.unchanged = _attempt(run.target, run.timeout, run.guard)

    try:
        run.retry.call(attempt, retryable=is_retryable)
    except Exception as exc:
        return exc
    return None


def _attempt(
    target: RefreshTarget, timeout: float | None, guard: RefreshGuard | None
) -> tuple[StateVersion, RefreshNotes, bool]:
    """Write the state into a pending location, check it, and publish it (within what is
    left of ``timeout``); also returns whether it was unchanged (nothing published)."""
    instance = target.instance
    metadata = {"component_type": instance.type_name, "component": instance.source}
    started = time.monotonic()
    with target.storage.begin_write(target.key, metadata) as write:
        write_state(target.component, write.path, timeout)
        require_written(write.path, target.key)
        # read here, in this process, whichever executor wrote the state
        notes = target.component.refresh_notes(write.path)
        if guard is not None:
            _check_guard(target, guard, write.path)
        left = None if timeout is None else timeout - (time.monotonic() - started)
        return _publish(write, timeout, left), notes, write.unchanged


def _publish(write: StateWrite, timeout: float | None, left: float | None) -> StateVersion:
    """``write.commit()``, its storage calls bounded by what is left of the timeout."""
    if left is None:  # no timeout: the storages' own deadlines bound their calls
        return write.commit()
    from defstate.state_storage.calls import StorageDeadlineError, operation_deadline

    try:
        with operation_deadline(left):
            return write.commit()
    except StorageDeadlineError as exc:
        raise RefreshTimeoutError(
            f"publishing did not finish within the {timeout:g}s timeout: {exc}"
        ) from exc


def _asset_keys(target: RefreshTarget, state_path: Path | None) -> set[AssetKey]:
    """The assets every instance of the key builds from ``state_path`` (as ``state diff``)."""
    instances = (target.instance, *target.readers)
    return {key for instance in instances for key in instance.defs_at(state_path).asset_keys}


def _check_guard(target: RefreshTarget, guard: RefreshGuard, pending: Path) -> None:
    """Refuse a state that drops more of the latest state's assets than the guard allows."""
    latest = target.storage.latest(target.key)
    if latest is None:
        return  # the first state: nothing to lose
    before = _asset_keys(target, target.storage.state_path(latest))
    if not before:
        return
    after = _asset_keys(target, pending)
    removed = before - after
    fraction = len(removed) / len(before)
    if fraction > guard.max_removed_fraction:
        sample = ", ".join(sorted(str(k) for k in removed)[:5])
        raise RefreshRejectedError(
            f"refused to publish: the new state drops {len(removed)} of {len(before)} assets "
            f"({fraction:.0%} > max_removed_fraction {guard.max_removed_fraction:g}; "
            f"e.g. {sample}); the previous version stays latest"
        )


def _write_record(run: _Run, started_at: str, error: BaseException | None) -> None:
    """Store the refresh record; a record must never fail the refresh it describes."""
    status, message = run.outcome(error)
    target, version = run.target, run.version
    record = RefreshRecord(
        key=target.key,
        trigger=run.options.trigger,
        started_at=started_at,
        finished_at=utc_iso(),
        attempts=run.attempts,
        status=status,
        error=message,
        version=version.version if version else None,
        bytes=version.size if version else None,
        warnings=run.notes.warnings,
        counts=run.notes.counts,
    )
    try:
        target.storage.write_record(record)
    except Exception as exc:
        import logging  # with traceback and textwrap, ~3 ms at start-up: only on this path

        logging.getLogger("defstate.refresh").warning(
            "could not write the refresh record of %s: %s", target.key, exc
        )


def run_refreshes(
    targets: Sequence[RefreshTarget],
    concurrency: int,
    listener: RefreshListener | None = None,
    options: RefreshOptions | None = None,
) -> list[RefreshResult]:
    """Refresh every target, at most ``concurrency`` at a time; results in target order."""
    if not targets:
        return []

    def one(target: RefreshTarget) -> RefreshResult:
        if listener:
            listener(target.key, None)
        result = run_refresh(target, options)
        if listener:
            listener(target.key, result)
        return result

    return run_widening(one, targets, min(concurrency, len(targets)))
