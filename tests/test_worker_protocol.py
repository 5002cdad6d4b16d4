"""The typed server <-> worker protocol and the one atomic-write helper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from defstate.server.protocol import HealthStatus, LoadDocument, LoadRequest
from defstate.server.worker import WorkerLoad
from defstate.state_storage.atomic import TMP_PREFIX, write_atomic, written_aside
from defstate.state_storage.state_info import StateInfo


def test_load_document_round_trips_through_json() -> None:
    document = LoadDocument(
        assets=[{"key": "a/b", "deps": []}],
        errors=[{"message": "boom", "file": "defs.yaml", "line": 3}],
        components=[{"source": "defs.yaml", "key": "k", "management_type": None}],
        fingerprints={"k": "abc"},
        refreshes=[{"key": "k", "ok": True}],
        seconds=1.5,
        load_seconds=1.25,
    )
    assert LoadDocument.from_json(document.to_json()) == document


def test_load_document_rejects_unknown_fields_and_defaults_missing_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fields.*'asets'"):
        LoadDocument.from_json_dict({"asets": []})
    assert LoadDocument.from_json("{}") == LoadDocument()
    assert WorkerLoad({"assets": [{"key": "x"}]}, 1, 0.0).document.assets == [{"key": "x"}]


def test_load_request_round_trips_through_json(tmp_path: Path) -> None:
    request = LoadRequest(tmp_path, dev=True, state_info=StateInfo({}), unchanged_since={"k": "f"})
    assert LoadRequest.from_json(request.to_json()) == request
    assert LoadRequest.from_json(LoadRequest(None).to_json()) == LoadRequest(None)


def test_health_status_is_an_enum_that_serialises_as_its_value() -> None:
    assert HealthStatus("degraded") is HealthStatus.DEGRADED
    assert f"{HealthStatus.OK}" == "ok"


def test_worker_entry_point_lives_in_server_and_reports_usage(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "defstate.server.worker"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "usage: python -m defstate.server.worker" in done.stderr
    request = tmp_path / "request.json"
    request.write_text(LoadRequest(tmp_path / "missing").to_json())
    done = subprocess.run(
        [sys.executable, "-m", "defstate.server.worker", str(request), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(RuntimeError), written_aside(target) as tmp:
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"two"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TMP_PREFIX)]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "f", b"x", make_parents=False)
