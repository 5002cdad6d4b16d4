"""``state verify``, ``state pull`` and orphan keys (``state ls``, ``state gc --orphans``).

* verify: re-read every stored version of versioned keys and check it against its manifest
  (size, sha256); report versions that are corrupt, or incomplete (bytes without a manifest,
  or a manifest without bytes).
* pull: copy the latest (or pinned) versioned state of keys into ``.local_defs_state/``, so a
  Docker/PEX build bakes production-approved state without calling the external system.
* orphans: keys found in a storage that no component of the project uses.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import DefstateError, ProjectConfigError, SourceLocation
from defstate.loader.groups import select_groups
from defstate.loader.load import Project, open_project
from defstate.state_storage.local import LocalStateStorage
from defstate.state_storage.registry import storage_class
from defstate.state_storage.state_info import StateInfo, StateVersion
from defstate.state_storage.versioned import LayoutMigration, StoredVersion, VersionedStateStorage


@attrs.frozen
class VersionCheck:
    """One stored version and what verifying it found: ``ok``, ``corrupt`` or ``incomplete``."""

    key: str
    version: str
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _versioned_storage(project: Project) -> VersionedStateStorage:
    settings = project.config.state_storage
    if settings is None:
        raise ProjectConfigError(
            "no versioned state storage is configured: set url in "
            "[tool.defstate.state_storage] (or DEFSTATE_STATE_STORAGE_URL)",
            SourceLocation(project.config.pyproject),
        )
    return VersionedStateStorage(settings.url, dict(settings.storage_options))


def _chosen_keys(project: Project, keys: Sequence[str]) -> list[str]:
    """The named keys, or by default every key of a storage that keeps versions."""
    groups = select_groups(dict(project.groups), keys)  # unknown keys raise (exit 2)
    if keys:
        return [g.key for g in groups]
    return [g.key for g in groups if storage_class(g.management_type).keeps_versions]


def verify_state(
    project_root: Path | str | None = None, keys: Sequence[str] = ()
) -> list[VersionCheck]:
    """Check every stored version of the selected keys (default: every versioned key)."""
    project = open_project(project_root)
    chosen = _chosen_keys(project, keys)
    if not chosen:
        return []
    storage = _versioned_storage(project)
    checks: list[VersionCheck] = []
    for key in chosen:
        checks.extend(_verify_key(storage, key))
    return checks


def _verify_key(storage: VersionedStateStorage, key: str) -> list[VersionCheck]:
    return [_verify_version(storage, key, stored) for stored in storage.inventory(key)]


def _verify_version(
    storage: VersionedStateStorage, key: str, stored: StoredVersion
) -> VersionCheck:
    """Read one stored version's bytes (streamed) and compare them with its manifest."""
    manifest, version = stored.manifest, stored.version
    if manifest is None:
        problem = stored.problem or "no manifest"
        status = "incomplete" if problem.startswith("incomplete") else "corrupt"
        return VersionCheck(key, version, status, problem)
    try:
        found = storage.stored_digest(manifest)
    except DefstateError as exc:  # unreadable: report it, check the others
        return VersionCheck(key, version, "corrupt", exc.message)
    if found is None:
        return VersionCheck(key, version, "incomplete", "the manifest has no state bytes")
    size, sha256 = found
    if size != manifest.size:
        message = f"expected {manifest.size} bytes, got {size} (truncated or corrupted)"
        return VersionCheck(key, version, "corrupt", message)
    if sha256 != manifest.sha256:
        return VersionCheck(key, version, "corrupt", "sha256 mismatch (corrupted)")
    return VersionCheck(key, version, "ok")


@attrs.frozen
class PullResult:
    """A key copied from versioned storage into local state, or why it was not."""

    key: str
    version: str | None
    size: int | None
    skipped: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def pull_state(
    project_root: Path | str | None = None,
    keys: Sequence[str] = (),
    state_info: StateInfo | None = None,
) -> list[PullResult]:
    """Copy the latest versioned state of the selected keys (default: every versioned key),
    or the versions ``state_info`` pins, into the project's ``.local_defs_state/``.

    The build that bakes it sets those components to ``LOCAL_FILESYSTEM`` (e.g.
    ``management_type: "{{ env.STATE_MODE }}"`` in their defs.yaml).
    """
    project = open_project(project_root)
    chosen = _chosen_keys(project, keys)
    if not chosen:
        return []
    source = _versioned_storage(project)
    target = LocalStateStorage.for_defs_dir(project.config.defs_dir)
    results = []
    for key in chosen:
        pinned = state_info.get(key) if state_info is not None else None
        version: StateVersion | None
        if pinned is not None and pinned.management_type is source.management_type:
            version = source.version(key, pinned.version)
        else:
            version = source.latest(key)
        if version is None:
            results.append(PullResult(key, None, None, f"no state at {source.describe()}"))
            continue
        path = source.state_path(version)  # downloaded and verified against its sha256
        with target.begin_write(key, {"pulled_from": source.describe()}) as write:
            if path.is_dir():
                shutil.copytree(path, write.path)
            else:
                shutil.copyfile(path, write.path)
            written = write.commit()
        results.append(PullResult(key, version.version, written.size))
    return results


@attrs.frozen
class OrphanKey:
    """A key with state in a storage that no component of the project uses."""

    key: str
    storage: str
    path: str

    def to_json_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def orphan_keys(project_root: Path | str | None = None) -> list[OrphanKey]:
    """Keys found in the project's local state folder and versioned storage that no
    component uses (a storage shared by several projects shows the others' keys too)."""
    project = open_project(project_root)
    known = set(project.groups)
    found: list[OrphanKey] = []
    local = LocalStateStorage.for_defs_dir(project.config.defs_dir)
    for key in local.stored_keys():
        if key not in known:
            found.append(OrphanKey(key, local.describe(), str(local.key_dir(key))))
    if project.config.state_storage is not None:
        storage = _versioned_storage(project)
        for key in storage.stored_keys():
            if key not in known:
                found.append(OrphanKey(key, storage.describe(), storage.key_path(key)))
    return sorted(found, key=lambda o: (o.storage, o.key))


def migrate_layout(project_root: Path | str | None = None) -> LayoutMigration:
    """Move the project's versioned storage to the current pointer layout (see
    :meth:`VersionedStateStorage.migrate_layout`): idempotent, safe to interrupt and to run
    while other processes load and publish."""
    project = open_project(project_root)
    return _versioned_storage(project).migrate_layout()


def delete_orphans(project_root: Path | str | None = None) -> list[OrphanKey]:
    """Delete the state of every orphan key (all versions, records and leases)."""
    project = open_project(project_root)
    orphans = orphan_keys(project.config.root)
    storage = _versioned_storage(project) if project.config.state_storage else None
    for orphan in orphans:
        if storage is None or orphan.storage != storage.describe():
            shutil.rmtree(orphan.path)
        else:
            storage.forget_key(orphan.key, orphan.path)
    return orphans
