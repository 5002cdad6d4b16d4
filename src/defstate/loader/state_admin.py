"""Inspecting and maintaining stored state: ``state ls / show / diff / rollback / gc``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import DefstateError, StateStorageError, UsageError
from defstate.loader.groups import KeyGroup, select_groups
from defstate.loader.load import Project, open_project
from defstate.state_storage.base import VersionStore, version_store
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateVersion


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
    rows = []
    for key, group in sorted(project.groups.items()):
        sources = tuple(i.source for i in group.instances)
        try:
            latest = project.storage(group).latest(key)
            rows.append(KeyState(key, group.management_type, sources, latest))
        except DefstateError as exc:
            rows.append(KeyState(key, group.management_type, sources, None, exc.message))
    return rows


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


def _compare(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(added, removed, changed) names, each sorted."""
    both = set(after) & set(before)
    return (
        tuple(sorted(set(after) - set(before))),
        tuple(sorted(set(before) - set(after))),
        tuple(sorted(k for k in both if after[k] != before[k])),
    )


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
        *_compare(assets_before, assets_after),
        *_compare(checks_before, checks_after),
    )


def rollback_state(project_root: Path | str | None, key: str, version: str) -> StateVersion:
    """Point ``key``'s latest back at stored ``version`` (versioned storage only).

    Code locations pick it up at their next reload (``--reload-on-new-state`` notices it).
    """
    project = open_project(project_root)
    storage = _versioned(project, project.group(key), "roll back")
    return storage.rollback(key, full_version(storage, key, version))


def gc_state(
    project_root: Path | str | None = None, *, keep: int = 5, keys: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Delete old versions of versioned keys, keeping the latest and the ``keep`` newest.

    Returns the deleted versions per key. Versions pinned by running code locations are not
    known here: keep enough of them for the pins in use.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    project = open_project(project_root)
    deleted: dict[str, list[str]] = {}
    chosen = {g.key for g in select_groups(dict(project.groups), keys)}  # unknown keys raise
    for key, group in sorted(project.groups.items()):
        if key not in chosen:
            continue
        storage = version_store(project.storage(group))
        if storage is None:
            continue
        latest = storage.latest(key)
        versions = storage.versions(key)  # oldest first
        survivors = {v.version for v in versions[-keep:]}
        if latest is not None:
            survivors.add(latest.version)
        gone = [v.version for v in versions if v.version not in survivors]
        for version in gone:
            storage.delete_version(key, version)
        deleted[key] = gone
    return deleted
