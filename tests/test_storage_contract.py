"""The storage contract (``storage_contract.py``) against every storage: local, versioned on
memory://, file://, s3:// (moto's server) and gs:// (fake-gcs-server), and snapshots."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from defstate.state_storage.base import StateStorage
from defstate.state_storage.local import LocalStateStorage
from defstate.state_storage.snapshots import SnapshotStateStorage
from defstate.state_storage.state_info import StateVersion
from defstate.state_storage.versioned import VersionedStateStorage
from storage_contract import StorageContract


class TestLocalStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> StateStorage:
        return LocalStateStorage.for_defs_dir(tmp_path)

    def opening_code(self, storage: StateStorage) -> str | None:
        assert isinstance(storage, LocalStateStorage)
        return (
            "from pathlib import Path\n"
            "from defstate.state_storage.local import LocalStateStorage\n"
            f"storage = LocalStateStorage(Path({str(storage.root)!r}))"
        )


class TestSnapshotStorage(StorageContract):
    @pytest.fixture
    def storage(self) -> Iterator[StateStorage]:
        yield SnapshotStateStorage()


class VersionedContract(StorageContract):
    """Versioned storage: state objects checksummed in an fsspec location."""

    def url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        raise NotImplementedError

    @pytest.fixture
    def storage(
        self, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> StateStorage:
        monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(tmp_path / "cache"))
        return VersionedStateStorage(self.url(request, tmp_path))

    def opening_code(self, storage: StateStorage) -> str | None:
        assert isinstance(storage, VersionedStateStorage)
        return (
            "from defstate.state_storage.versioned import VersionedStateStorage\n"
            f"storage = VersionedStateStorage({storage.url!r})"
        )

    def corrupt(self, storage: StateStorage, version: StateVersion) -> bool:
        assert isinstance(storage, VersionedStateStorage)
        path = storage.state_object_path(version.key, version.version, is_directory=False)
        storage.fs.pipe_file(path, b'["evil"]')
        import shutil

        shutil.rmtree(storage.cache.root, ignore_errors=True)  # as on another machine
        return True


class TestMemoryStorage(VersionedContract):
    def url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        request.addfinalizer(fsspec.filesystem("memory").store.clear)
        return f"memory://defstate-{uuid.uuid4().hex}/state"

    def opening_code(self, storage: StateStorage) -> str | None:
        return None  # memory:// is one store per process


class TestFileStorage(VersionedContract):
    def url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return f"file://{tmp_path}/store/state"


class TestS3Storage(VersionedContract):
    def url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return f"s3://{request.getfixturevalue('s3_bucket')}/state"


class TestGcsStorage(VersionedContract):
    def url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return f"gs://{request.getfixturevalue('gcs_bucket')}/state"
