from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ProjectFactory, start_cli
from defstate import load_defs, refresh_state
from defstate.state_storage import ManagementType, encode_key
from defstate.state_storage.local import LocalStateStorage

DIR_COMPONENT = """
type: fixture_components.DirectoryComponent
attributes:
  tag: "{{ env.TAG }}"
  files: 20
  slow: "SLOW"
  started_marker: "{{ project_root }}/started"
"""


def _dir_project(make_project: ProjectFactory, slow: float) -> Path:
    return make_project({"defs/d/defs.yaml": DIR_COMPONENT.replace('"SLOW"', str(slow))})


def _leftovers(key_dir: Path) -> list[str]:
    """Temporaries left in a key's folder (besides state and records)."""
    assert (key_dir / "state").exists()
    return [p.name for p in key_dir.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def _state_dir(root: Path, key: str) -> Path:
    return root / "defs" / ".local_defs_state" / encode_key(key)


def test_reading_state_writes_nothing(tmp_path: Path) -> None:
    storage = LocalStateStorage(tmp_path / "defs" / ".local_defs_state")
    assert storage.latest("k") is None
    assert not (tmp_path / "defs").exists()


def test_latest_reads_the_state_and_falls_back_to_an_interrupted_swap(tmp_path: Path) -> None:
    storage = LocalStateStorage(tmp_path / ".local_defs_state")
    key_dir = tmp_path / ".local_defs_state" / "k"
    key_dir.mkdir(parents=True)
    (key_dir / "state").write_text("12345")
    latest = storage.latest("k")
    assert latest is not None and latest.size == 5 and not latest.is_directory
    assert storage.state_path(latest) == key_dir / "state"
    # a swap without renameat2 stopped between its two renames: only the old copy exists
    (key_dir / "state").rename(key_dir / ".old-0123")
    latest = storage.latest("k")
    assert latest is not None and latest.size == 5
    assert storage.state_path(latest) == key_dir / ".old-0123"
    (key_dir / ".old-0123").unlink()
    assert storage.latest("k") is None


def test_latest_of_a_key_whose_folder_is_a_file_is_none(tmp_path: Path) -> None:
    root = tmp_path / ".local_defs_state"
    root.mkdir()
    (root / "k").write_text("not a folder")
    assert LocalStateStorage(root).latest("k") is None


def test_first_refresh_writes_gitignore_and_state(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dir_project(make_project, 0)
    monkeypatch.setenv("TAG", "v1")
    before = load_defs(root)
    assert before.definitions.assets == ()
    assert not (root / "defs" / ".local_defs_state").exists()  # loading wrote nothing

    report = refresh_state(root)
    assert report.ok, report
    gitignore = root / "defs" / ".local_defs_state" / ".gitignore"
    assert gitignore.read_text().splitlines()[-1] == "*"
    state = _state_dir(root, "DirectoryComponent") / "state"
    assert state.is_dir() and len(list(state.iterdir())) == 20
    (result,) = report.results
    assert result.version is not None and result.version.version == "local"
    assert result.size == 40

    after = load_defs(root)
    assert [str(k) for k in after.definitions.asset_keys] == ["dir/v1"]
    pinned = after.state_info.get("DirectoryComponent")
    assert pinned is not None and pinned.management_type is ManagementType.LOCAL_FILESYSTEM


def test_directory_state_is_replaced_whole(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dir_project(make_project, 0)
    for tag in ("v1", "v2", "v3"):
        monkeypatch.setenv("TAG", tag)
        assert refresh_state(root).ok
    keys = [str(k) for k in load_defs(root).definitions.asset_keys]
    assert keys == ["dir/v3"]
    assert _leftovers(_state_dir(root, "DirectoryComponent")) == []


def test_failed_refresh_keeps_previous_state(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    defs = """
    type: fixture_components.ListComponent
    attributes:
      name: api
      assets: [a, b]
      fail: {fail}
    """
    root = make_project({"defs/x/defs.yaml": defs.format(fail="false")})
    assert refresh_state(root).ok
    (root / "defs/x/defs.yaml").write_text(
        defs.format(fail="true").replace("\n    ", "\n").strip() + "\n"
    )
    report = refresh_state(root)
    assert not report.ok
    assert "external system for api is down" in (report.results[0].error or "")
    assert [str(k) for k in load_defs(root).definitions.asset_keys] == ["a", "b"]
    assert _leftovers(_state_dir(root, "List[api]")) == []


def _refresh_process(root: Path, tag: str) -> subprocess.Popen[str]:
    return start_cli("state", "refresh", cwd=root, env={"TAG": tag})


def test_sigkilled_refresh_leaves_previous_state_loadable(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dir_project(make_project, 0.05)
    monkeypatch.setenv("TAG", "old")
    assert refresh_state(root).ok
    (root / "started").unlink()

    process = _refresh_process(root, "new")
    deadline = time.monotonic() + 30
    while not (root / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "refresh never started"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    result = load_defs(root)
    assert result.ok, result.errors
    (spec,) = result.definitions.assets
    assert str(spec.key) == "dir/old" and spec.metadata == {"files": 20}
    key_dir = _state_dir(root, "DirectoryComponent")
    assert any(p.name.startswith(".tmp-") for p in key_dir.iterdir())  # the killed write

    monkeypatch.setenv("TAG", "next")
    assert refresh_state(root).ok
    assert _leftovers(key_dir) == []  # abandoned temp cleaned up
    assert [str(k) for k in load_defs(root).definitions.asset_keys] == ["dir/next"]


def test_two_processes_refreshing_one_key_end_with_one_complete_state(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dir_project(make_project, 0.01)
    monkeypatch.setenv("TAG", "reader")
    first, second = _refresh_process(root, "p1"), _refresh_process(root, "p2")
    for process in (first, second):
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    result = load_defs(root)
    assert result.ok, result.errors  # DirectoryComponent raises on mixed tags
    (spec,) = result.definitions.assets
    assert str(spec.key) in ("dir/p1", "dir/p2")
    assert spec.metadata == {"files": 20}
