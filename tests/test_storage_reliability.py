"""Stored state that nothing can corrupt: literal keys, the pointer protocol under forced
interleavings, gc's keep rules and live pins, unchanged refreshes, environment faults.

Each test names the guarantee of docs/reliability.md it proves.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ProjectFactory, run_cli
from defstate import StateInfo, load_defs, refresh_state
from defstate.errors import DefstateError, StateStorageError
from defstate.loader.history import state_history
from defstate.loader.state_admin import diff_state, gc_state, rollback_state, show_state
from defstate.server.poller import moved_keys
from defstate.state_storage import encode_key
from defstate.state_storage.archive import same_state, sha256_bytes
from defstate.state_storage.local import LocalStateStorage
from defstate.state_storage.pins import LivePins
from defstate.state_storage.pointer_layout import POINTERS_DIRNAME
from defstate.state_storage.versioned import VersionedStateStorage

WEIRD = "a*b?c%d{e}[f]"
WEIRD_KEY = f"List[{WEIRD}]"
VERSIONED = "  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n"


def _project(make_project: ProjectFactory, tmp_path: Path, *names: str) -> Path:
    files = {}
    for name in names:
        source = tmp_path / f"source-{uuid.uuid4().hex}.json"
        source.write_text(json.dumps([f"{name}_1"]))
        files[f"defs/c{len(files)}/defs.yaml"] = (
            f"type: fixture_components.ListComponent\nattributes:\n  name: {json.dumps(name)}\n"
            f"  source_file: {source}\n" + VERSIONED
        )
    return make_project(files)


def _source(root: Path, index: int = 0) -> Path:
    text = (root / f"defs/c{index}/defs.yaml").read_text()
    return Path(text.split("source_file: ", 1)[1].split("\n", 1)[0])


def _publish(root: Path, key: str, assets: list[str], index: int = 0) -> str:
    _source(root, index).write_text(json.dumps(assets))
    report = refresh_state(root, keys=[key])
    assert report.ok, (report.results, report.errors)
    (result,) = report.results
    assert result.version is not None
    return result.version.version


def _assert_pointer_sound(storage: VersionedStateStorage, key: str) -> str:
    """The pointer names a version whose manifest and bytes exist and match."""
    latest = storage.latest(key)
    assert latest is not None
    manifest = storage.version(key, latest.version)  # raises if the manifest is gone
    assert manifest.sha256 == latest.sha256
    path = storage.state_object_path(key, latest.version, is_directory=latest.is_directory)
    data = storage.store.read(path)
    assert data is not None and sha256_bytes(data) == latest.sha256
    return latest.version


# ---------------------------------------------------------------- 1. keys are literal


def test_keys_with_glob_characters_are_literal_everywhere(
    store_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Guarantee 1: gc, rollback, history, show, diff and delete treat a key containing
    ``[ ] * ? % { }`` as a name, and never touch a key its pattern would match."""
    root = _project(make_project, tmp_path, WEIRD, "a")
    sibling = "List[a]"  # what List[a*...] would match as a glob
    other = _publish(root, sibling, ["s1"], index=1)
    v1 = _publish(root, WEIRD_KEY, ["w1"])
    v2 = _publish(root, WEIRD_KEY, ["w1", "w2"])
    v3 = _publish(root, WEIRD_KEY, ["w3"])
    storage = VersionedStateStorage(store_url)
    assert [v.version for v in storage.versions(WEIRD_KEY)] == [v1, v2, v3]
    history = state_history(root, WEIRD_KEY)
    assert [v.version for v in history.versions] == [v1, v2, v3]
    assert history.records[0].version == v3
    assert show_state(root, WEIRD_KEY, v2).version == v2
    diff = diff_state(root, WEIRD_KEY)
    assert (diff.old, diff.new, diff.added, diff.removed) == (v2, v3, ("w3",), ("w1", "w2"))
    assert rollback_state(root, WEIRD_KEY, v1).version == v1
    report = gc_state(root, keep=0, grace=0)
    assert report.ok, report
    assert report.deleted == {WEIRD_KEY: [v2], sibling: []}  # v3: newest, never superseded
    (weird,) = [k for k in report.keys if k.key == WEIRD_KEY]
    assert weird.bytes_freed > 0
    assert [v.version for v in storage.versions(WEIRD_KEY)] == [v1, v3]
    assert storage.delete_version(WEIRD_KEY, v3)
    assert [v.version for v in storage.versions(WEIRD_KEY)] == [v1]
    assert [v.version for v in storage.versions(sibling)] == [other]
    keys = sorted(str(k) for k in load_defs(root).definitions.asset_keys)
    assert keys == ["s1", "w1"]


