"""Live pin records cost O(1) storage requests per holder on layout 2 (issue 18 point 2).

A process that serves a load keeps ONE record, ``_pins.d/<holder>.json``, naming every key's
versions: one write to start, one per renewal, one delete at exit, whatever the number of
keys. gc lists ``_pins.d/`` once per run and reads each holder's record once, and still
honours per-key records (``<key>/pins/``: layout 1, publication and rollback claims, and
processes of an older defstate). Requests are counted on moto's HTTP server
(``bench.s3.counted_requests``), as ``test_pointer_layout.py`` does.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.s3 import counted_requests

from conftest import ProjectFactory
from defstate import load_defs
from defstate.loader.state_admin import gc_state
from defstate.server.location import CodeLocation
from defstate.state_storage.pins import LivePins
from defstate.state_storage.versioned import HOLDER_PINS_DIRNAME, VersionedStateStorage
from test_pointer_layout import _project, _publish, _seed, _stored_key


def _pin_requests(lines: list[str]) -> dict[str, int]:
    """The requests among moto's log ``lines`` that touch live pin records, by kind: writes,
    reads and deletes of holder records (``_pins.d/``) and of per-key records
    (``<key>/pins/``), and listings of either."""
    counts = dict.fromkeys(("PUT", "GET", "DELETE", "LIST"), 0)
    per_key = dict(counts)
    for line in lines:
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # werkzeug colours some methods
        request = line.split('"')[1] if line.count('"') >= 2 else line
        method, target = request.split()[:2]
        if "list-type" in target or "prefix=" in target:
            method = "LIST"
        if HOLDER_PINS_DIRNAME in target:
            counts[method] = counts.get(method, 0) + 1
        elif "/pins/" in target or "%2Fpins" in target:
            per_key[method] = per_key.get(method, 0) + 1
    return {
        **{f"holder {m}": n for m, n in counts.items()},
        **{f"key {m}": n for m, n in per_key.items()},
    }


def _versions(names: list[str]) -> dict[str, list[str]]:
    return {f"List[{name}]": [str(uuid.uuid4())] for name in names}


def _holder_record(storage: VersionedStateStorage, pins: LivePins) -> dict[str, object] | None:
    data = storage.store.read(storage._holder_path(pins.holder))
    return None if data is None else dict(json.loads(data))


def test_a_holder_writes_one_record_renews_it_with_one_write_and_deletes_it_at_exit(
    s3_url: str,
) -> None:
    """Start, renewal and exit of a holder of 5 keys and of 60 keys cost the same requests:
    one write each, one delete at exit; nothing per key. The record names every key's
    versions and who holds them, and nothing else (no storage URL, no credentials)."""
    costs = []
    for count in (5, 60):
        storage = VersionedStateStorage(s3_url)
        _seed(storage, [])  # a layout-2 storage (the marker only)
        versions = _versions([f"k{i:02d}" for i in range(count)])
        pins = LivePins(storage, ttl=600)
        with counted_requests() as start:
            pins.hold(versions)
        record = _holder_record(storage, pins)
        assert record is not None
        assert record["keys"] == versions
        assert set(record) == {"format", "holder", "ttl", "purpose", "host", "pid", "keys"}
        assert (record["holder"], record["host"], record["pid"]) == (
            pins.holder,
            socket.gethostname(),
            os.getpid(),
        )
        with counted_requests() as renewal:
            pins.renew()
        with counted_requests() as exit_:
            pins.close()
        assert _holder_record(storage, pins) is None
        costs.append([_pin_requests(log.lines) for log in (start, renewal, exit_)])
        print(count, "keys:", costs[-1], [len(log.lines) for log in (start, renewal, exit_)])
        assert len(renewal.lines) == 1 and len(exit_.lines) == 1, (renewal.lines, exit_.lines)
        assert len(start.lines) <= 2, start.lines  # the layout marker (first time), the write
    assert costs[0] == costs[1]
    assert costs[0][0]["holder PUT"] == costs[0][1]["holder PUT"] == 1
    assert costs[0][2]["holder DELETE"] == 1


@pytest.mark.parametrize("serve", [True, False], ids=["serve", "keep_pinned"])
def test_serving_a_load_pins_every_key_with_one_write(
    serve: bool, s3_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """``serve`` (a code location) and ``load_defs(keep_pinned=True)`` pin the versions of a
    load of 5 keys and of 30 keys with one write, and remove them with one delete."""
    costs = []
    for count in (5, 30):
        names = [f"s{count}x{i:02d}" for i in range(count)]
        storage = VersionedStateStorage(s3_url)
        _seed(storage, names)
        (tmp_path / f"n{count}").mkdir()
        root = _project(make_project, tmp_path / f"n{count}", names)
        close: Callable[[], None]
        with counted_requests() as start:
            if serve:
                location = CodeLocation(root)
                assert location.reload() is not None
                close = location.close
            else:
                loaded = load_defs(root, keep_pinned=True)
                assert loaded.ok and loaded.live_pins is not None, loaded.errors
                close = loaded.live_pins.close
        pinned = storage.live_pins(f"List[{names[-1]}]")[0]
        assert len(pinned) == 1
        with counted_requests() as stop:
            close()
        assert storage.live_pins(f"List[{names[-1]}]")[0] == set()
        costs.append((_pin_requests(start.lines), _pin_requests(stop.lines)))
        print(count, "keys:", costs[-1])
    assert costs[0] == costs[1]
    started, stopped = costs[0]
    assert started["holder PUT"] == 1 and started["key PUT"] == 0
    assert stopped["holder DELETE"] == 1 and stopped["key DELETE"] == 0


def test_gc_reads_the_holder_records_once_per_run_and_keeps_what_they_pin(
    s3_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """Three holders pin versions of 8 keys: gc lists ``_pins.d/`` once and reads each
    record once (a re-check before each deletion lists again but reads nothing unchanged),
    keeps every pinned version, and deletes the others."""
    names = [f"g{i}" for i in range(8)]
    root = _project(make_project, tmp_path, names)
    storage = VersionedStateStorage(s3_url)
    _seed(storage, names)
    old = {name: _publish(storage, tmp_path, name, [f"{name}_2"]) for name in names}
    for name in names:
        _publish(storage, tmp_path, name, [f"{name}_3"])
    holders = [LivePins(storage, ttl=600) for _ in range(3)]
    try:
        for i, pins in enumerate(holders):
            pins.hold({f"List[{name}]": [old[name]] for name in names[i::3]})
        with counted_requests() as dry:
            report = gc_state(root, keep=0, grace=0, dry_run=True)
        assert report.ok
        counted = _pin_requests(dry.lines)
        assert (counted["holder LIST"], counted["holder GET"]) == (1, 3), counted
        with counted_requests() as real:
            report = gc_state(root, keep=0, grace=0)
        counted = _pin_requests(real.lines)
        deleted = sum(len(v) for v in report.deleted.values())
        assert counted["holder GET"] == 3, counted  # the re-checks read nothing again
        assert counted["holder LIST"] == 1 + deleted, counted  # one re-check per deletion
    finally:
        for pins in holders:
            pins.close()
    for key_report in report.keys:
        name = key_report.key[len("List[") : -1]
        kept = {e.version: e.reason for e in key_report.entries if e.action == "kept"}
        assert kept[old[name]] == "pinned by a live process", key_report
        assert len(key_report.deleted) == 1  # the seeded first version: nobody pins it


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def test_gc_keeps_a_holder_records_versions_until_it_expires(
    store_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """A holder record protects its versions while it is renewed; once its process stops
    renewing it expires by the storage's clock (never this host's), gc deletes what it
    pinned, and a record dead for two ttls is deleted."""
    root = _project(make_project, tmp_path, ["e"])
    storage = VersionedStateStorage(store_url)
    versions = [_publish(storage, tmp_path, "e", [f"e_{i}"]) for i in range(3)]
    pins = LivePins(storage, ttl=600)
    pins.hold({"List[e]": [versions[0]]})
    report = gc_state(root, keep=0, grace=0)
    assert report.deleted == {"List[e]": [versions[1]]}
    (key_report,) = report.keys
    reasons = {e.version: e.reason for e in key_report.entries}
    assert reasons[versions[0]] == "pinned by a live process"
    # the process "dies": its last record says ttl 0.2 s and is never renewed
    pins._stop.set()
    storage.write_holder_pins(pins.holder, pins.held, ttl=0.2, purpose="serve")
    _wait_until(lambda: not storage.live_holder_pins().live, "the holder record expired")
    assert gc_state(root, keep=0, grace=0).deleted == {"List[e]": [versions[0]]}
    _wait_until(
        lambda: bool(storage.live_holder_pins()) and _holder_record(storage, pins) is None,
        "a read of the holder records deleted the dead one",
    )
    pins.close()


def test_per_key_records_and_holder_records_are_both_honoured(
    store_url: str, make_project: ProjectFactory, tmp_path: Path
) -> None:
    """A storage with per-key records (a process of an older defstate, still running) and
    holder records: gc keeps what either names. A damaged holder record is reported once
    and ignored (it protects nothing); the others still count."""
    root = _project(make_project, tmp_path, ["m"])
    storage = VersionedStateStorage(store_url)
    versions = [_publish(storage, tmp_path, "m", [f"m_{i}"]) for i in range(4)]
    older_process = str(uuid.uuid4())
    storage.write_pin("List[m]", older_process, [versions[0]], ttl=600, purpose="serve")
    pins = LivePins(storage, ttl=600)
    pins.hold({"List[m]": [versions[1]]})
    damaged = storage._holder_path(str(uuid.uuid4()))
    storage.store.write(damaged, b'{"keys": "not a record"')
    try:
        assert storage.live_pins("List[m]")[0] == {versions[0], versions[1]}
        report = gc_state(root, keep=0, grace=0)
        assert report.deleted == {"List[m]": [versions[2]]}
        assert len(report.problems) == 1 and "is damaged" in report.problems[0]
        assert report.keys[0].problems == ()
        assert report.to_json_dict()["problems"] == list(report.problems)
    finally:
        pins.close()
        storage.delete_pin("List[m]", older_process)
    assert gc_state(root, keep=0, grace=0).deleted == {"List[m]": versions[:2]}


def test_layout_1_keeps_per_key_records_until_migrated(store_url: str, tmp_path: Path) -> None:
    """On a layout-1 storage a holder writes one record per key (what a defstate before
    layout 2 reads); once ``migrate-layout`` ran, its next renewal writes the holder record
    and removes the per-key ones."""
    storage = VersionedStateStorage(store_url)
    keys = ["List[a]", "List[b]"]
    versions = {key: [_stored_key(storage, key, ["x"], layout=1)] for key in keys}
    pins = LivePins(storage, ttl=600)
    try:
        pins.hold(versions)
        assert not storage.pin_records_per_holder()
        assert _holder_record(storage, pins) is None
        assert all(storage._key_pins(key)[0] == set(versions[key]) for key in keys)
        VersionedStateStorage(store_url).migrate_layout()
        pins.renew()
        assert _holder_record(storage, pins) is not None
        assert all(storage._key_pins(key)[0] == set() for key in keys)
        assert all(storage.live_pins(key)[0] == set(versions[key]) for key in keys)
    finally:
        pins.close()
    assert _holder_record(storage, pins) is None
    assert all(storage.live_pins(key)[0] == set() for key in keys)


def test_a_gc_re_check_that_fails_puts_the_manifest_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc deletes a version's manifest, then re-reads the pointer and the live pins: when
    that re-read fails (a storage error, a deadline), the version may be in use, so the
    manifest goes back before the error is raised (a holder that pinned the version meanwhile
    can still read it)."""
    from defstate.errors import StateStorageError
    from defstate.state_storage.pins import LiveHolders

    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
    storage = VersionedStateStorage(f"file://{tmp_path}/store/state")
    versions = [_publish(storage, tmp_path, "r", [f"r_{i}"]) for i in range(2)]
    pins = LivePins(storage, ttl=600)
    pins.hold({"List[r]": [versions[0]]})  # a holder that started after gc read the records

    def unreachable(
        self: VersionedStateStorage, previous: LiveHolders | None = None
    ) -> LiveHolders:
        raise StateStorageError("cannot list the live pin records: timed out")

    monkeypatch.setattr(VersionedStateStorage, "live_holder_pins", unreachable)
    try:
        with pytest.raises(StateStorageError, match="timed out"):
            storage.delete_version("List[r]", versions[0], holders=LiveHolders())
        assert storage.version("List[r]", versions[0]).version == versions[0]
    finally:
        pins.close()
