"""Inspecting and maintaining stored state: ``state ls / show / diff / rollback / gc``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import DefstateError, StateStorageError, UsageError
from defstate.keyed_diff import diff_by_key
from defstate.loader.groups import KeyGroup, select_groups
from defstate.loader.load import Project, latest_in_bulk, open_project
from defstate.state_storage.base import StateStorage, VersionStore, version_store
from defstate.state_storage.management import ManagementType
from defstate.state_storage.pins import LiveHolders
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateInfo, StateVersion
from defstate.state_storage.versioned import StoredVersion


@attrs.frozen
class KeyState:
    """One state key of a project and its current (latest) version, if any."""

    key: str
    management_type: ManagementType
    components: tuple[str, ...]
    latest: StateVersion | None
    error: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "management_type": self.management_type.value,
            "components": list(self.components),
            "latest": self.latest.to_json_dict() if self.latest else None,
            "error": self.error,
        }


def _versioned(project: Project, group: KeyGroup, what: str) -> VersionStore:
    storage = version_store(project.storage(group))
    if storage is None:
        raise DefstateError(
            f"cannot {what} key {group.key!r}: it is {group.management_type.value}, which keeps no "
            "versions (only VERSIONED_STATE_STORAGE does)"
        )
    return storage


_UUID_LENGTH = 36


def full_version(storage: VersionStore, key: str, version: str) -> str:
    """The stored version of ``key`` that ``version`` names: a full id or, like git's short
    hashes, a unique prefix (``UsageError`` when none or several match)."""
    if len(version) == _UUID_LENGTH:
        return version  # a full id: no need to list every manifest
    ids = [v.version for v in storage.versions(key)]
    matches = [v for v in ids if v.startswith(version)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"key {key!r} has no stored version {version!r} at {storage.describe()} "
            "(`defstate state history KEY` lists them)"
        )
    raise UsageError(
        f"version prefix {version!r} of key {key!r} is ambiguous: {', '.join(matches)}"
    )


def list_state(project_root: Path | str | None = None) -> list[KeyState]:
    """Every state key of the project with its latest version (snapshot keys have none:
    they live in the pins of loads)."""
    project = open_project(project_root)
    latest = latest_versions(project)
    rows = []
    for key, group in sorted(project.groups.items()):
        sources = tuple(i.source for i in group.instances)
        found = latest[key]
        if isinstance(found, DefstateError):
            rows.append(KeyState(key, group.management_type, sources, None, found.message))
        else:
            rows.append(KeyState(key, group.management_type, sources, found))
    return rows


def latest_versions(project: Project) -> dict[str, StateVersion | DefstateError | None]:
    """Every key's latest version, or the error that kept it from being read. Each storage
    answers for all its keys at once where it can (one listing of pointer layout 2), the
    rest are read one by one."""
    answers: dict[str, StateVersion | DefstateError | None] = {}
    storages: dict[str, StateStorage] = {}
    for key, group in project.groups.items():
        try:
            storages[key] = project.storage(group)
        except DefstateError as exc:
            answers[key] = exc

    def unreachable(keys: Sequence[str], exc: Exception) -> None:
        error = exc if isinstance(exc, DefstateError) else StateStorageError(str(exc))
        answers.update(dict.fromkeys(keys, error))

    answers.update(latest_in_bulk(storages, unreachable))
    for key, storage in storages.items():
        if key not in answers:
            try:
                answers[key] = storage.latest(key)
            except DefstateError as exc:
                answers[key] = exc
    return answers


def recent_records(project: Project, limit: int) -> dict[str, list[RefreshRecord] | DefstateError]:
    """Every key's ``limit`` newest refresh records, or the error that kept them from being
    read. Each storage answers for as many of its keys at once as it can
    (:meth:`StateStorage.records_many`); the rest are read one by one."""
    answers: dict[str, list[RefreshRecord] | DefstateError] = {}
    by_storage: dict[int, tuple[StateStorage, list[str]]] = {}
    for key, group in sorted(project.groups.items()):
        try:
            storage = project.storage(group)
        except DefstateError as exc:
            answers[key] = exc
            continue
        by_storage.setdefault(id(storage), (storage, []))[1].append(key)
    for storage, keys in by_storage.values():
        with contextlib.suppress(Exception):  # read one by one below, errors reported there
            answers.update(storage.records_many(keys, limit))
        for key in keys:
            if key not in answers:
                try:
                    answers[key] = storage.records(key, limit)
                except DefstateError as exc:
                    answers[key] = exc
    return answers


def show_state(
    project_root: Path | str | None, key: str, version: str | None = None
) -> StateVersion:
    """The latest version of ``key``, or stored ``version`` (versioned storage)."""
    project = open_project(project_root)
    group = project.group(key)
    if version is not None:
        storage = _versioned(project, group, "show versions of")
        return storage.version(key, full_version(storage, key, version))
    latest = project.storage(group).latest(key)
    if latest is None:
        raise StateStorageError(
            f"key {key!r} has no state yet: create it with `defstate state refresh --key '{key}'`"
        )
    return latest


@attrs.frozen
class DefsDiff:
    """Which assets and asset checks a version adds, removes and changes compared with another.

    Assets are named by key (``a/b``), checks by check key (``a/b:name``).
    """

    key: str
    old: str
    new: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    checks_added: tuple[str, ...] = ()
    checks_removed: tuple[str, ...] = ()
    checks_changed: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _defs_dicts(
    group: KeyGroup, state: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The JSON shapes of the assets and of the checks a key's state builds, by key."""
    assets: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, Any]] = {}
    for instance in group.instances:
        defs = instance.defs_at(state)
        for spec in defs.assets:
            assets[spec.key.to_string()] = spec.to_json_dict()
        for check in defs.asset_checks:
            checks[check.key.to_string()] = check.to_json_dict()
    return assets, checks