# ------------------------------------------- 2. the pointer never names a missing version


Hook = Callable[[], None]


def _on_call(
    monkeypatch: pytest.MonkeyPatch,
    storage: VersionedStateStorage,
    method: str,
    matches: Callable[[str], bool],
    action: Hook,
    *,
    after: bool = False,
) -> list[int]:
    """Run ``action`` once, before (or after) the first ``store.<method>(path)`` call whose
    path matches: a deterministic interleaving point. Returns a list that counts firings."""
    store = storage.store
    original = getattr(store, method)
    fired: list[int] = []

    def hooked(path: str, *args: Any, **kwargs: Any) -> Any:
        trigger = not fired and matches(path)
        if trigger and not after:
            fired.append(1)
            action()
        result = original(path, *args, **kwargs)
        if trigger and after:
            fired.append(1)
            action()
        return result

    monkeypatch.setattr(store, method, hooked)
    return fired


def _versions(root: Path, store_url: str, count: int) -> tuple[VersionedStateStorage, list[str]]:
    versions = [_publish(root, WEIRD_KEY, [f"n{i}"]) for i in range(count)]
    return VersionedStateStorage(store_url), versions


def _gc(storage: VersionedStateStorage) -> list[str]:
    from defstate.loader.state_admin import GcPolicy, collect_key

    return collect_key(storage, WEIRD_KEY, GcPolicy(keep=0, grace=0)).deleted


POINTER = f"/{POINTERS_DIRNAME}/"  # a key's latest pointer (layout 2)

INTERLEAVINGS = [
    # (hooked side, method, path suffix, before/after) -> what the other side does there
    ("gc", "delete", "manifest.json", True),  # gc dropped the manifest: rollback runs
    ("gc", "delete", "/state", False),  # gc re-checked, about to delete bytes: rollback runs
    ("rollback", "read", "manifest.json", True),  # rollback read the manifest: gc runs
    ("rollback", "write_if", POINTER, True),  # rollback moved the pointer: gc runs
    ("rollback", "write_if", POINTER, False),  # just before the move: gc runs
]


# Every order on file://; on s3 the orders at the pointer's conditional write (the other
# orders use the same calls as file://: a read of a missing object, a listing of pins).
@pytest.mark.parametrize(
    ("shared_url", "paused", "method", "suffix", "after"),
    [("file", *order) for order in INTERLEAVINGS]
    + [("s3", *order) for order in INTERLEAVINGS if order[1] == "write_if"],
    indirect=["shared_url"],
)
def test_gc_racing_rollback_never_leaves_a_dangling_pointer(
    shared_url: str,
    make_project: ProjectFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    paused: str,
    method: str,
    suffix: str,
    after: bool,
) -> None:
    """Guarantee 2: gc and rollback of the same version, in every forced order, leave the
    pointer naming a complete version; a rollback that loses reports an error."""
    root = _project(make_project, tmp_path, WEIRD)
    storage, (v0, _v1, v2) = _versions(root, shared_url, 3)
    gc_side = VersionedStateStorage(shared_url)
    rollback_side = VersionedStateStorage(shared_url)
    outcome: dict[str, Any] = {}

    def run_rollback() -> None:
        try:
            outcome["rollback"] = rollback_side.rollback(WEIRD_KEY, v0).version
        except StateStorageError as exc:
            outcome["rollback"] = exc

    def run_gc() -> None:
        outcome["gc"] = _gc(gc_side)

    first, second = (gc_side, run_rollback) if paused == "gc" else (rollback_side, run_gc)
    fired = _on_call(
        monkeypatch,
        first,
        method,
        lambda p: (POINTER in p) if suffix == POINTER else (p.endswith(suffix) and v0 in p),
        second,
        after=after,
    )
    (run_gc if paused == "gc" else run_rollback)()
    assert fired, "the interleaving point was never reached"
    latest = _assert_pointer_sound(storage, WEIRD_KEY)
    if isinstance(outcome["rollback"], StateStorageError):
        assert latest == v2 and v0 in outcome["gc"]  # gc won: v0 is gone, pointer unmoved
    else:
        assert latest == v0 and v0 not in outcome["gc"]  # rollback won: v0 was kept
    assert load_defs(root).ok


