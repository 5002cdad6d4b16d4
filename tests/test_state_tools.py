"""state verify / pull / orphan keys / gc --orphans, and list defs --modified-since."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ProjectFactory, run_cli


def _project(make_project: ProjectFactory, tmp_path: Path, names: dict[str, list[str]]) -> Path:
    files = {
        f"defs/{name}/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
        f"  name: {name}\n  assets: {json.dumps(assets)}\n"
        "  defs_state: {management_type: '{{ env.STATE_MODE }}'}\n"
        for name, assets in names.items()
    }
    return make_project(
        files, pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path}/store"\n'
    )


VERSIONED = {"STATE_MODE": "VERSIONED_STATE_STORAGE"}
LOCAL = {"STATE_MODE": "LOCAL_FILESYSTEM"}


def test_verify_reports_corrupt_and_incomplete_versions(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    root = _project(make_project, tmp_path, {"wh": ["a", "b"]})
    defs = root / "defs/wh/defs.yaml"
    for other in ("b", "c", "d"):  # three different states (identical bytes are "unchanged")
        defs.write_text(defs.read_text().replace('"b"', f'"{other}"').replace('"c"', f'"{other}"'))
        assert run_cli("state", "refresh", cwd=root, env=VERSIONED).returncode == 0
    clean = run_cli("state", "verify", cwd=root, env=VERSIONED)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.count("ok          List[wh]") == 3
    versions = sorted((tmp_path / "store/List[wh]/versions").iterdir())
    (versions[0] / "state").write_text('["a", "x"]')  # same size, other bytes
    (versions[1] / "manifest.json").unlink()
    report = run_cli("state", "verify", "List[wh]", "--json", cwd=root, env=VERSIONED)
    assert report.returncode == 1
    by_version = {c["version"]: c for c in json.loads(report.stdout)["versions"]}
    assert by_version[versions[0].name]["status"] == "corrupt"
    assert "mismatch" in by_version[versions[0].name]["message"]
    assert by_version[versions[1].name]["status"] == "incomplete"
    assert by_version[versions[2].name]["status"] == "ok"
    unknown = run_cli("state", "verify", "List[nope]", cwd=root, env=VERSIONED)
    assert unknown.returncode == 2


def test_pull_bakes_versioned_state_into_local_state(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    root = _project(make_project, tmp_path, {"wh": ["a", "b"]})
    assert run_cli("state", "refresh", cwd=root, env=VERSIONED).returncode == 0
    pin = run_cli("list", "defs", "--no-refresh", "--json", cwd=root, env=VERSIONED).stdout
    (tmp_path / "pin.json").write_text(pin)
    first = json.loads(pin)["state"]["List[wh]"]["version"]
    wh = root / "defs/wh/defs.yaml"
    wh.write_text(wh.read_text().replace('["a", "b"]', '["a", "b", "c"]'))
    assert run_cli("state", "refresh", cwd=root, env=VERSIONED).returncode == 0

    pulled = run_cli(
        "state", "pull", "--state-info", str(tmp_path / "pin.json"), cwd=root, env=VERSIONED
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith(f"pulled List[wh]  version={first}")
    baked = run_cli("list", "defs", "--json", cwd=root, env={**LOCAL, "DEFSTATE_DEPLOY": "1"})
    assert baked.returncode == 0, baked.stderr
    assert [a["key"] for a in json.loads(baked.stdout)["assets"]] == ["a", "b"]  # the pinned one

    latest = run_cli("state", "pull", "--json", cwd=root, env=VERSIONED)
    (item,) = json.loads(latest.stdout)["pulled"]
    assert item["version"] != first
    baked = run_cli("list", "defs", "--json", cwd=root, env={**LOCAL, "DEFSTATE_DEPLOY": "1"})
    assert [a["key"] for a in json.loads(baked.stdout)["assets"]] == ["a", "b", "c"]


def test_orphan_keys_are_listed_and_collected(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = _project(make_project, tmp_path, {"wh": ["a"], "old": ["b"]})
    assert run_cli("state", "refresh", cwd=root, env=VERSIONED).returncode == 0
    assert run_cli("state", "refresh", cwd=root, env=LOCAL).returncode == 0
    (root / "defs/old/defs.yaml").unlink()  # the component went away; its state stayed
    listed = run_cli("state", "ls", "--json", cwd=root, env=VERSIONED)
    assert listed.returncode == 0, listed.stderr
    orphans = json.loads(listed.stdout)["orphans"]
    assert sorted((o["key"], o["storage"].startswith("file://")) for o in orphans) == [
        ("List[old]", False),
        ("List[old]", True),
    ]
    text = run_cli("state", "ls", cwd=root, env=VERSIONED).stdout
    assert "orphan List[old]  (in file://" in text
    gone = run_cli("state", "gc", "--orphans", cwd=root, env=VERSIONED)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.splitlines()[-1] == "2 orphan keys deleted"
    assert not (tmp_path / "store/List[old]").exists()
    assert (tmp_path / "store/List[wh]").exists()
    again = json.loads(run_cli("state", "ls", "--json", cwd=root, env=VERSIONED).stdout)
    assert again["orphans"] == []


def test_list_defs_modified_since_a_saved_document(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    root = _project(make_project, tmp_path, {"wh": ["a", "b"], "crm": ["c"]})
    assert run_cli("state", "refresh", cwd=root, env=LOCAL).returncode == 0
    saved = run_cli("list", "defs", "--no-refresh", "--json", cwd=root, env=LOCAL).stdout
    (tmp_path / "before.json").write_text(saved)
    wh = root / "defs/wh/defs.yaml"
    wh.write_text(
        wh.read_text()
        .replace('["a", "b"]', '["a", "b", "d"]')
        .replace("name: wh", "name: wh\n  prefix: ''")
    )
    crm = root / "defs/crm/defs.yaml"
    crm.write_text(crm.read_text().replace("name: crm", "name: sales"))  # group changes
    assert run_cli("state", "refresh", cwd=root, env=LOCAL).returncode == 0
    done = run_cli(
        "list",
        "defs",
        "--no-refresh",
        "--json",
        "--modified-since",
        str(tmp_path / "before.json"),
        cwd=root,
        env=LOCAL,
    )
    assert done.returncode == 0, done.stderr
    assert [a["key"] for a in json.loads(done.stdout)["assets"]] == ["c", "d"]
    bare_pin = json.dumps(json.loads(saved)["state"])
    (tmp_path / "pin.json").write_text(bare_pin)
    from_pin = run_cli(
        "list",
        "defs",
        "--no-refresh",
        "--json",
        "--modified-since",
        str(tmp_path / "pin.json"),
        cwd=root,
        env=LOCAL,
    )
    assert from_pin.returncode == 0, from_pin.stderr
    # local state keeps one version, so the pin reads today's state for List[wh]; the crm
    # component's key became List[sales], which the pin does not know: its assets are new
    assert [a["key"] for a in json.loads(from_pin.stdout)["assets"]] == ["c"]