def diff_state(
    project_root: Path | str | None, key: str, old: str | None = None, new: str | None = None
) -> DefsDiff:
    """Compare the definitions two stored versions of ``key`` produce.

    Defaults: ``new`` is the latest version, ``old`` the version stored before ``new``.
    """
    project = open_project(project_root)
    group = project.group(key)
    storage = _versioned(project, group, "diff")
    old = full_version(storage, key, old) if old is not None else None
    new = full_version(storage, key, new) if new is not None else None
    versions: list[StateVersion] = []  # listed only when old must be found
    if new is None:
        latest = storage.latest(key)
        if latest is None:
            raise StateStorageError(f"key {key!r} has no state at {storage.describe()}")
        new = latest.version
    if old is None:
        versions = storage.versions(key)
        ids = [v.version for v in versions]
        if new not in ids or ids.index(new) == 0:
            raise StateStorageError(f"version {new} of key {key!r} has no earlier version")
        old = ids[ids.index(new) - 1]
    listed = {v.version: v for v in versions}

    def state_of(version: str) -> Path:
        return storage.state_path(listed.get(version) or storage.version(key, version))

    assets_before, checks_before = _defs_dicts(group, state_of(old))
    assets_after, checks_after = _defs_dicts(group, state_of(new))
    return DefsDiff(
        key,
        old,
        new,
        *diff_by_key(assets_before, assets_after),
        *diff_by_key(checks_before, checks_after),
    )


def rollback_state(project_root: Path | str | None, key: str, version: str) -> StateVersion:
    """Point ``key``'s latest back at stored ``version`` (versioned storage only).

    Code locations pick it up at their next reload (``--reload-on-new-state`` notices it).
    """
    project = open_project(project_root)
    storage = _versioned(project, project.group(key), "roll back")
    return storage.rollback(key, full_version(storage, key, version))


