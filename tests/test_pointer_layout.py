"""Issue 18 point 2: an unchanged project costs a few storage requests per load and per poll
cycle, whatever its number of keys (layout 2: every pointer under one listed prefix), and a
layout-1 storage is still read and can be moved with ``state migrate-layout``.

Requests are counted on moto's real HTTP server: werkzeug logs one line per request it
answers, and the test counts those lines (``bench.s3.counted_requests``, which the bench row
``warm init load s3`` uses too).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from bench.s3 import counted_requests

from conftest import ProjectFactory, run_cli
from defstate import load_defs
from defstate.server.location import CodeLocation
from defstate.server.poller import moved_keys
from defstate.state_storage.pointer_layout import is_tombstone
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.versioned import VersionedStateStorage

VERSIONED = "  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n"


def _project(
    make_project: ProjectFactory, tmp_path: Path, names: list[str], pyproject_extra: str = ""
) -> Path:
    files = {}
    for name in names:
        source = tmp_path / "sources" / f"{name}.json"
        source.parent.mkdir(exist_ok=True)
        source.write_text(json.dumps([f"{name}_1"]))
        files[f"defs/{name}/defs.yaml"] = (
            f"type: fixture_components.ListComponent\nattributes:\n  name: {name}\n"
            f"  source_file: {source}\n" + VERSIONED
        )
    return make_project(files, name=f"proj-{uuid.uuid4().hex[:6]}", pyproject_extra=pyproject_extra)


def _publish(storage: VersionedStateStorage, tmp_path: Path, name: str, assets: list[str]) -> str:
    state = tmp_path / f"state-{uuid.uuid4().hex}.json"
    state.write_text(json.dumps(assets))
    return storage.publish(f"List[{name}]", state, {}).version.version


def _stored_key(storage: VersionedStateStorage, key: str, assets: list[str], *, layout: int) -> str:
    """A key as a publication leaves it (bytes, manifest, pointer), written directly: with
    ``layout=1`` as a defstate before layout 2 wrote it (``<key>/latest.json``)."""
    from defstate.state_storage.archive import sha256_bytes
    from defstate.state_storage.management import ManagementType
    from defstate.state_storage.state_info import StateVersion
    from defstate.state_storage.versioned import manifest_document

    data = json.dumps(assets).encode()
    version = str(uuid.uuid4())
    manifest = manifest_document(
        StateVersion(
            key,
            version,
            "2026-01-01T00:00:00+00:00",
            ManagementType.VERSIONED_STATE_STORAGE,
            size=len(data),
            sha256=sha256_bytes(data),
        )
    )
    base = storage.version_path(key, version)
    storage.store.write(f"{base}/state", data)
    storage.store.write(f"{base}/manifest.json", json.dumps(manifest).encode())
    pointer = json.dumps({**manifest, "previous": None}).encode()
    if layout == 1:
        storage.store.write(f"{storage.key_path(key)}/latest.json", pointer)
    else:
        storage.store.write(storage.pointer_path(key), pointer)
    return version


def _seed(storage: VersionedStateStorage, names: list[str]) -> None:
    """``names`` as keys of a new (layout-2) storage, written concurrently (moto is slow)."""
    from concurrent.futures import ThreadPoolExecutor

    storage.store.write(f"{storage.key_path('x').rsplit('/', 1)[0]}/_layout.json", b'{"layout": 2}')
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _stored_key(storage, f"List[{n}]", [f"{n}_1"], layout=2), names))


def _warm_load_requests(
    url: str, make_project: ProjectFactory, tmp_path: Path, count: int
) -> tuple[int, list[str]]:
    names = [f"k{i:03d}" for i in range(count)]
    tmp_path.mkdir()
    _seed(VersionedStateStorage(url), names)
    root = _project(
        make_project, tmp_path, names, f'[tool.defstate.state_storage]\nurl = "{url}"\n'
    )
    assert load_defs(root).ok  # the cold load (every pointer read, every version cached)
    with counted_requests() as log:
        result = load_defs(root)
    assert result.ok, result.errors
    assert len(result.definitions.asset_keys) == count
    return len(log.lines), log.lines


def test_warm_load_makes_a_few_requests_whatever_the_number_of_keys(
    s3_bucket: str, make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged project's warm initialization load: one read of the layout marker, one
    listing of the pointers (1000 a page), nothing per key."""
    monkeypatch.delenv("DEFSTATE_STATE_STORAGE_URL", raising=False)
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    small, _ = _warm_load_requests(f"s3://{s3_bucket}/a", make_project, tmp_path / "a", 5)
    large, lines = _warm_load_requests(f"s3://{s3_bucket}/b", make_project, tmp_path / "b", 25)
    print("\n".join(lines))
    assert large <= 4, lines
    assert large == small, lines


