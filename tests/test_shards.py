"""Sharded refreshes: ``state refresh --shard I/N`` splits the keys by a stable hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli
from defstate.errors import UsageError
from defstate.loader import Shard
from defstate.loader.groups import KeyGroup, select_groups
from fixture_components import call_count

NAMES = [f"n{i}" for i in range(12)]


def _project(make_project: ProjectFactory, counter_dir: Path) -> Path:
    files = {
        f"defs/{name}/defs.yaml": (
            "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: {name}\n  assets: [{name}_a]\n  counter_dir: {counter_dir}\n"
        )
        for name in NAMES
    }
    return make_project(files)


def test_shards_cover_every_key_once_and_do_not_depend_on_the_other_keys() -> None:
    keys = [f"Key[{i}]" for i in range(500)] + ["DbtProject[shop]", "Ünïcode/key"]
    for count in (1, 2, 3, 7):
        owners = {k: [i for i in range(count) if Shard(i, count).contains(k)] for k in keys}
        assert all(len(found) == 1 for found in owners.values())
        sizes = [sum(1 for o in owners.values() if o == [i]) for i in range(count)]
        assert min(sizes) > len(keys) / count / 2  # roughly balanced, none empty
    groups = {k: KeyGroup(k, ()) for k in keys}
    # a key's shard is a function of the key alone: fewer keys, same shard
    few = {k: groups[k] for k in keys[:10]}
    in_shard = {g.key for g in select_groups(groups, shard=Shard(1, 3))}
    assert {g.key for g in select_groups(few, shard=Shard(1, 3))} == in_shard & set(few)


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "1/0", "0/-2", ""])
def test_a_bad_shard_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="shard"):
        Shard.parse(text)


def test_refresh_shards_split_the_project(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = _project(make_project, counter_dir)
    refreshed: list[str] = []
    for index in range(3):
        done = run_cli("state", "refresh", "--shard", f"{index}/3", "--json", cwd=root)
        assert done.returncode == 0, done.stderr
        keys = [r["key"] for r in json.loads(done.stdout)["results"]]
        assert all(Shard(index, 3).contains(k) for k in keys)
        refreshed += keys
    assert sorted(refreshed) == sorted(f"List[{n}]" for n in NAMES)
    assert all(call_count(counter_dir, n) == 1 for n in NAMES)
    # a shard narrows an explicit selection too, and a bad shard exits 2 before any refresh
    narrowed = run_cli(
        "state", "refresh", "--key", "List[n1*]", "--shard", "0/1", "--json", cwd=root
    )
    assert narrowed.returncode == 0, narrowed.stderr
    assert {r["key"] for r in json.loads(narrowed.stdout)["results"]} == {
        "List[n1]",
        "List[n10]",
        "List[n11]",
    }
    bad = run_cli("state", "refresh", "--shard", "3/3", cwd=root)
    assert bad.returncode == 2
    assert "shard 3/3" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unknown_key_in_a_big_project_is_a_short_error(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = _project(make_project, counter_dir)
    done = run_cli("state", "refresh", "--key", "List[nope]", cwd=root)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: unknown state key: List[nope] (known keys: List[n0], List[n10],")
    assert line.endswith(", … (12 in all: `defstate list components` lists them))")
    assert "List[n9]" not in line  # the 11th and 12th names are left out
