"""The load algorithm: one build of the definitions (docs/architecture.md, "One load")."""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from defstate.components.component import Component
from defstate.definitions import (
    AssetCheckKey,
    AssetKey,
    AssetSpec,
    Definitions,
    merge_definitions,
)
from defstate.errors import StateVersionMissingError, UnknownStateKeyError, UsageError, is_transient
from defstate.json_text import COMPACT, json_array, json_object, json_string, json_value
from defstate.loader.discovery import (
    ComponentInstance,
    LoadProblem,
    discover_components,
)
from defstate.loader.gc_pause import paused_gc
from defstate.loader.groups import (
    KeyGroup,
    Shard,
    group_by_key,
    known_keys,
    resolve_storages,
    select_groups,
)
from defstate.loader.project import ProjectConfig, load_project_config
from defstate.loader.refresh import (
    RefreshListener,
    RefreshOptions,
    RefreshResult,
    plan_targets,
    run_refreshes,
)
from defstate.loader.storage import StateStorages
from defstate.state_storage.base import StateStorage
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateInfo, StateVersion

if TYPE_CHECKING:
    from defstate.state_storage.pins import LivePins


@attrs.frozen
class Project:
    """A project's configuration and components, before any state is read."""

    config: ProjectConfig
    instances: tuple[ComponentInstance[Component], ...]
    groups: Mapping[str, KeyGroup]
    errors: tuple[LoadProblem, ...]
    storages: StateStorages

    @property
    def keys(self) -> list[str]:
        return sorted(self.groups)

    def group(self, key: str) -> KeyGroup:
        """The instances using ``key``; ``UnknownStateKeyError`` lists the known keys."""
        group = self.groups.get(key)
        if group is None:
            raise UnknownStateKeyError(f"unknown state key: {key} ({known_keys(self.keys)})")
        return group

    def storage(self, group: KeyGroup) -> StateStorage:
        """The storage of ``group``'s key (created on first use)."""
        return self.storages.get(group.management_type, group.writer.source)

    def components_json(self) -> list[dict[str, Any]]:
        """One row per component instance: source, type, state key, management type."""
        rows = []
        for instance in self.instances:
            key = instance.state_key
            group = self.groups.get(key) if key is not None else None
            rows.append(
                {
                    "source": instance.source,
                    "type": instance.type_name,
                    "key": key,
                    "management_type": group.management_type.value if group else None,
                }
            )
        return rows


def open_project(project_root: Path | str | None = None) -> Project:
    """Read the configuration and build every component (no state is read or refreshed)."""
    config = load_project_config(project_root)
    with paused_gc:
        discovered = discover_components(config)
        groups, key_errors = group_by_key(discovered.instances)
    return Project(
        config,
        discovered.instances,
        groups,
        (*discovered.errors, *key_errors),
        StateStorages(config),
    )


@attrs.frozen
class LoadResult:
    """What one load produced.

    ``state_info`` is the pin: pass it to ``load_defs(..., state_info=...)`` in another process
    to see exactly the same state. ``errors`` holds one entry per problem; a broken component
    does not hide the others' definitions.
    """

    definitions: Definitions
    state_info: StateInfo
    errors: tuple[LoadProblem, ...]
    project: Project
    asset_sources: Mapping[AssetKey, str]
    refreshes: tuple[RefreshResult, ...] = ()
    check_sources: Mapping[AssetCheckKey, str] = attrs.field(factory=dict)
    timings: Mapping[str, float] = attrs.field(factory=dict)
    fingerprints: Mapping[str, str] = attrs.field(factory=dict)
    live_pins: LivePins | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json_dict(self) -> dict[str, Any]:
        """The ``defstate list defs --json`` document: assets, asset checks, the pin, errors."""
        assets = []
        source_of = self.asset_sources.get
        for spec in sorted(self.definitions.assets, key=_key_path):
            data = spec.to_json_dict()
            data["component"] = source_of(spec.key)
            assets.append(data)
        return {"assets": assets, **self._json_after_assets()}

    def to_json_text(self) -> str:
        """``to_json_dict()`` as compact JSON text, exactly ``json.dumps(doc, separators=(",",
        ":"))``, written one asset at a time instead of through a dict per asset (a listing
        of 20 000 assets is mostly this)."""
        return "".join(self.json_text_chunks())

    def json_text_chunks(self, assets_per_chunk: int = 500) -> Iterator[str]:
        """:meth:`to_json_text` in pieces of ``assets_per_chunk`` assets, to write as they
        come (a fresh process then never allocates the whole document at once)."""
        source_of = self.asset_sources.get
        specs = sorted(self.definitions.assets, key=_key_path)
        yield '{"assets":['
        for start in range(0, len(specs), assets_per_chunk):
            rows = [
                _asset_json_text(spec, source_of(spec.key))
                for spec in specs[start : start + assets_per_chunk]
            ]
            yield ("," if start else "") + ",".join(rows)
        yield "]," + COMPACT.encode(self._json_after_assets())[1:]  # {"asset_checks":...}

    def _json_after_assets(self) -> dict[str, Any]:
        checks = []
        # sorted by plain tuples: attrs' generated comparisons are slow for thousands of checks
        for check in sorted(self.definitions.asset_checks, key=lambda c: (c.asset.path, c.name)):
            data = check.to_json_dict()
            data["component"] = self.check_sources.get(check.key)
            checks.append(data)
        return {
            "asset_checks": checks,
            "state": self.state_info.to_json_dict(),
            "errors": [e.to_json_dict() for e in self.errors],
        }


