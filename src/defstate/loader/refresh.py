"""Refresh runs: calling ``write_state_to_path`` and publishing the result."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.components.state_backed import RefreshNotes, StateBackedComponent
from defstate.definitions import AssetKey
from defstate.errors import (
    AlreadyRefreshingError,
    DefstateError,
    RefreshRejectedError,
    RefreshTimeoutError,
    UnknownStateKeyError,
    is_transient,
)
from defstate.loader.discovery import ComponentInstance, LoadProblem
from defstate.loader.storage import StateStorages
from defstate.state_storage.base import StateStorage, require_written
from defstate.state_storage.management import ManagementType
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateVersion, utc_iso

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.connection import Connection


@attrs.frozen
class RefreshTarget:
    """One key to refresh: the component instance that writes it and where it goes."""

    key: str
    instance: ComponentInstance
    storage: StateStorage

    @property
    def component(self) -> StateBackedComponent:
        component = self.instance.component
        assert isinstance(component, StateBackedComponent)
        return component

    @property
    def management_type(self) -> ManagementType:
        return self.component.defs_state.management_type


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

    ``status``: ``succeeded``, ``failed``, ``rejected`` (the guard refused it), ``timed_out``,
    ``joined`` (another process refreshed the key meanwhile; its result is reported) or
    ``already_refreshing`` (``wait=False`` and another refresh holds the key).
    ``warnings`` are what the component noted about the state it wrote (see its record).
    """

    key: str
    management_type: ManagementType
    component: str
    seconds: float
    version: StateVersion | None = None
    error: str | None = None
    status: str = "succeeded"
    attempts: int = 1
    version_id: str | None = None
    warnings: tuple[str, ...] = ()

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


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt could succeed: defstate's errors say so themselves (never for
    invalid configuration, a ``TerminalRefreshError`` or a guard rejection); a component's
    own exception is retried unless it means denied access or missing credentials."""
    return is_transient(exc, unknown=True)


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
    import asyncio  # only refreshes need these; keep `import defstate` light
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


def _asset_keys(target: RefreshTarget, state_path: Path | None) -> set[AssetKey]:
    context = attrs.evolve(target.instance.context, state_path=state_path)
    defs = target.component.build_defs_from_state(context, state_path)
    return set(defs.asset_keys)


def _check_guard(target: RefreshTarget, guard: RefreshGuard, pending: Path) -> None:
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


def _write_state(component: StateBackedComponent, state_path: Path) -> None:
    """``write_state_to_path`` in a worker process (a top-level function: it is pickled)."""
    _complete(component.write_state_to_path(state_path), None)


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
    component: StateBackedComponent, state_path: Path, connection: Connection
) -> None:
    """Child side of :func:`_write_in_own_process`: report success or the error."""
    try:
        _write_state(component, state_path)
        connection.send(None)
    except BaseException as exc:
        try:
            connection.send(exc)
        except Exception:  # not picklable: send its text
            connection.send(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _write_in_own_process(
    component: StateBackedComponent, state_path: Path, timeout: float
) -> None:
    """A process refresh with a timeout gets a process of its own, so that a refresh that
    hangs can be killed (a pool worker cannot be, and would keep the pool busy)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_write_state_and_report, args=(component, state_path, sender), daemon=True
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


def _writer(
    target: RefreshTarget, state_path: Path, timeout: float | None
) -> tuple[Callable[[], object], float | None]:
    """What runs ``write_state_to_path``, and the timeout left for the caller to enforce."""
    component = target.component
    if component.defs_state.executor == "process":
        if timeout is not None:
            return lambda: _write_in_own_process(component, state_path, timeout), None
        return lambda: _process_pool().submit(_write_state, component, state_path).result(), None
    return lambda: component.write_state_to_path(state_path), timeout