def test_one_poll_cycle_makes_a_few_requests_and_reads_only_what_changed(
    s3_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    names = [f"p{i:02d}" for i in range(20)]
    storage = VersionedStateStorage(s3_url)
    _seed(storage, names)
    root = _project(make_project, tmp_path, names)
    location = CodeLocation(root)
    try:
        assert location.reload() is not None
        seen: dict[str, str] = {}
        with counted_requests() as log:
            assert moved_keys(location, seen) == []
        unchanged = len(log.lines)
        assert unchanged <= 4, log.lines
        _publish(storage, tmp_path, "p07", ["p07_new"])
        with counted_requests() as log:
            assert moved_keys(location, seen) == ["List[p07]"]
        gets = [line for line in log.lines if "/_pointers.d/List" in line]
        assert len(gets) == 1, log.lines  # only the pointer that changed is read
        assert len(log.lines) <= unchanged + 1, log.lines
    finally:
        location.close()


def test_state_listings_read_every_pointer_with_one_listing(
    s3_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """`state ls` and the UI's state view ask for every key's latest version: one listing
    of the pointers, not one read per key (records are listed per key by the UI, see
    ``test_state_view_reads_each_refresh_record_once``)."""
    from defstate.loader.state_admin import list_state
    from defstate.server.state_panel import overview_document

    names = [f"s{i:02d}" for i in range(12)]
    storage = VersionedStateStorage(s3_url)
    _seed(storage, names)
    root = _project(make_project, tmp_path, names)
    list_state(root)  # cold: every pointer is read once into the pointer cache
    _publish(storage, tmp_path, "s03", ["s03_new"])
    with counted_requests() as log:
        rows = list_state(root)
    assert [row.key for row in rows] == sorted(f"List[{n}]" for n in names)
    assert all(row.latest is not None and row.error is None for row in rows)
    assert storage.latest("List[s03]") == next(r.latest for r in rows if r.key == "List[s03]")
    pointer_reads = [line for line in log.lines if "/_pointers.d/List" in line]
    assert len(pointer_reads) == 1, log.lines  # only the pointer that moved
    assert len(log.lines) <= 4, log.lines
    with counted_requests() as log:
        overview = overview_document(root)
    assert [row["latest"]["version"] for row in overview["keys"]] == [
        row.latest.version for row in rows if row.latest is not None
    ]
    assert not [line for line in log.lines if "/_pointers.d/List" in line], log.lines


def _record(key: str, started: str, status: str) -> RefreshRecord:
    return RefreshRecord(
        key=key, trigger="cli", started_at=started, finished_at=started, attempts=1, status=status
    )


def test_state_view_reads_each_refresh_record_once(
    s3_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """The UI's state view lists each key's records (concurrently) and downloads only the
    records it never read before: a record is never rewritten, so the second view of an
    unchanged project reads none, and a new record is read once. Answers are the same as
    ``records()``."""
    from defstate.server.state_panel import RECORDS_PER_KEY, overview_document

    names = [f"r{i:02d}" for i in range(6)]
    storage = VersionedStateStorage(s3_url)
    _seed(storage, names)
    for index, name in enumerate(names):
        for second in range(2):
            started = f"2026-01-01T00:00:{index}{second}+00:00"
            storage.write_record(_record(f"List[{name}]", started, "succeeded"))
    root = _project(make_project, tmp_path, names)

    def record_gets(lines: list[str]) -> list[str]:
        return [x for x in lines if "/records/" in x and "GET" in x and "list-type" not in x]

    with counted_requests() as cold:
        first = overview_document(root)
    assert len(record_gets(cold.lines)) == 2 * len(names), cold.lines
    with counted_requests() as warm:
        second = overview_document(root)
    assert second == first
    assert record_gets(warm.lines) == [], warm.lines
    assert len(warm.lines) <= len(names) + 4, warm.lines  # one listing per key
    for row in second["keys"]:
        expected = storage.records(row["key"], RECORDS_PER_KEY)
        assert row["records"] == [r.to_json_dict() for r in expected]
    storage.write_record(_record("List[r03]", "2026-01-02T00:00:00+00:00", "failed"))
    with counted_requests() as changed:
        third = overview_document(root)
    assert len(record_gets(changed.lines)) == 1, changed.lines
    (row,) = [r for r in third["keys"] if r["key"] == "List[r03]"]
    assert [r["status"] for r in row["records"]] == ["failed", "succeeded", "succeeded"]


def test_new_storage_starts_at_layout_2_and_lists_its_pointers(
    store_url: str, tmp_path: Path
) -> None:
    storage = VersionedStateStorage(store_url)
    version = _publish(storage, tmp_path, "a", ["a_1"])
    fresh = VersionedStateStorage(store_url)
    assert fresh.layout() == 2
    assert fresh.store.read(fresh.pointer_path("List[a]")) is not None
    assert fresh.store.read(f"{fresh.key_path('List[a]')}/latest.json") is None
    listed = fresh.latest_many(["List[a]", "List[none]"])
    assert listed["List[none]"] is None
    assert listed["List[a]"] is not None and listed["List[a]"].version == version


def test_damaged_or_unwritable_pointer_cache_costs_reads_not_answers(
    s3_url: str, tmp_path: Path
) -> None:
    storage = VersionedStateStorage(s3_url)
    versions = {n: _publish(storage, tmp_path, n, [n]) for n in ("a", "b")}
    keys = ["List[a]", "List[b]"]
    assert {k: v.version for k, v in storage.latest_many(keys).items() if v} == {
        f"List[{n}]": v for n, v in versions.items()
    }
    cache_file = storage.cache.root / ".pointers.json"
    assert cache_file.is_file()
    for damage in (b"{not json", b'{"format": 1, "pointers": {"x": 1}}', b"[]"):
        cache_file.write_bytes(damage)
        with counted_requests() as log:
            found = VersionedStateStorage(s3_url).latest_many(keys)
        assert {k: v.version for k, v in found.items() if v} == {
            f"List[{n}]": v for n, v in versions.items()
        }
        assert sum("/_pointers.d/List" in line for line in log.lines) == 2  # read again
    # A cache entry with the right token but another version never wins over a new token.
    newer = _publish(storage, tmp_path, "a", ["a2"])
    found = VersionedStateStorage(s3_url).latest_many(keys)
    assert found["List[a]"] is not None and found["List[a]"].version == newer
    cache_file.unlink()
    cache_file.mkdir()  # unwritable: loads still answer
    found = VersionedStateStorage(s3_url).latest_many(keys)
    assert found["List[a]"] is not None and found["List[a]"].version == newer


# ------------------------------------------------------------------- layout 1 and migration


def _layout_1_storage(url: str, tmp_path: Path) -> dict[str, str]:
    """A layout-1 storage: one key written as an old defstate did, then two published by
    this one (a storage that already holds keys stays at its layout)."""
    storage = VersionedStateStorage(url)
    versions = {"List[old]": _stored_key(storage, "List[old]", ["old_1"], layout=1)}
    for name in ("a", "b*[?]"):
        versions[f"List[{name}]"] = _publish(storage, tmp_path, name, [f"{name}_1"])
    assert storage.layout() == 1
    return versions


def test_layout_1_storage_is_read_and_written_as_before(store_url: str, tmp_path: Path) -> None:
    versions = _layout_1_storage(store_url, tmp_path)
    reader = VersionedStateStorage(store_url)
    assert reader.latest_many(list(versions)) == {}  # no listing on layout 1: one read each
    assert {k: reader.latest(k).version for k in versions} == versions  # type: ignore[union-attr]
    for key in versions:
        assert reader.store.read(f"{reader.key_path(key)}/latest.json") is not None
        assert reader.store.read(reader.pointer_path(key)) is None


def test_migrate_layout_moves_every_pointer_and_is_idempotent(
    store_url: str, tmp_path: Path
) -> None:
    versions = _layout_1_storage(store_url, tmp_path)
    stale = VersionedStateStorage(store_url)
    assert stale.layout() == 1  # a process that read the layout before the migration
    result = VersionedStateStorage(store_url).migrate_layout()
    assert (result.layout_before, result.layout) == (1, 2)
    assert sorted(result.moved) == sorted(versions)
    fresh = VersionedStateStorage(store_url)
    assert fresh.layout() == 2
    assert {k: v.version for k, v in fresh.latest_many(list(versions)).items() if v} == versions
    for key in versions:
        old = fresh.store.read(f"{fresh.key_path(key)}/latest.json")
        assert old is not None and is_tombstone(old)
        assert stale.latest(key).version == versions[key]  # type: ignore[union-attr]
    # publications after the migration, from a fresh and from a stale process, both land
    newer = _publish(fresh, tmp_path, "a", ["a_2"])
    newest = _publish(stale, tmp_path, "a", ["a_3"])
    assert fresh.latest("List[a]").version == newest  # type: ignore[union-attr]
    assert VersionedStateStorage(store_url).pointer_info("List[a]")[:2] == (newest, newer)  # type: ignore[index]
    again = VersionedStateStorage(store_url).migrate_layout()
    assert (again.layout_before, again.layout, again.moved) == (2, 2, ())


def test_migration_killed_midway_leaves_every_key_readable_and_finishes_when_rerun(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = _layout_1_storage(store_url, tmp_path)
    original = VersionedStateStorage._migrate_key
    calls: list[str] = []

    def dies_on_the_second(self: VersionedStateStorage, key: str, *, marked: bool) -> bool:
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        calls.append(key)
        return original(self, key, marked=marked)

    monkeypatch.setattr(VersionedStateStorage, "_migrate_key", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        VersionedStateStorage(store_url).migrate_layout()
    monkeypatch.setattr(VersionedStateStorage, "_migrate_key", original)
    midway = VersionedStateStorage(store_url)
    assert midway.layout() == 1  # the marker is written last
    assert {k: midway.latest(k).version for k in versions} == versions  # type: ignore[union-attr]
    moved_key = calls[0]
    newer = _publish(midway, tmp_path, moved_key[5:-1], ["moved-then-published"])
    assert VersionedStateStorage(store_url).latest(moved_key).version == newer  # type: ignore[union-attr]
    VersionedStateStorage(store_url).migrate_layout()
    done = VersionedStateStorage(store_url)
    assert done.layout() == 2
    expected = {**versions, moved_key: newer}
    assert {k: v.version for k, v in done.latest_many(list(versions)).items() if v} == expected


def test_publication_racing_the_migration_of_its_key_is_not_lost(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layout-1 writer moves the old pointer after the migration copied it, before the
    tombstone: the tombstone's conditional write fails and the key is copied again."""
    _layout_1_storage(store_url, tmp_path)
    writer = VersionedStateStorage(store_url)
    assert writer.layout() == 1
    migrator = VersionedStateStorage(store_url)
    published: list[str] = []
    original = VersionedStateStorage._write_pointer

    def publish_before_the_tombstone(
        self: VersionedStateStorage, key: str, path: str, data: bytes, token: str | None
    ) -> str | None:
        if self is migrator and key == "List[a]" and path.endswith("latest.json") and not published:
            published.append(_publish(writer, tmp_path, "a", ["racing"]))
        return original(self, key, path, data, token)

    monkeypatch.setattr(VersionedStateStorage, "_write_pointer", publish_before_the_tombstone)
    migrator.migrate_layout()
    assert published
    after = VersionedStateStorage(store_url)
    assert after.latest("List[a]").version == published[0]  # type: ignore[union-attr]
    assert after.latest_many(["List[a]"])["List[a]"].version == published[0]  # type: ignore[union-attr]


def test_migrate_layout_cli(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"file://{tmp_path}/store"
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    _layout_1_storage(url, tmp_path)
    root = _project(make_project, tmp_path, ["a"])
    result = run_cli("state", "migrate-layout", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["layout_before"], doc["layout"]) == (1, 2)
    assert sorted(doc["moved"]) == ["List[a]", "List[b*[?]]", "List[old]"]
    again = run_cli("state", "migrate-layout", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "layout 2 -> layout 2, 0 keys moved" in again.stdout


def test_a_poll_of_a_storage_that_refuses_the_pointer_listing_reads_key_by_key(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing ``_pointers.d/`` denied (a permission the reader lacks): the poll still finds
    the key that moved, as a load does, instead of failing at every interval."""
    url = f"file://{tmp_path}/store"
    monkeypatch.setenv("DEFSTATE_STATE_STORAGE_URL", url)
    names = ["p0", "p1"]
    storage = VersionedStateStorage(url)
    _seed(storage, names)
    location = CodeLocation(_project(make_project, tmp_path, names))
    try:
        assert location.reload() is not None
        seen: dict[str, str] = {}

        def denied(self: VersionedStateStorage, keys: object) -> object:
            raise PermissionError("listing denied")

        monkeypatch.setattr(VersionedStateStorage, "latest_many", denied)
        assert moved_keys(location, seen) == []
        _publish(storage, tmp_path, "p1", ["p1_new"])
        assert moved_keys(location, seen) == ["List[p1]"]
    finally:
        location.close()


def test_a_key_the_listing_shows_without_a_pointer_costs_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On layout 2 the pointer listing already says a key has no layout-2 pointer: only its
    layout-1 place is read (a key without state costs one read, not two)."""
    storage = VersionedStateStorage(f"file://{tmp_path}/store")
    _seed(storage, ["p0"])
    assert storage.layout(fresh=True) == 2
    store = storage.store
    reads: list[str] = []
    real_read = store.read

    def counting(path: str, timeout: float | None) -> bytes | None:
        reads.append(path)
        return real_read(path, timeout)

    monkeypatch.setattr(store, "read", counting)
    found = storage.latest_many(["List[p0]", "List[none]"])
    assert found["List[p0]"] is not None and found["List[none]"] is None
    assert [p for p in reads if "none" in p] == [f"{storage.key_path('List[none]')}/latest.json"]