def _asset_json_text(spec: AssetSpec, component: str | None) -> str:
    """``spec.to_json_dict()`` plus ``component``, as compact JSON text (same keys, order).
    Empty and ``None`` fields, most fields of most specs, are written without a call."""
    join = "/".join
    deps = ",".join([json_string(join(d.path)) for d in spec.deps]) if spec.deps else ""
    group, kinds, tags, owners = spec.group_name, spec.kinds, spec.tags, spec.owners
    metadata, description, code_version = spec.metadata, spec.description, spec.code_version
    return (
        f'{{"key":{json_string(join(spec.key.path))},"deps":[{deps}],'
        f'"group":{json_string(group) if type(group) is str else json_value(group)},'
        f'"kinds":{json_array(kinds) if kinds else "[]"},'
        f'"tags":{json_object(tags) if tags else "{}"},'
        f'"owners":{json_array(owners) if owners else "[]"},'
        f'"metadata":{"{}" if type(metadata) is dict and not metadata else json_object(metadata)},'
        f'"description":{"null" if description is None else json_value(description)},'
        f'"code_version":{"null" if code_version is None else json_value(code_version)},'
        f'"component":{json_string(component) if component else json_value(component)}}}'
    )


_key_path = operator.attrgetter("key.path")  # the sort key of assets (a C call per asset)


def load_defs(
    project_root: Path | str | None = None,
    *,
    dev: bool = False,
    state_info: StateInfo | None = None,
    concurrency: int | None = None,
    listener: RefreshListener | None = None,
    unchanged_since: Mapping[str, str] | None = None,
    trigger: str = "dev",
    strict: bool | None = None,
    keep_pinned: bool = False,
) -> LoadResult:
    """Build the project's definitions.

    Without ``state_info`` this is an *initialization* load: in ``dev`` mode it first refreshes
    every key with ``refresh_if_dev`` (concurrently, at most once per key); outside dev mode
    it never refreshes, except ``LEGACY_CODE_SERVER_SNAPSHOTS`` keys, which every
    initialization load refreshes. With ``state_info`` it is a *reconstruction*: it never
    refreshes, reads no latest pointer, and uses exactly the pinned versions.

    ``unchanged_since`` (dev mode) maps keys to the fingerprints of a previous load: keys whose
    fingerprint is unchanged are not refreshed again (see ``LoadResult.fingerprints``).
    ``trigger`` names who asked, in refresh records (``dev``, ``serve``, ``api``...).

    ``strict`` (default: ``DEFSTATE_DEPLOY=1`` is set) is for deployed artifacts: dev refreshes
    are off, and a state-backed key without state is an error naming the key and the command
    that creates it, instead of ``state_path=None``.

    ``keep_pinned`` records the load's versioned versions as live pin records, renewed until
    ``result.live_pins.close()`` (or the process ends): ``state gc`` then never deletes them.
    """
    if strict is None:
        strict = is_deploy()
    dev = dev and not strict
    plan = _plan(project_root, dev=dev, strict=strict)
    refreshes: tuple[RefreshResult, ...] = ()
    if state_info is None:
        options = RefreshOptions(trigger=trigger)
        refreshes = _refresh_due(plan, dev, unchanged_since, concurrency, listener, options)
    with paused_gc:  # no refresh runs from here on (see gc_pause)
        versions, state_paths = _resolve(plan, state_info)
        result = _build(plan, versions, state_paths, refreshes)
    if keep_pinned:
        result = attrs.evolve(result, live_pins=_keep_pinned(plan.storages, result.state_info))
    return result