@attrs.frozen
class GcEntry:
    """One version gc looked at: what it did (``deleted``, ``would delete`` in a dry run,
    or ``kept``) and why it kept it."""

    version: str
    bytes: int
    action: str
    reason: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class GcKeyReport:
    """gc of one key: every version with its fate, problems found (damaged manifests or pin
    records: reported and skipped), and the key's error if it could not be collected."""

    key: str
    entries: tuple[GcEntry, ...] = ()
    problems: tuple[str, ...] = ()
    error: str | None = None

    @property
    def deleted(self) -> list[str]:
        return [e.version for e in self.entries if e.action in ("deleted", "would delete")]

    @property
    def bytes_freed(self) -> int:
        return sum(e.bytes for e in self.entries if e.action in ("deleted", "would delete"))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "deleted": [e.to_json_dict() for e in self.entries if e.action != "kept"],
            "kept": [e.to_json_dict() for e in self.entries if e.action == "kept"],
            "bytes_freed": self.bytes_freed,
            "problems": list(self.problems),
            "error": self.error,
        }


@attrs.frozen
class GcReport:
    """What ``gc_state`` did (or, with ``dry_run``, would do) per key; ``problems`` are those
    of no one key (damaged holder records of live pins: reported and ignored)."""

    keys: tuple[GcKeyReport, ...]
    dry_run: bool = False
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(k.error is None for k in self.keys)

    @property
    def bytes_freed(self) -> int:
        return sum(k.bytes_freed for k in self.keys)

    @property
    def deleted(self) -> dict[str, list[str]]:
        return {k.key: k.deleted for k in self.keys}

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "bytes_freed": self.bytes_freed,
            "keys": [k.to_json_dict() for k in self.keys],
            "problems": list(self.problems),
        }


@attrs.frozen
class GcPolicy:
    """What gc keeps besides the latest version and live pins: the ``keep`` newest, every
    version superseded less than ``grace`` seconds ago (measured from its successor's
    publication, by the storage's clock), versions younger than ``older_than``, and the
    versions named by ``protect`` pins."""

    keep: int = 5
    grace: float = 3600.0
    older_than: float = 0.0
    protect: tuple[StateInfo, ...] = ()

    def protected(self, key: str) -> set[str]:
        return {v.version for pin in self.protect if (v := pin.get(key)) is not None}


def _keep_reason(
    stored: StoredVersion,
    successor: StoredVersion | None,
    rank: int,
    *,
    pointer: tuple[str | None, str | None, float] | None,
    pinned: set[str],
    policy: GcPolicy,
    key: str,
    now: float,
) -> str | None:
    """Why gc must keep ``stored`` (``None``: it may go). ``rank`` counts complete versions
    from the newest (0)."""
    if stored.manifest is None:
        if not (stored.problem or "").startswith("incomplete"):
            return f"damaged: {stored.problem}"
        if now - stored.published_at < policy.grace:
            return "incomplete and recent (an upload may be running)"
        return None
    latest, previous, moved_at = pointer or (None, None, 0.0)
    if stored.version == latest:
        return "latest"
    if stored.version in pinned:
        return "pinned by a live process"
    if stored.version in policy.protected(key):
        return "protected (--protect)"
    if rank < policy.keep:
        return f"among the {policy.keep} newest"
    if successor is None:
        return "newest version (never superseded)"
    superseded_at = successor.published_at
    if stored.version == previous:
        superseded_at = max(superseded_at, moved_at)
    if now - superseded_at < policy.grace:
        return f"superseded {max(0.0, now - superseded_at):.0f}s ago (grace {policy.grace:g}s)"
    if now - stored.published_at < policy.older_than:
        return f"younger than {policy.older_than:g}s (--older-than)"
    return None