def test_two_gcs_at_once_both_succeed(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 2: a version already deleted by a concurrent gc is not an error."""
    root = _project(make_project, tmp_path, WEIRD)
    storage, (v0, v1, v2) = _versions(root, shared_url, 3)
    first, second = VersionedStateStorage(shared_url), VersionedStateStorage(shared_url)
    results: dict[str, list[str]] = {}
    fired = _on_call(
        monkeypatch,
        first,
        "delete",
        lambda p: p.endswith("manifest.json"),
        lambda: results.setdefault("second", _gc(second)),
        after=True,
    )
    results["first"] = _gc(first)
    assert fired
    assert set(results["first"]) | set(results["second"]) == {v0, v1}
    assert [v.version for v in storage.versions(WEIRD_KEY)] == [v2]
    _assert_pointer_sound(storage, WEIRD_KEY)


def test_gc_during_a_publication_keeps_the_new_version(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 2: gc running between a publication's upload and its pointer move (even with
    no grace) does not delete the version being published."""
    root = _project(make_project, tmp_path, WEIRD)
    _publish(root, WEIRD_KEY, ["old"])
    publisher = VersionedStateStorage(shared_url)
    collected: list[list[str]] = []
    for suffix in ("manifest.json", POINTER):  # after the bytes; after the manifest
        with pytest.MonkeyPatch.context() as mp:
            fired = _on_call(
                mp,
                publisher,
                "write" if suffix == "manifest.json" else "read_with_info",
                lambda p, s=suffix: p.endswith(s) or (s == POINTER and POINTER in p),  # type: ignore[misc]
                lambda: collected.append(_gc(VersionedStateStorage(shared_url))),
            )
            state = tmp_path / f"new-{uuid.uuid4().hex}"
            state.write_text(json.dumps([f"new-{len(collected)}"]))
            published = publisher.publish(WEIRD_KEY, state, {}).version.version
            assert fired
            assert _assert_pointer_sound(publisher, WEIRD_KEY) == published
            assert published not in collected[-1]
    assert load_defs(root).ok


def test_load_whose_latest_was_collected_reads_the_pointer_again(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 2: a load that read the pointer just before a publication moved it, and whose
    version a gc with no grace collected before the download, reads the pointer again and
    loads the new latest. A pin of the collected version fails, naming the key."""
    root = _project(make_project, tmp_path, WEIRD)
    old = _publish(root, WEIRD_KEY, ["old"])
    stale = VersionedStateStorage(shared_url).latest(WEIRD_KEY)
    pinned = load_defs(root).state_info
    new = _publish(root, WEIRD_KEY, ["new"])
    assert gc_state(root, keep=0, grace=0).deleted == {WEIRD_KEY: [old]}
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "fresh-cache"))  # must download
    real_latest = VersionedStateStorage.latest
    reads: list[str] = []

    def latest_read_before_the_move(self: VersionedStateStorage, key: str) -> Any:
        reads.append(key)
        return real_latest(self, key)

    def listing_read_before_the_move(self: VersionedStateStorage, keys: list[str]) -> Any:
        reads.append("listing")  # the load's first read of the pointers: one listing
        return {WEIRD_KEY: stale}

    monkeypatch.setattr(VersionedStateStorage, "latest", latest_read_before_the_move)
    monkeypatch.setattr(VersionedStateStorage, "latest_many", listing_read_before_the_move)
    loaded = load_defs(root)
    assert loaded.ok, loaded.errors
    assert [str(k) for k in loaded.definitions.asset_keys] == ["new"]
    version = loaded.state_info.get(WEIRD_KEY)
    assert version is not None and version.version == new
    assert reads == ["listing", WEIRD_KEY]
    gone = load_defs(root, state_info=pinned)
    assert [e.key for e in gone.errors] == [WEIRD_KEY]
    assert "bytes are gone" in gone.errors[0].message and old in gone.errors[0].message


# -------------------------------------------------------- 3. gc never deletes a version in use


def test_gc_keeps_live_pins_protect_files_and_the_grace_period(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Guarantee 3: live pin records, --protect pins, the latest and recently superseded
    versions survive gc; --older-than and --dry-run; a dead pin stops protecting."""
    root = _project(make_project, tmp_path, WEIRD)
    storage, versions = _versions(root, shared_url, 6)
    pinned_load = load_defs(root, keep_pinned=True)  # the latest: versions[5]
    assert pinned_load.live_pins is not None
    protect = StateInfo.from_json_dict(
        {WEIRD_KEY: storage.version(WEIRD_KEY, versions[1]).to_json_dict()}
    )
    (tmp_path / "pin.json").write_text(protect.to_json())

    dry = run_cli(
        "state",
        "gc",
        "--keep",
        "0",
        "--grace",
        "1h",
        "--dry-run",
        "--json",
        cwd=root,
        env={"DEFSTATE_STATE_STORAGE_URL": shared_url},
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["keys"][0]["deleted"] == []  # all superseded just now
    listed = run_cli(
        "state",
        "gc",
        "--keep",
        "0",
        "--grace",
        "0",
        "--protect",
        str(tmp_path / "pin.json"),
        "--dry-run",
        cwd=root,
        env={"DEFSTATE_STATE_STORAGE_URL": shared_url},
    )
    assert listed.returncode == 0, listed.stderr
    assert (
        f"would delete {WEIRD_KEY} {versions[2]}" in listed.stdout and "would free" in listed.stdout
    )
    assert [v.version for v in storage.versions(WEIRD_KEY)] == versions  # dry: nothing gone

    young = gc_state(root, keep=0, grace=0, older_than=3600)
    assert young.deleted == {WEIRD_KEY: []}
    # a live process pins versions[0]; held only from here (it renews every ttl/3)
    pins = LivePins(storage, ttl=2.0)
    pins.hold({WEIRD_KEY: [versions[0]]})
    report = gc_state(root, keep=0, grace=0, protect=[protect])
    assert sorted(report.deleted[WEIRD_KEY]) == sorted(versions[2:5])
    (key_report,) = report.keys
    reasons = {e.version: e.reason for e in key_report.entries if e.action == "kept"}
    assert reasons[versions[0]] == "pinned by a live process"
    assert reasons[versions[1]] == "protected (--protect)"
    assert reasons[versions[5]] == "latest"
    assert key_report.bytes_freed == sum(
        e.bytes for e in key_report.entries if e.action == "deleted"
    )

    pins._stop.set()  # the process "dies": its record is no longer renewed
    time.sleep(3.5)
    assert gc_state(root, keep=0, grace=0).deleted == {WEIRD_KEY: [versions[0], versions[1]]}
    pinned_load.live_pins.close()
    rebuilt = load_defs(root, state_info=pinned_load.state_info)
    assert rebuilt.ok and [str(k) for k in rebuilt.definitions.asset_keys] == ["n5"]


@pytest.mark.parametrize("dev", [False, True], ids=["serve", "dev"])
def test_serve_and_dev_record_the_versions_they_serve_as_live_pins(
    dev: bool, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 3: a code location (``serve``; ``dev``) records the version it serves as a
    live pin record, moves it when a reload serves a newer one, and removes it on close;
    gc with no grace keeps the served version meanwhile."""
    from defstate.server.location import CodeLocation

    url = f"file://{tmp_path}/store/state"
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    root = _project(make_project, tmp_path, WEIRD)
    served = _publish(root, WEIRD_KEY, ["served"])
    storage = VersionedStateStorage(url)
    location = CodeLocation(root, dev=dev)
    try:
        assert location.reload() is not None
        assert storage.live_pins(WEIRD_KEY)[0] == {served}
        newer = _publish(root, WEIRD_KEY, ["newer"])
        assert gc_state(root, keep=0, grace=0).deleted == {WEIRD_KEY: []}  # served, latest
        assert location.reload() is not None
        assert storage.live_pins(WEIRD_KEY)[0] == {newer}
    finally:
        location.close()
    assert storage.live_pins(WEIRD_KEY)[0] == set()
    assert gc_state(root, keep=0, grace=0).deleted == {WEIRD_KEY: [served]}


# ------------------------------------------------------------ 7. unchanged refreshes


def test_refresh_to_identical_bytes_is_unchanged(
    store_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Guarantee 7: same sha256 as the latest version -> ``unchanged``: a record is written,
    no version is published, the pointer does not move, pollers see nothing new."""
    root = _project(make_project, tmp_path, WEIRD)
    first = _publish(root, WEIRD_KEY, ["same"])
    storage = VersionedStateStorage(store_url)
    pointer_before = storage.pointer_info(WEIRD_KEY)
    (result,) = refresh_state(root).results
    assert result.status == "unchanged" and result.ok
    assert result.published == first
    assert [v.version for v in storage.versions(WEIRD_KEY)] == [first]
    assert storage.pointer_info(WEIRD_KEY) == pointer_before
    records = storage.records(WEIRD_KEY)
    assert [r.status for r in records[:2]] == ["unchanged", "succeeded"]
    assert records[0].version == first

    if not store_url.startswith("file://"):
        # memory:// is invisible to a code location's worker processes; on s3 and gs the
        # poller's question is the latest pointer, checked unmoved above
        return
    from defstate.server.location import CodeLocation

    location = CodeLocation(root)
    try:
        assert location.reload() is not None
        seen: dict[str, str] = {}
        assert moved_keys(location, seen) == []
        refresh_state(root)
        assert moved_keys(location, seen) == []  # unchanged: pollers are not woken
        _publish(root, WEIRD_KEY, ["changed"])
        assert moved_keys(location, seen) == [WEIRD_KEY]
    finally:
        location.close()


LOCAL_STATES = {
    "file": "type: fixture_components.ListComponent\nattributes:\n  name: same\n"
    "  source_file: {source}\n",
    "directory": "type: fixture_components.DirectoryComponent\nattributes:\n"
    "  tag_file: {source}\n  files: 3\n",
}


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_local_refresh_to_identical_bytes_is_unchanged(
    kind: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Guarantee 7 for ``LOCAL_FILESYSTEM``: same bytes as the current state -> ``unchanged``
    (CLI ``--json`` and Python API); a record is written, the state is not rewritten (same
    inode and modification time, so the pin's ``created_at`` and the UI's "out of date" do
    not move), and no temporary is left. Different bytes publish again."""
    source = tmp_path / "source.txt"
    source.write_text('["a"]' if kind == "file" else "v1")
    root = make_project({"defs/x/defs.yaml": LOCAL_STATES[kind].format(source=source)})
    key = "List[same]" if kind == "file" else "DirectoryComponent"
    (first,) = refresh_state(root).results
    assert first.status == "succeeded" and first.version is not None
    key_dir = root / "defs/.local_defs_state" / encode_key(key)
    state = key_dir / "state"

    def identity() -> list[tuple[str, int, int]]:
        paths = [state, *sorted(state.iterdir())] if state.is_dir() else [state]
        return [(p.name, p.stat().st_ino, p.stat().st_mtime_ns) for p in paths]

    before, pin_before = identity(), load_defs(root).state_info.get(key)
    (api,) = refresh_state(root).results
    assert (api.status, api.ok, api.published) == ("unchanged", True, "local")
    assert api.version is not None and api.version.created_at == first.version.created_at
    assert api.size == first.size
    done = run_cli("state", "refresh", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    (cli,) = json.loads(done.stdout)["results"]
    assert (cli["status"], cli["created_at"]) == ("unchanged", first.version.created_at)
    assert identity() == before
    assert load_defs(root).state_info.get(key) == pin_before
    records = LocalStateStorage(root / "defs/.local_defs_state").records(key)
    assert [r.status for r in records] == ["unchanged", "unchanged", "succeeded"]
    assert [p.name for p in key_dir.iterdir() if p.name.startswith((".tmp-", ".old-"))] == []

    source.write_text('["b"]' if kind == "file" else "v2")
    (changed,) = refresh_state(root).results
    assert changed.status == "succeeded"
    assert identity() != before


def test_same_state_compares_names_kinds_links_and_bytes(tmp_path: Path) -> None:
    """What ``unchanged`` means for local state: the same names, kinds, link targets and
    bytes (a one-byte change deep in a tree, or in the last block of a big file, differs)."""

    def tree(name: str, *, text: str = "x", link: str = "a.txt", extra: bool = False) -> Path:
        root = tmp_path / name
        (root / "sub/deeper").mkdir(parents=True)
        (root / "a.txt").write_text("a")
        (root / "sub/deeper/b.bin").write_bytes(b"\0" * (3 << 20) + text.encode())
        (root / "link").symlink_to(link)
        if extra:
            (root / "sub/empty").mkdir()
        return root

    base = tree("base")
    assert same_state(base, tree("same"))
    assert not same_state(base, tree("text", text="y"))
    assert not same_state(base, tree("link", link="sub"))
    assert not same_state(base, tree("extra", extra=True))
    assert not same_state(base, base / "a.txt")
    big = base / "sub/deeper/b.bin"
    assert same_state(big, tree("again") / "sub/deeper/b.bin")
    assert not same_state(big, tree("other", text="z") / "sub/deeper/b.bin")


# ------------------------------------------------------------ 8. environment faults


def test_unwritable_download_cache_falls_back_to_a_temporary_one(
    shared_url: str,
    make_project: ProjectFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Guarantee 8: a load never fails because its download cache cannot be written."""
    root = _project(make_project, tmp_path, WEIRD)
    _publish(root, WEIRD_KEY, ["x"])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, "defstate.state_storage"):
        result = load_defs(root)
    assert result.ok, result.errors
    assert [str(k) for k in result.definitions.asset_keys] == ["x"]
    assert any("cannot be written" in r.getMessage() for r in caplog.records)


def test_damaged_old_manifest_is_reported_and_skipped(
    shared_url: str,
    make_project: ProjectFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Guarantee 8: history, gc and diff report a damaged old manifest and skip it."""
    root = _project(make_project, tmp_path, WEIRD)
    storage, (v0, v1, v2) = _versions(root, shared_url, 3)
    storage.store.write(f"{storage.version_path(WEIRD_KEY, v0)}/manifest.json", b"{garbage")
    with caplog.at_level(logging.WARNING, "defstate.state_storage"):
        history = state_history(root, WEIRD_KEY)
    assert [v.version for v in history.versions] == [v1, v2]
    assert any(v0 in r.getMessage() for r in caplog.records)
    assert diff_state(root, WEIRD_KEY).old == v1
    report = gc_state(root, keep=0, grace=0)
    assert report.ok and report.deleted == {WEIRD_KEY: [v1]}
    (problem,) = report.keys[0].problems
    assert v0 in problem and "not a valid manifest" in problem
    done = run_cli(
        "state", "gc", "--grace", "0", cwd=root, env={"DEFSTATE_STATE_STORAGE_URL": shared_url}
    )
    assert done.returncode == 0 and v0 in done.stderr and "warning" in done.stderr


def test_relative_file_url_is_an_error(make_project: ProjectFactory, tmp_path: Path) -> None:
    """Guarantee 8: ``file://relative`` never silently stores relative to the cwd."""
    for url in ("file://relative/store", "file:relative", "relative/store"):
        with pytest.raises(StateStorageError, match="absolute path"):
            VersionedStateStorage(url).latest("k")
    root = _project(make_project, tmp_path, "api")
    done = run_cli(
        "list", "defs", "--no-refresh", cwd=root, env={"DEFSTATE_STATE_STORAGE_URL": "file://rel/x"}
    )
    assert done.returncode == 1 and "absolute path" in done.stderr
    assert not (root / "rel").exists() and not Path("rel").exists()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_not_retried_and_leaves_no_partial_files(
    full_disk: Path, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guarantee 8: ENOSPC fails at once (no retries) and leaves no partial files in the
    store or the state root; the previous version stays latest."""
    url = f"file://{full_disk}/store"
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    root = _project(make_project, tmp_path, WEIRD)
    first = _publish(root, WEIRD_KEY, ["small"])
    _source(root).write_text(json.dumps(["x" * 100] * 20_000))  # ~2 MB: does not fit
    started = time.monotonic()
    (result,) = refresh_state(root).results
    assert result.status == "failed" and "no space left" in (result.error or "")
    assert "attempts" not in (result.error or "")  # failed on the first storage attempt
    assert time.monotonic() - started < 30
    storage = VersionedStateStorage(url)
    assert _assert_pointer_sound(storage, WEIRD_KEY) == first
    leftovers = [p.name for p in full_disk.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    assert [v.version for v in storage.versions(WEIRD_KEY)] == [first]
    assert [s.version for s in storage.inventory(WEIRD_KEY)] == [first]  # no partial version


def test_local_state_full_disk_keeps_previous_state(
    full_disk: Path, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Guarantee 8 for LOCAL_FILESYSTEM: a refresh that fills the disk leaves the previous
    state and no temporaries in the state root."""
    source = tmp_path / "local.json"
    source.write_text('["a"]')
    root = make_project(
        {
            "defs/api/defs.yaml": (
                "type: fixture_components.ListComponent\nattributes:\n  name: api\n"
                f"  source_file: {source}\n"
            )
        },
        pyproject_extra=f'defs_dir = "{full_disk}/defs"\n',
    )
    (full_disk / "defs/api").mkdir(parents=True)
    (full_disk / "defs/api/defs.yaml").write_text((root / "defs/api/defs.yaml").read_text())
    assert refresh_state(root).ok
    source.write_text(json.dumps(["y" * 100] * 20_000))
    (result,) = refresh_state(root).results
    assert not result.ok
    assert [str(k) for k in load_defs(root).definitions.asset_keys] == ["a"]
    state_root = full_disk / "defs/.local_defs_state"
    assert [p for p in state_root.rglob(".tmp-*")] == []


def test_publication_that_fails_before_the_pointer_leaves_no_version(
    shared_url: str, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed upload of the manifest removes the bytes it uploaded (nothing to gc)."""
    root = _project(make_project, tmp_path, WEIRD)
    first = _publish(root, WEIRD_KEY, ["a"])
    storage = VersionedStateStorage(shared_url)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError("denied")

    original = storage.store.write
    monkeypatch.setattr(
        storage.store,
        "write",
        lambda p, *a, **k: refuse() if p.endswith("manifest.json") else original(p, *a, **k),
    )
    state = tmp_path / "new"
    state.write_text('["b"]')
    with pytest.raises(DefstateError, match="access denied"):
        storage.publish(WEIRD_KEY, state, {})
    assert [s.version for s in storage.inventory(WEIRD_KEY)] == [first]
    assert storage.live_pins(WEIRD_KEY)[0] == set()  # the claim is gone too