@attrs.define
class _LoadPlan:
    """What one load works from: the project, each key's storage, the problems so far."""

    project: Project
    storages: dict[str, StateStorage]
    errors: list[LoadProblem]
    fingerprints: dict[str, str]
    strict: bool


def _plan(project_root: Path | str | None, *, dev: bool, strict: bool) -> _LoadPlan:
    """Read the project and set up the storage of every key (sorted: errors read in order)."""
    project = open_project(project_root)
    storages, storage_errors = resolve_storages(
        (group for _, group in sorted(project.groups.items())), project.storages
    )
    fingerprints: dict[str, str] = {}
    if dev:  # only dev reloads compare fingerprints: other loads never read or hash module files
        from defstate.loader.fingerprint import key_fingerprints

        fingerprints = key_fingerprints(project.groups)
    return _LoadPlan(project, storages, [*project.errors, *storage_errors], fingerprints, strict)


def _refresh_due(
    plan: _LoadPlan,
    dev: bool,
    unchanged_since: Mapping[str, str] | None,
    concurrency: int | None,
    listener: RefreshListener | None,
    options: RefreshOptions,
) -> tuple[RefreshResult, ...]:
    """An initialization load refreshes changed ``refresh_if_dev`` keys in dev mode, and the
    keys of storages refreshed at every initialization (snapshots live only in the pin)."""
    project, storages, fingerprints = plan.project, plan.storages, plan.fingerprints
    due = [
        g
        for g in project.groups.values()
        if (dev and g.refresh_if_dev and _changed(g.key, fingerprints, unchanged_since))
        or (g.key in storages and storages[g.key].refreshed_at_initialization)
    ]
    refreshes = run_refreshes(
        plan_targets(due, storages),
        concurrency or project.config.refresh_concurrency,
        listener,
        options,
    )
    plan.errors.extend(_refresh_errors(project, refreshes))
    for result in refreshes:
        if not result.ok:  # not refreshed: the next dev reload must try it again
            previous = (unchanged_since or {}).get(result.key)
            if previous is None:
                fingerprints.pop(result.key, None)
            else:
                fingerprints[result.key] = previous
    return tuple(refreshes)


def _resolve(
    plan: _LoadPlan, state_info: StateInfo | None
) -> tuple[dict[str, StateVersion], dict[str, Path | None]]:
    """The version each key uses and its local path (``None``: the key has no state)."""
    versions, state_paths, state_errors = _resolve_state(plan.project, plan.storages, state_info)
    plan.errors.extend(state_errors)
    if plan.strict:
        plan.errors.extend(_missing_state_errors(plan.project, plan.storages, state_paths))
    return versions, state_paths


def _build(
    plan: _LoadPlan,
    versions: dict[str, StateVersion],
    state_paths: Mapping[str, Path | None],
    refreshes: tuple[RefreshResult, ...],
) -> LoadResult:
    """Every instance's definitions from its key's state, merged into one ``Definitions``."""
    project, errors = plan.project, plan.errors
    parts: list[tuple[str, Definitions]] = []
    timings: dict[str, float] = {}
    for instance in project.instances:
        key = instance.state_key
        if key is not None and key not in project.groups:
            continue  # excluded by a key conflict, reported already
        if key is not None and key not in state_paths:
            continue  # its storage failed, reported already
        if plan.strict and key is not None and state_paths[key] is None:
            continue  # reported already: never build a deployed component from nothing
        state_path = state_paths.get(key) if key else None
        start = time.perf_counter()
        try:
            parts.append((instance.source, instance.defs_at(state_path)))
        except Exception as exc:
            errors.append(LoadProblem.for_instance(instance, exc))
        finally:
            timings[instance.source] = time.perf_counter() - start
    merged = merge_definitions(parts)
    errors.extend(LoadProblem(e.message) for e in merged.errors)
    return LoadResult(
        definitions=merged.definitions,
        state_info=StateInfo(versions),
        errors=tuple(errors),
        project=project,
        asset_sources=merged.sources,
        check_sources=merged.check_sources,
        refreshes=refreshes,
        timings=timings,
        fingerprints=plan.fingerprints,
    )


