"""The load algorithm: when refreshes happen, how often, and what components see."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ProjectFactory
from defstate import StateInfo, load_defs, refresh_state
from fixture_components import call_count


def _list(name: str, counter_dir: Path, **extra: str) -> str:
    lines = [
        "type: fixture_components.ListComponent",
        "attributes:",
        f"  name: {name}",
        f"  assets: [{name}_a, {name}_b]",
        f"  counter_dir: {counter_dir}",
    ]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_state_path_is_none_before_first_refresh(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = make_project({"defs/a/defs.yaml": _list("api", counter_dir)})
    result = load_defs(root)
    assert result.ok and result.definitions.assets == ()
    assert len(result.state_info) == 0
    assert call_count(counter_dir, "api") == 0


def test_outside_dev_never_refreshes(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = make_project({"defs/a/defs.yaml": _list("api", counter_dir)})
    for _ in range(3):
        load_defs(root)
    assert call_count(counter_dir, "api") == 0


def test_dev_refreshes_once_per_key_per_load(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    shared = "  defs_state:\n    key: shared\n"
    root = make_project(
        {
            "defs/a/defs.yaml": _list("api", counter_dir),
            # three instances sharing one key: written once per load, by the first one
            "defs/b/defs.yaml": _list("s1", counter_dir, prefix="b_") + shared,
            "defs/c/defs.yaml": _list("s2", counter_dir, prefix="c_") + shared,
            "defs/d/defs.yaml": _list("s3", counter_dir, prefix="d_") + shared,
            "defs/e/defs.yaml": _list("manual", counter_dir)
            + "  defs_state:\n    refresh_if_dev: false\n",
        }
    )
    first = load_defs(root, dev=True)
    assert first.ok, first.errors
    assert call_count(counter_dir, "api") == 1
    assert call_count(counter_dir, "s1") == 1
    assert call_count(counter_dir, "s2") == call_count(counter_dir, "s3") == 0
    assert call_count(counter_dir, "manual") == 0
    assert sorted(first.state_info) == ["List[api]", "shared"]
    # every instance sharing the key builds from the one state the first instance wrote
    assert sorted(str(k) for k in first.definitions.asset_keys) == [
        "api_a",
        "api_b",
        *(f"{p}_s1_{s}" for p in "bcd" for s in "ab"),
    ]

    load_defs(root, dev=True)
    assert call_count(counter_dir, "api") == 2


def test_dev_refreshes_run_concurrently(make_project: ProjectFactory, counter_dir: Path) -> None:
    # Each refresh waits at a 3-party barrier: sequential refreshes would time out and fail.
    root = make_project(
        {f"defs/{n}/defs.yaml": _list(n, counter_dir, barrier="3") for n in ("x", "y", "z")}
    )
    result = load_defs(root, dev=True)
    assert result.ok, result.errors
    assert len(result.definitions.assets) == 6


def test_async_write_state_to_path(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": _list("aio", counter_dir).replace(
                "ListComponent", "AsyncListComponent"
            )
        }
    )
    result = load_defs(root, dev=True)
    assert result.ok, result.errors
    assert call_count(counter_dir, "aio") == 1
    assert sorted(str(k) for k in result.definitions.asset_keys) == ["aio_a", "aio_b"]


def test_failed_dev_refresh_is_an_error_of_that_component(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": _list("ok", counter_dir),
            "defs/b/defs.yaml": _list("down", counter_dir, fail="true"),
        }
    )
    result = load_defs(root, dev=True)
    assert sorted(str(k) for k in result.definitions.asset_keys) == ["ok_a", "ok_b"]
    (error,) = result.errors
    assert error.key == "List[down]" and error.component == "defs/b/defs.yaml:1"
    assert "external system for down is down" in str(error)


def test_versioned_without_storage_is_a_clear_error(
    make_project: ProjectFactory, counter_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEFSTATE_STATE_STORAGE_URL", raising=False)
    root = make_project(
        {
            "defs/a/defs.yaml": _list("remote", counter_dir)
            + "  defs_state:\n    management_type: VERSIONED_STATE_STORAGE\n",
            "defs/b/defs.yaml": _list("ok", counter_dir),
        }
    )
    result = load_defs(root, dev=True)
    assert sorted(str(k) for k in result.definitions.asset_keys) == ["ok_a", "ok_b"]
    (error,) = [str(e) for e in result.errors]
    assert "defs/a/defs.yaml:1" in error and "[tool.defstate.state_storage]" in error
    assert "DEFSTATE_STATE_STORAGE_URL" in error
    assert call_count(counter_dir, "remote") == 0
    report = refresh_state(root)
    assert not report.ok and "[tool.defstate.state_storage]" in str(report.errors[0])


def test_code_server_snapshots_travel_in_the_pin(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    snapshot = "  defs_state:\n    management_type: LEGACY_CODE_SERVER_SNAPSHOTS\n"
    root = make_project({"defs/a/defs.yaml": _list("snap", counter_dir) + snapshot})
    first = load_defs(root)  # an initialization load refreshes snapshots, dev or not
    assert first.ok, first.errors
    assert call_count(counter_dir, "snap") == 1
    assert sorted(str(k) for k in first.definitions.asset_keys) == ["snap_a", "snap_b"]
    assert not (root / "defs" / ".local_defs_state").exists()

    pin = StateInfo.from_json(first.state_info.to_json())
    assert pin.get("List[snap]").version == "code-server"  # type: ignore[union-attr]
    # reconstruct from the pin in a changed world: no refresh, same definitions
    (root / "defs/a/defs.yaml").write_text(_list("snap", counter_dir, fail="true") + snapshot)
    again = load_defs(root, state_info=pin)
    assert again.ok, again.errors
    assert again.definitions == first.definitions
    assert call_count(counter_dir, "snap") == 1
    # refresh_state leaves snapshot keys alone: they belong to loads
    assert refresh_state(root).results == ()


def test_code_server_snapshot_size_limit(make_project: ProjectFactory, counter_dir: Path) -> None:
    root = make_project(
        {
            "defs/a/defs.yaml": _list("big", counter_dir)
            + "  defs_state:\n    management_type: LEGACY_CODE_SERVER_SNAPSHOTS\n"
        },
        pyproject_extra="snapshot_max_bytes = 5",
    )
    result = load_defs(root)
    (error,) = result.errors
    assert "over the 5-byte limit" in str(error) and error.key == "List[big]"


def test_pin_round_trips_and_reconstruction_never_refreshes(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    root = make_project({"defs/a/defs.yaml": _list("api", counter_dir)})
    assert refresh_state(root).ok
    first = load_defs(root)
    pin = StateInfo.from_json(first.state_info.to_json())
    assert pin == first.state_info
    again = load_defs(root, dev=True, state_info=pin)
    assert call_count(counter_dir, "api") == 1  # only the explicit refresh
    assert again.definitions == first.definitions


def test_reconstruction_with_missing_local_state_names_the_key(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    import shutil

    root = make_project({"defs/a/defs.yaml": _list("api", counter_dir)})
    assert refresh_state(root).ok
    pin = load_defs(root).state_info
    shutil.rmtree(root / "defs" / ".local_defs_state")
    (error,) = load_defs(root, state_info=pin).errors
    assert error.key == "List[api]" and "pinned local state" in error.message
    assert "defstate state refresh --key 'List[api]'" in error.message


def test_a_registered_short_name_is_a_type_in_defs_yaml(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``register_component_type`` gives a component a short ``type:`` name, as
    ``defstate.contrib`` packages may for well-known components."""
    from defstate import register_component_type
    from defstate.components import registry
    from fixture_components import ListComponent

    monkeypatch.setattr(registry, "_REGISTERED", {})
    register_component_type("list", ListComponent)
    root = make_project(
        {"defs/x/defs.yaml": "type: list\nattributes:\n  name: short\n  assets: [a, b]\n"}
    )
    assert refresh_state(root).ok
    result = load_defs(root)
    assert result.ok, result.errors
    assert sorted(str(k) for k in result.definitions.asset_keys) == ["a", "b"]
    unknown = make_project({"defs/y/defs.yaml": "type: lst\n"}, name="other")
    (problem,) = load_defs(unknown).errors
    assert "unknown component type 'lst'" in problem.message


@pytest.mark.parametrize("type_name", [".relative.Thing", "..up.Thing", "a..b", "a.", "x-y.Z"])
def test_a_type_that_is_no_import_path_is_an_error_of_its_entry(
    make_project: ProjectFactory, type_name: str
) -> None:
    # relative names made importlib raise TypeError, which escaped the load (found by the
    # property tests)
    root = make_project(
        {
            "defs/bad/defs.yaml": f"type: '{type_name}'\n",
            "defs/good/defs.yaml": "type: fixture_components.PlainComponent\n"
            "attributes:\n  assets: [kept]\n",
        }
    )
    result = load_defs(root)
    (problem,) = result.errors
    assert "expected a dotted import path" in problem.message
    assert str(problem.location).endswith("defs/bad/defs.yaml:1")
    assert [str(k) for k in result.definitions.asset_keys] == ["kept"]
