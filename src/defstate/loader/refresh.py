"""Refresh runs: calling ``write_state_to_path`` and publishing the result."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from fnmatch import fnmatchcase

import attrs

from defstate.components.state_backed import StateBackedComponent
from defstate.errors import DefstateError, UnknownStateKeyError
from defstate.loader.discovery import ComponentInstance, LoadError
from defstate.loader.storage import StateStorages
from defstate.state_storage.base import StateStorage
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateVersion


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
class RefreshResult:
    """The outcome of refreshing one key."""

    key: str
    management_type: ManagementType
    component: str
    seconds: float
    version: StateVersion | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def size(self) -> int | None:
        return self.version.size if self.version else None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "management_type": self.management_type.value,
            "component": self.component,
            "ok": self.ok,
            "version": self.version.version if self.version else None,
            "created_at": self.version.created_at if self.version else None,
            "bytes": self.size,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


RefreshListener = Callable[[str, RefreshResult | None], None]
"""Called with ``(key, None)`` when a key starts and ``(key, result)`` when it ends."""


def run_refresh(target: RefreshTarget) -> RefreshResult:
    """Refresh one key: write into a pending location, then publish atomically.

    Any exception of the component becomes the result's ``error``; the previous state stays.
    """
    import asyncio  # only refreshes need these; keep `import defstate` light
    import inspect

    start = time.perf_counter()
    try:
        metadata = {
            "component_type": target.instance.type_name,
            "component": target.instance.source,
        }
        with target.storage.begin_write(target.key, metadata) as write:
            outcome = target.component.write_state_to_path(write.path)
            if inspect.isawaitable(outcome):
                asyncio.run(_await(outcome))
            version = write.commit()
    except Exception as exc:
        message = str(exc) if isinstance(exc, DefstateError) else f"{type(exc).__name__}: {exc}"
        return RefreshResult(
            target.key,
            target.management_type,
            target.instance.source,
            time.perf_counter() - start,
            error=message,
        )
    return RefreshResult(
        target.key,
        target.management_type,
        target.instance.source,
        time.perf_counter() - start,
        version=version,
    )


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


def run_refreshes(
    targets: Sequence[RefreshTarget],
    concurrency: int,
    listener: RefreshListener | None = None,
) -> list[RefreshResult]:
    """Refresh every target, at most ``concurrency`` at a time; results in target order."""
    if not targets:
        return []

    def one(target: RefreshTarget) -> RefreshResult:
        if listener:
            listener(target.key, None)
        result = run_refresh(target)
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
) -> tuple[dict[str, KeyGroup], list[LoadError]]:
    """Group state-backed instances by key; instances of one key must agree on its strategy."""
    grouped: dict[str, list[ComponentInstance]] = {}
    errors: list[LoadError] = []
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
                    LoadError(
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
            k for k in keys if k not in groups and not any(fnmatchcase(g, k) for g in groups)
        ]
        if unknown:
            known = ", ".join(sorted(groups)) or "none"
            raise UnknownStateKeyError(
                f"unknown state key(s): {', '.join(unknown)} (known keys: {known})"
            )
        selected = [g for g in selected if any(g.key == k or fnmatchcase(g.key, k) for k in keys)]
    if management_types:
        selected = [g for g in selected if g.management_type in management_types]
    return selected


def plan_targets(
    groups: Iterable[KeyGroup], storages: StateStorages
) -> tuple[list[RefreshTarget], list[LoadError]]:
    """Pair each group with its storage; a storage that cannot be set up is an error."""
    targets: list[RefreshTarget] = []
    errors: list[LoadError] = []
    for group in groups:
        try:
            storage = storages.get(group.management_type, group.writer.source)
        except DefstateError as exc:
            errors.append(
                LoadError(exc.message, group.writer.location, group.writer.source, group.key)
            )
            continue
        targets.append(RefreshTarget(group.key, group.writer, storage))
    return targets, errors