def _keep_pinned(storages: Mapping[str, StateStorage], pin: StateInfo) -> LivePins | None:
    """Live pin records for ``pin``'s versions in storages that keep versions (see
    ``load_defs(keep_pinned=True)``)."""
    from defstate.state_storage.base import version_store
    from defstate.state_storage.pins import LivePins

    for storage in storages.values():
        store = version_store(storage)
        if store is not None:
            pins = LivePins(store)  # one project has one storage that keeps versions
            pins.hold(
                {
                    k: [v.version]
                    for k, v in pin.versions.items()
                    if k in storages and storages[k].keeps_versions
                },
                purpose="load",
            )
            return pins
    return None


def _changed(key: str, fingerprints: Mapping[str, str], previous: Mapping[str, str] | None) -> bool:
    return previous is None or previous.get(key) != fingerprints.get(key)


def _missing_state_errors(
    project: Project, storages: Mapping[str, StateStorage], state_paths: Mapping[str, Path | None]
) -> list[LoadProblem]:
    errors = []
    for key, path in sorted(state_paths.items()):
        if path is not None:
            continue
        group = project.groups[key]
        if storages[key].refreshed_at_initialization:
            continue  # refreshed by this very load; its own error says why it is missing
        writer = group.writer
        errors.append(
            LoadProblem(
                f"no state for key {key!r} ({group.management_type.value}) in strict/deploy "
                f"mode: create it with `defstate state refresh --key '{key}'` (in the image "
                "build step for LOCAL_FILESYSTEM)",
                writer.location,
                writer.source,
                key,
            )
        )
    return errors


def is_deploy() -> bool:
    """``DEFSTATE_DEPLOY=1``: a deployed artifact, where nothing refreshes and missing state
    is an error."""
    return os.environ.get("DEFSTATE_DEPLOY", "").strip().lower() in ("1", "true", "yes")


def _refresh_errors(project: Project, results: Sequence[RefreshResult]) -> list[LoadProblem]:
    errors = []
    for result in results:
        if result.ok:
            continue
        writer = project.groups[result.key].writer
        errors.append(
            LoadProblem(
                f"refresh failed, keeping the previous state: {result.error}",
                writer.location,
                writer.source,
                result.key,
                kind="refresh",
            )
        )
    return errors


def _resolve_state(
    project: Project, storages: Mapping[str, StateStorage], pin: StateInfo | None
) -> tuple[dict[str, StateVersion], dict[str, Path | None], list[LoadProblem]]:
    """For every key with a storage: the version to use (latest, or pinned) and its local path.

    Work that goes over the network — reading latest pointers, downloading versions missing
    from the cache — runs concurrently; local work stays on this thread (threads only cost).
    """
    versions: dict[str, StateVersion] = {}
    paths: dict[str, Path | None] = {}
    errors: list[LoadProblem] = []
    listed = _latest_in_bulk(project, storages, errors) if pin is None else {}

    def choose(key: str) -> None:
        group = project.groups[key]
        if pin is None:
            version = listed[key] if key in listed else storages[key].latest(key)
        else:
            version = pin.get(key)
            if version is not None and version.management_type != group.management_type:
                version = None  # the strategy changed since the pin: never read the other's
        if version is None:
            paths[key] = None
        else:
            versions[key] = version

    def fetch(key: str) -> None:
        if pin is None:
            versions[key], paths[key] = _latest_state_path(storages[key], versions[key])
        else:
            paths[key] = storages[key].state_path(versions[key])

    def remote(key: str) -> bool:
        return storages[key].remote and key not in listed

    failed = {e.key for e in errors}
    _run_each(
        choose,
        [k for k in sorted(storages) if k not in failed],
        remote if pin is None else lambda key: False,
        errors,
        project,
    )
    _run_each(
        fetch,
        list(versions),
        lambda key: not storages[key].has_local_copy(versions[key]),
        errors,
        project,
    )
    for key in [k for k in versions if k not in paths]:
        del versions[key]
    errors.sort(key=lambda e: e.key or "")
    return versions, paths, errors


_LATEST_READS = 3  # a pointer that moved this often during one load is a broken store


def _latest_state_path(storage: StateStorage, version: StateVersion) -> tuple[StateVersion, Path]:
    """The local path of ``version``, the key's latest when read. gc may collect it between
    that read and the download (``--grace 0``): then the pointer has moved, so read it again
    and use the version it names now."""
    for _ in range(_LATEST_READS - 1):
        try:
            return version, storage.state_path(version)
        except StateVersionMissingError:
            newer = storage.latest(version.key)
            if newer is None or newer.version == version.version:
                raise
            version = newer
    return version, storage.state_path(version)