def _attempt(
    target: RefreshTarget, timeout: float | None, guard: RefreshGuard | None
) -> tuple[StateVersion, RefreshNotes]:
    instance = target.instance
    metadata = {"component_type": instance.type_name, "component": instance.source}
    with target.storage.begin_write(target.key, metadata) as write:
        _call_with_timeout(*_writer(target, write.path, timeout))
        require_written(write.path, target.key)
        # read here, in this process, whichever executor wrote the state
        notes = target.component.refresh_notes(write.path)
        if guard is not None:
            _check_guard(target, guard, write.path)
        return write.commit(), notes


def _outcome(error: BaseException | None) -> tuple[str, str | None]:
    """The status a refresh ended with, and its error message."""
    if error is None:
        return "succeeded", None
    message = str(error) if isinstance(error, DefstateError) else f"{type(error).__name__}: {error}"
    if isinstance(error, RefreshRejectedError):
        return "rejected", message
    if isinstance(error, RefreshTimeoutError):
        return "timed_out", message
    return "failed", message


def _joined_result(target: RefreshTarget, requested_at: str, start: float) -> RefreshResult | None:
    """After waiting for another refresh of the key: its result, if it finished meanwhile."""
    try:
        records = target.storage.records(target.key, limit=5)
    except DefstateError:
        return None
    for record in records:
        if record.finished_at >= requested_at:
            return RefreshResult(
                target.key,
                target.management_type,
                target.instance.source,
                time.perf_counter() - start,
                error=None if record.status == "succeeded" else record.error,
                status="joined",
                attempts=0,
                version_id=record.version,
            )
    return None


def run_refresh(target: RefreshTarget, options: RefreshOptions | None = None) -> RefreshResult:
    """Refresh one key: single-flight, retries, timeout, guard, then atomic publication.

    Any exception of the component becomes the result's ``error``; the previous state stays.
    Every attempt that ran leaves a refresh record; a record that cannot be written is logged.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    options = options or RefreshOptions()
    config = target.component.defs_state
    retry = options.retry or config.retry
    timeout = options.timeout if options.timeout is not None else config.timeout
    guard = options.guard or config.guard
    start = time.perf_counter()
    requested_at = utc_iso()
    attempts = 0
    version: StateVersion | None = None
    notes = RefreshNotes()
    error: BaseException | None = None
    try:
        ttl = max(60.0, 3 * (timeout or 0))
        with target.storage.refresh_lock(target.key, wait=options.wait, ttl=ttl) as waited:
            if waited:
                joined = _joined_result(target, requested_at, start)
                if joined is not None:
                    return joined
            started_at = utc_iso()
            try:
                for attempt in Retrying(
                    stop=stop_after_attempt(retry.attempts),
                    wait=retry.tenacity_wait(),
                    retry=retry_if_exception(is_retryable),
                    reraise=True,
                ):
                    with attempt:
                        attempts += 1
                        version, notes = _attempt(target, timeout, guard)
            except Exception as exc:
                error = exc
            _write_record(target, options.trigger, started_at, attempts, version, error, notes)
    except AlreadyRefreshingError:
        return RefreshResult(
            target.key,
            target.management_type,
            target.instance.source,
            time.perf_counter() - start,
            status="already_refreshing",
            attempts=0,
        )
    except Exception as exc:  # the lock itself failed (e.g. storage unreachable)
        error = exc
    status, message = _outcome(error)
    return RefreshResult(
        target.key,
        target.management_type,
        target.instance.source,
        time.perf_counter() - start,
        version=version,
        error=message,
        status=status,
        attempts=attempts,
        warnings=notes.warnings,
    )


def _write_record(
    target: RefreshTarget,
    trigger: str,
    started_at: str,
    attempts: int,
    version: StateVersion | None,
    error: BaseException | None,
    notes: RefreshNotes,
) -> None:
    status, message = _outcome(error)
    record = RefreshRecord(
        key=target.key,
        trigger=trigger,
        started_at=started_at,
        finished_at=utc_iso(),
        attempts=attempts,
        status=status,
        error=message,
        version=version.version if version else None,
        bytes=version.size if version else None,
        warnings=notes.warnings,
        counts=notes.counts,
    )
    try:
        target.storage.write_record(record)
    except Exception as exc:  # a record must never fail the refresh it describes
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

    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(concurrency, len(targets)))
    if workers == 1:
        return [one(t) for t in targets]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="defstate-refresh") as pool:
        return list(pool.map(one, targets))


@attrs.frozen
class KeyGroup:
    """All component instances that share one state key; the first one writes it."""

    key: str
    instances: tuple[ComponentInstance, ...]

    @property
    def writer(self) -> ComponentInstance:
        return self.instances[0]

    @property
    def management_type(self) -> ManagementType:
        component = self.writer.component
        assert isinstance(component, StateBackedComponent)
        return component.defs_state.management_type

    @property
    def refresh_if_dev(self) -> bool:
        return any(
            isinstance(i.component, StateBackedComponent) and i.component.defs_state.refresh_if_dev
            for i in self.instances
        )


def group_by_key(
    instances: Iterable[ComponentInstance],
) -> tuple[dict[str, KeyGroup], list[LoadProblem]]:
    """Group state-backed instances by key; instances of one key must agree on its strategy."""
    grouped: dict[str, list[ComponentInstance]] = {}
    errors: list[LoadProblem] = []
    for instance in instances:
        key = instance.state_key
        if key is None:
            continue
        members = grouped.setdefault(key, [])
        if members:
            first = members[0].component
            this = instance.component
            assert isinstance(first, StateBackedComponent)
            assert isinstance(this, StateBackedComponent)
            if first.defs_state.management_type != this.defs_state.management_type:
                errors.append(
                    LoadProblem(
                        f"state key {key!r} is used with management_type "
                        f"{this.defs_state.management_type.value} here and "
                        f"{first.defs_state.management_type.value} by {members[0].source}",
                        instance.location,
                        instance.source,
                        key,
                    )
                )
                continue
        members.append(instance)
    return {k: KeyGroup(k, tuple(v)) for k, v in grouped.items()}, errors


def key_matches(key: str, pattern: str) -> bool:
    """Glob match where only ``*`` and ``?`` are wildcards: brackets are common in keys
    (``DbtProject[shop]``), so ``List[*]`` means the literal ``List[`` + anything + ``]``."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, key, flags=re.DOTALL) is not None