def collect_key(
    storage: VersionStore,
    key: str,
    policy: GcPolicy,
    *,
    dry_run: bool = False,
    holders: LiveHolders | None = None,
) -> GcKeyReport:
    """gc of one key (see :class:`GcPolicy`); deletion follows the pointer protocol of
    :meth:`VersionStore.delete_version`, so a version that becomes latest or pinned
    meanwhile is kept. ``holders``: the storage's holder records read once for all keys
    (:meth:`VersionStore.live_holder_pins`; ``None``: read them for this key)."""
    stored_versions = storage.inventory(key)
    if not stored_versions:
        return GcKeyReport(key)
    pointer = storage.pointer_info(key)
    pinned, problems = storage.live_pins(key, holders)
    now = storage.storage_now(key)
    complete = [v for v in stored_versions if v.manifest is not None]
    order = {v.version: i for i, v in enumerate(complete)}
    entries = []
    for stored in stored_versions:
        index = order.get(stored.version)
        successor = None
        rank = 0
        if index is not None:
            successor = complete[index + 1] if index + 1 < len(complete) else None
            rank = len(complete) - 1 - index
        reason = _keep_reason(
            stored, successor, rank, pointer=pointer, pinned=pinned, policy=policy, key=key, now=now
        )
        if reason is not None and reason.startswith("damaged"):
            problems.append(f"version {stored.version}: {stored.problem} (skipped)")
        if reason is not None:
            entries.append(GcEntry(stored.version, stored.size, "kept", reason))
        elif dry_run:
            entries.append(GcEntry(stored.version, stored.size, "would delete"))
        elif storage.delete_version(key, stored, holders=holders):
            entries.append(GcEntry(stored.version, stored.size, "deleted"))
        else:
            entries.append(GcEntry(stored.version, stored.size, "kept", "became in use during gc"))
    return GcKeyReport(key, tuple(entries), tuple(problems))


def gc_state(
    project_root: Path | str | None = None,
    *,
    keep: int = 5,
    keys: Sequence[str] = (),
    grace: float = 3600.0,
    older_than: float = 0.0,
    protect: Sequence[StateInfo] = (),
    dry_run: bool = False,
) -> GcReport:
    """Delete old versions of versioned keys. Kept: the latest, every version a live pin
    record or a ``protect`` pin names, the ``keep`` newest, and versions superseded less than
    ``grace`` seconds ago or younger than ``older_than`` (see :class:`GcPolicy`).

    One key's failure is reported in its entry and does not stop the others; an unknown key
    in ``keys`` raises ``UnknownStateKeyError``.
    """
    if keep < 0:
        raise ValueError("keep must not be negative")
    project = open_project(project_root)
    chosen = {g.key for g in select_groups(dict(project.groups), keys)}  # unknown keys raise
    policy = GcPolicy(keep, grace, older_than, tuple(protect))
    reports = []
    holders = _HolderRecords()
    for key, group in sorted(project.groups.items()):
        if key not in chosen:
            continue
        try:
            storage = version_store(project.storage(group))
            if storage is None:
                continue
            read = holders.of(storage)
            reports.append(collect_key(storage, key, policy, dry_run=dry_run, holders=read))
        except DefstateError as exc:
            reports.append(GcKeyReport(key, error=str(exc)))
    return GcReport(tuple(reports), dry_run, tuple(holders.problems))


@attrs.define
class _HolderRecords:
    """Each storage's holder records, read once per gc run (an error too: every key of that
    storage reports it, since none can be collected safely without them)."""

    read: dict[int, tuple[VersionStore, LiveHolders | DefstateError]] = attrs.field(factory=dict)
    problems: list[str] = attrs.field(factory=list)

    def of(self, storage: VersionStore) -> LiveHolders:
        found = self.read.get(id(storage))
        if found is None:
            holders: LiveHolders | DefstateError
            try:
                holders = storage.live_holder_pins()
            except DefstateError as exc:
                holders = exc
            else:
                self.problems.extend(holders.problems)
            found = self.read[id(storage)] = (storage, holders)  # the storage keeps id unique
        if isinstance(found[1], DefstateError):
            raise found[1]
        return found[1]