def _latest_in_bulk(
    project: Project, storages: Mapping[str, StateStorage], errors: list[LoadProblem]
) -> dict[str, StateVersion | None]:
    """:func:`latest_in_bulk`, a storage that cannot be reached failing each of its keys as
    a load problem."""

    def unreachable(keys: Sequence[str], exc: Exception) -> None:
        errors.extend(LoadProblem.for_instance(project.groups[k].writer, exc) for k in keys)

    return latest_in_bulk(storages, unreachable)


def latest_in_bulk(
    storages: Mapping[str, StateStorage],
    unreachable: Callable[[Sequence[str], Exception], None],
) -> dict[str, StateVersion | None]:
    """The latest versions each storage answers for many keys at once (one listing instead
    of one read per key). A storage that cannot be reached is reported once, with its keys,
    to ``unreachable``; one that refuses the listing (a permission) leaves its keys to be
    read one by one. Keys missing from the answer are read with ``latest``."""
    by_storage: dict[int, list[str]] = {}
    for key in sorted(storages):
        by_storage.setdefault(id(storages[key]), []).append(key)
    found: dict[str, StateVersion | None] = {}
    for keys in by_storage.values():
        storage = storages[keys[0]]
        try:
            found.update(storage.latest_many(keys))
        except Exception as exc:
            if not is_transient(exc):
                import logging  # rare: kept off the read path's imports

                logging.getLogger("defstate.loader").warning(
                    "cannot list the latest pointers at %s: %s", storage.describe(), exc
                )
                continue
            unreachable(keys, exc)
    return found


def _run_each(
    work: Callable[[str], None],
    keys: list[str],
    is_remote: Callable[[str], bool],
    errors: list[LoadProblem],
    project: Project,
) -> None:
    """``work(key)`` for every key: remote ones on a thread pool, the others here."""

    def guarded(key: str) -> None:
        try:
            work(key)
        except Exception as exc:  # one key's failure must not hide the other components
            errors.append(LoadProblem.for_instance(project.groups[key].writer, exc))

    remote = [k for k in keys if is_remote(k)]
    remote_set = set(remote)
    here = keys if len(remote) <= 1 else [k for k in keys if k not in remote_set]
    for key in here:
        guarded(key)
    if len(remote) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(remote))) as pool:
            list(pool.map(guarded, remote))


@attrs.frozen
class RefreshReport:
    """The outcome of ``refresh_state``: one result per selected key, plus project errors."""

    results: tuple[RefreshResult, ...]
    errors: tuple[LoadProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.results)


def refresh_state(
    project_root: Path | str | None = None,
    *,
    keys: Sequence[str] = (),
    management_types: Sequence[ManagementType] = (),
    concurrency: int | None = None,
    listener: RefreshListener | None = None,
    options: RefreshOptions | None = None,
    shard: Shard | None = None,
) -> RefreshReport:
    """Refresh the selected keys (default: all), concurrently; what succeeds is kept.

    ``shard`` narrows the selection to a stable, hash-based share of it (see ``Shard``), so
    ``N`` machines running shards ``0/N`` … ``N-1/N`` refresh every selected key once.

    ``LOCAL_FILESYSTEM`` keys are written next to the project, ``VERSIONED_STATE_STORAGE`` keys
    are published to the configured storage. ``LEGACY_CODE_SERVER_SNAPSHOTS`` keys are skipped:
    they live in a load's pin and are refreshed by every initialization load.
    ``options`` sets the trigger recorded, retries, timeout, guard and single-flight waiting.
    Raises ``UnknownStateKeyError`` when a requested key matches no component.
    """
    project = open_project(project_root)
    groups = select_groups(dict(project.groups), keys, management_types, shard)
    storages, errors = resolve_storages(groups, project.storages)
    planned = plan_targets(groups, storages)
    targets = [t for t in planned if not t.storage.refreshed_at_initialization]
    if keys and planned and not targets:
        raise UsageError(
            f"{', '.join(t.key for t in planned)}: {planned[0].management_type.value} state "
            "is made by every initialization load of a code location (serve, dev, list defs), "
            "not by `state refresh`"
        )
    results = run_refreshes(
        targets,
        concurrency or project.config.refresh_concurrency,
        listener,
        options,
    )
    return RefreshReport(tuple(results), (*project.errors, *errors))
