"""The state storage contract: one set of tests every storage runs (like fsspec's
``tests/abstract``). ``test_storage_contract.py`` mixes :class:`StorageContract` into one class
per storage; the storage's capabilities decide which tests apply to it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import subprocess_env
from defstate.errors import AlreadyRefreshingError, StateStorageError
from defstate.state_storage.base import StateStorage, version_store
from defstate.state_storage.records import RefreshRecord
from defstate.state_storage.state_info import StateInfo, StateVersion

KEY = "List[contract key/with spaces]"
LONG_KEY = "List[" + "long-" * 60 + "]"  # encoded over 200 characters: two folder levels
LEASE_TTL = 2.0
HOLD_UNTIL_KILLED = """
import sys, time
{opening}
with storage.refresh_lock(sys.argv[1], wait=False, ttl=float(sys.argv[2])):
    print("held", flush=True)
    time.sleep(600)
"""


def publish(
    storage: StateStorage, content: bytes | dict[str, bytes], key: str = KEY
) -> StateVersion:
    """Refresh ``key`` with a file (bytes) or a directory ({name: bytes}) state."""
    with storage.begin_write(key, {"component": "contract"}) as write:
        write_state(write.path, content)
        return write.commit()


def write_state(path: Path, content: bytes | dict[str, bytes]) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
        return
    path.mkdir()
    for name, data in content.items():
        (path / name).write_bytes(data)


def read_state(path: Path) -> bytes | dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return path.read_bytes()


def record(status: str, started_at: str, key: str = KEY) -> RefreshRecord:
    return RefreshRecord(
        key=key,
        trigger="contract",
        started_at=started_at,
        finished_at=started_at,
        attempts=1,
        status=status,
    )


class StorageContract:
    """Behaviour every :class:`StateStorage` promises. Subclasses provide ``storage``."""

    def corrupt(self, storage: StateStorage, version: StateVersion) -> bool:
        """Damage ``version``'s stored bytes (and drop local copies); ``False`` when the
        storage keeps no checksummed copy, so there is nothing to detect."""
        return False

    def opening_code(self, storage: StateStorage) -> str | None:
        """Python that binds ``storage`` to this same storage in another process; ``None``
        when no other process can reach it (it lives in this process's memory)."""
        return None

    @pytest.fixture
    def storage(self) -> StateStorage:
        raise NotImplementedError

    def skip_unless(self, storage: StateStorage, capability: str) -> None:
        if not getattr(storage, capability):
            pytest.skip(f"{type(storage).__name__} is not {capability}")

    # -- publish and read back ------------------------------------------------------------

    def test_a_key_never_refreshed_has_no_latest(self, storage: StateStorage) -> None:
        assert storage.latest(KEY) is None

    def test_publish_then_read_back_a_file(self, storage: StateStorage) -> None:
        version = publish(storage, b'["a", "b"]')
        latest = storage.latest(KEY)
        assert latest is not None and latest.key == KEY
        assert latest.version == version.version
        assert latest.management_type is storage.management_type
        assert read_state(storage.state_path(latest)) == b'["a", "b"]'

    def test_publish_then_read_back_a_directory(self, storage: StateStorage) -> None:
        files = {"a.json": b"1", "b.json": b"2" * 1000}
        publish(storage, files)
        latest = storage.latest(KEY)
        assert latest is not None
        assert read_state(storage.state_path(latest)) == files

    def test_a_newer_publish_becomes_latest(self, storage: StateStorage) -> None:
        publish(storage, b"old")
        publish(storage, b"new")
        latest = storage.latest(KEY)
        assert latest is not None and read_state(storage.state_path(latest)) == b"new"

    def test_an_aborted_write_keeps_the_previous_state(self, storage: StateStorage) -> None:
        publish(storage, b"kept")
        with pytest.raises(RuntimeError), storage.begin_write(KEY) as write:
            write.path.write_bytes(b"half")
            raise RuntimeError("the component failed")
        latest = storage.latest(KEY)
        assert latest is not None and read_state(storage.state_path(latest)) == b"kept"

    def test_keys_are_independent(self, storage: StateStorage) -> None:
        publish(storage, b"one", key="List[one]")
        publish(storage, b"two", key="List[two]")
        one, two = storage.latest("List[one]"), storage.latest("List[two]")
        assert one is not None and two is not None
        assert read_state(storage.state_path(one)) == b"one"
        assert read_state(storage.state_path(two)) == b"two"

    # -- key listing ----------------------------------------------------------------------

    def test_an_empty_storage_lists_no_keys(self, storage: StateStorage) -> None:
        assert storage.stored_keys() == []

    def test_every_published_key_is_listed_once_sorted(self, storage: StateStorage) -> None:
        keys = [KEY, LONG_KEY, "List[b]", "List[a]", "Dbt[%2F ünïcode/..]"]
        for key in keys:
            publish(storage, key.encode(), key=key)
        publish(storage, b"again", key="List[a]")
        assert storage.stored_keys() == sorted(keys)
        for key in storage.stored_keys():  # each listed key reads back
            latest = storage.latest(key)
            assert latest is not None, key

    def test_latest_many_agrees_with_latest(self, storage: StateStorage) -> None:
        publish(storage, b"one", key="List[one]")
        publish(storage, b"two", key="List[two]")
        publish(storage, b"two again", key="List[two]")
        keys = ["List[one]", "List[two]", "List[never]"]
        for _ in range(2):  # the second answer may come from a cache of the first
            answered = storage.latest_many(keys)
            assert set(answered) <= set(keys)
            for key, version in answered.items():
                assert version == storage.latest(key)

    # -- pins and reconstruction ----------------------------------------------------------

    def test_a_pin_reads_back_what_it_pinned(self, storage: StateStorage) -> None:
        version = publish(storage, b"pinned")
        pin = StateInfo.from_json(StateInfo({KEY: version}).to_json())
        pinned = pin.get(KEY)
        assert pinned is not None and pinned.version == version.version
        assert read_state(storage.state_path(pinned)) == b"pinned"

    def test_a_pin_outlives_newer_versions(self, storage: StateStorage) -> None:
        self.skip_unless(storage, "reads_old_versions")
        old = publish(storage, b"old")
        publish(storage, b"new")
        assert read_state(storage.state_path(old)) == b"old"

    # -- versions: history, rollback, deletion --------------------------------------------

    def test_versions_are_listed_oldest_first(self, storage: StateStorage) -> None:
        self.skip_unless(storage, "keeps_versions")
        store = version_store(storage)
        assert store is not None
        published = [publish(storage, f"v{i}".encode()).version for i in range(3)]
        assert [v.version for v in store.versions(KEY)] == published
        assert store.version(KEY, published[1]).version == published[1]

    def test_rollback_moves_latest_back(self, storage: StateStorage) -> None:
        self.skip_unless(storage, "keeps_versions")
        store = version_store(storage)
        assert store is not None
        first = publish(storage, b"first")
        publish(storage, b"second")
        store.rollback(KEY, first.version)
        latest = storage.latest(KEY)
        assert latest is not None and latest.version == first.version
        assert read_state(storage.state_path(latest)) == b"first"

    def test_a_deleted_version_is_gone_and_others_stay(self, storage: StateStorage) -> None:
        self.skip_unless(storage, "keeps_versions")
        store = version_store(storage)
        assert store is not None
        old = publish(storage, b"old")
        new = publish(storage, b"new")
        store.delete_version(KEY, old.version)
        assert [v.version for v in store.versions(KEY)] == [new.version]
        with pytest.raises(StateStorageError):
            store.version(KEY, old.version)

    def test_an_unknown_version_is_a_storage_error(self, storage: StateStorage) -> None:
        self.skip_unless(storage, "keeps_versions")
        store = version_store(storage)
        assert store is not None
        publish(storage, b"x")
        with pytest.raises(StateStorageError):
            store.version(KEY, "../../etc/passwd")

    # -- refresh records ------------------------------------------------------------------

    def test_records_are_kept_newest_first(self, storage: StateStorage) -> None:
        for second in range(3):
            storage.write_record(record("succeeded", f"2026-01-01T00:00:0{second}+00:00"))
        storage.write_record(record("failed", "2026-01-01T00:00:09+00:00", key="List[other]"))
        kept = storage.records(KEY)
        assert [r.started_at[-8:-6] for r in kept] == ["02", "01", "00"]
        assert storage.records(KEY, limit=1)[0].started_at == kept[0].started_at
        (other,) = storage.records("List[other]")
        assert other.status == "failed"

    def test_records_many_agrees_with_records(self, storage: StateStorage) -> None:
        for second in range(3):
            storage.write_record(record("succeeded", f"2026-01-01T00:00:0{second}+00:00"))
        storage.write_record(record("failed", "2026-01-01T00:00:09+00:00", key="List[other]"))
        keys = [KEY, "List[other]", "List[never]"]
        for _ in range(2):  # the second answer may come from a cache of the first
            answered = storage.records_many(keys, 2)
            assert set(answered) <= set(keys)
            for key, found in answered.items():
                assert found == storage.records(key, 2), key

    # -- single flight --------------------------------------------------------------------

    def test_a_held_key_is_already_refreshing_for_others(self, storage: StateStorage) -> None:
        outcome: list[BaseException | bool] = []

        def other() -> None:
            try:
                with storage.refresh_lock(KEY, wait=False, ttl=60) as waited:
                    outcome.append(waited)
            except BaseException as exc:
                outcome.append(exc)

        with storage.refresh_lock(KEY, wait=False, ttl=60) as waited:
            assert waited is False
            thread = threading.Thread(target=other)
            thread.start()
            thread.join(60)
        assert len(outcome) == 1 and isinstance(outcome[0], AlreadyRefreshingError)
        with storage.refresh_lock(KEY, wait=False, ttl=60) as waited:  # released
            assert waited is False

    def test_a_waiter_gets_the_key_once_it_is_released(self, storage: StateStorage) -> None:
        holding, waited_for = threading.Event(), []

        def other() -> None:
            holding.wait(30)
            with storage.refresh_lock(KEY, wait=True, ttl=60) as waited:
                waited_for.append(waited)

        thread = threading.Thread(target=other)
        thread.start()
        with storage.refresh_lock(KEY, wait=False, ttl=60):
            holding.set()
            thread.join(0.3)  # the other side is now waiting
        thread.join(60)
        assert waited_for == [True]

    @pytest.mark.slow  # waits out a real lease ttl (about 5 s a storage)
    def test_a_dead_holders_lease_is_reclaimed_a_live_one_blocks(
        self, storage: StateStorage
    ) -> None:
        """Across processes: a holder that keeps running blocks another process (past the
        ttl, as its lease is renewed); once it is killed, the key is free again at most
        ``ttl`` later (a lock the OS releases: at once)."""
        opening = self.opening_code(storage)
        if opening is None:
            pytest.skip(f"{type(storage).__name__} lives in one process")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_UNTIL_KILLED.format(opening=opening), KEY, str(LEASE_TTL)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            if storage.uses_leases:
                time.sleep(LEASE_TTL * 1.25)  # past the ttl: only renewals keep it held
            with (
                pytest.raises(AlreadyRefreshingError),
                storage.refresh_lock(KEY, wait=False, ttl=LEASE_TTL),
            ):
                pass
            holder.kill()
            holder.wait()
            killed_at = time.monotonic()
            with storage.refresh_lock(KEY, wait=True, ttl=LEASE_TTL):
                elapsed = time.monotonic() - killed_at
            # the ttl, plus the storage clock's one-second granularity and a loaded machine
            assert elapsed < LEASE_TTL + 10, elapsed
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()

    # -- corruption -----------------------------------------------------------------------

    def test_corrupted_state_is_detected_and_never_read(self, storage: StateStorage) -> None:
        version = publish(storage, b'["good"]')
        if not self.corrupt(storage, version):
            pytest.skip(f"{type(storage).__name__} keeps no checksummed copy")
        with pytest.raises(StateStorageError, match=r"sha256|expected"):
            storage.state_path(version)
