"""The neighbours' words work: dlt's retry ``type:``, dg's ``--defs-state-key``."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli
from defstate import RetryPolicy, load_defs
from fixture_components import call_count


def test_retry_type_is_dlts_word_and_kind_an_alias() -> None:
    assert RetryPolicy(type="fixed").strategy == "fixed"
    assert RetryPolicy(kind="fixed") == RetryPolicy(type="fixed")
    assert RetryPolicy().strategy == "backoff"
    assert RetryPolicy.none().attempts == 1
    with pytest.raises(ValueError, match="disagree"):
        RetryPolicy(type="fixed", kind="backoff")


@pytest.mark.parametrize("word", ["type", "kind"])
def test_defs_yaml_retry_accepts_type_and_kind(
    make_project: ProjectFactory, counter_dir: Path, word: str
) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            f"  name: flaky\n  assets: [x]\n  counter_dir: {counter_dir}\n  fail_times: 1\n"
            f"  defs_state:\n    retry: {{{word}: fixed, max_attempts: 2, min: 0.01, max: 0.01}}\n",
        }
    )
    done = run_cli("state", "refresh", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "attempts=2" in done.stdout
    assert call_count(counter_dir, "flaky") == 2


def test_conflicting_type_and_kind_name_the_file_and_line(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": "type: fixture_components.ListComponent\nattributes:\n"
            "  assets: [x]\n  defs_state:\n    retry: {type: fixed, kind: backoff}\n",
        }
    )
    (problem,) = load_defs(root).errors
    assert "disagree" in problem.message and problem.location is not None


def test_refresh_defs_state_takes_dgs_defs_state_key(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    entry = "type: fixture_components.ListComponent\nattributes:\n  name: {}\n  assets: [x{}]\n"
    root = make_project(
        {
            "defs/a/defs.yaml": entry.format("a", "a") + f"  counter_dir: {counter_dir}\n",
            "defs/b/defs.yaml": entry.format("b", "b") + f"  counter_dir: {counter_dir}\n",
        }
    )
    done = run_cli("utils", "refresh-defs-state", "--defs-state-key", "List[b]", cwd=root)
    assert done.returncode == 0, done.stderr
    assert (call_count(counter_dir, "a"), call_count(counter_dir, "b")) == (0, 1)