def select_groups(
    groups: dict[str, KeyGroup],
    keys: Sequence[str] = (),
    management_types: Sequence[ManagementType] = (),
) -> list[KeyGroup]:
    """The groups named by ``keys`` (exact names or glob patterns) and ``management_types``.

    Raises ``UnknownStateKeyError`` listing the known keys when a name matches nothing.
    """
    selected = list(groups.values())
    if keys:
        unknown = [
            k for k in keys if k not in groups and not any(key_matches(g, k) for g in groups)
        ]
        if unknown:
            known = ", ".join(sorted(groups)) or "none"
            raise UnknownStateKeyError(
                f"unknown state {'key' if len(unknown) == 1 else 'keys'}: {', '.join(unknown)} "
                f"(known keys: {known})"
            )
        selected = [g for g in selected if any(key_matches(g.key, k) for k in keys)]
    if management_types:
        selected = [g for g in selected if g.management_type in management_types]
    return selected


def resolve_storages(
    groups: Iterable[KeyGroup], storages: StateStorages
) -> tuple[dict[str, StateStorage], list[LoadProblem]]:
    """Each group's storage by key; a storage that cannot be set up is an error of its key."""
    resolved: dict[str, StateStorage] = {}
    errors: list[LoadProblem] = []
    for group in groups:
        try:
            resolved[group.key] = storages.get(group.management_type, group.writer.source)
        except DefstateError as exc:
            errors.append(LoadProblem.for_instance(group.writer, exc))
    return resolved, errors


def plan_targets(
    groups: Iterable[KeyGroup], storages: Mapping[str, StateStorage]
) -> list[RefreshTarget]:
    """A refresh target for each group whose storage could be set up."""
    return [RefreshTarget(g.key, g.writer, storages[g.key]) for g in groups if g.key in storages]
