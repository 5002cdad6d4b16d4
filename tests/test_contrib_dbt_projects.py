"""DbtProjectComponent on real dbt projects (real ``dbt parse``; marked slow).

``tests/dbt_projects/fidelity`` covers what dagster-dbt's default translator decides: custom
schemas, versioned models, a vendored package with a clashing model name, seeds, snapshots,
ephemeral and disabled models, referenced and unreferenced sources, ``meta.dagster``, dbt
groups, generic, singular and relationship tests. ``fidelity_dagster_dbt.json`` is what
dagster-dbt itself makes of it (``generate_dagster_dbt_reference.py``); the project is
parsed once per module and every test reads that one state.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, TESTS_DIR, run_cli
from defstate import ComponentLoadContext, load_defs, refresh_state
from defstate.contrib.dbt import DbtParseError, DbtProjectComponent
from defstate.contrib.dbt.parse import parse_cache_dir

pytestmark = pytest.mark.slow

FIDELITY = TESTS_DIR / "dbt_projects" / "fidelity"
REFERENCE = TESTS_DIR / "dbt_projects" / "fidelity_dagster_dbt.json"
_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*", "package-lock.yml")


def _context(root: Path) -> ComponentLoadContext:
    return ComponentLoadContext(
        project_root=root, defs_dir=root, component_dir=root, source="defs/dbt/defs.yaml:1"
    )


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEFSTATE_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, Path, float]:
    """(project copy, state, seconds of the full parse): the project refreshed once."""
    project = tmp_path_factory.mktemp("fidelity") / "fidelity"
    shutil.copytree(FIDELITY, project, ignore=_IGNORE)
    state = project.parent / "state"
    start = time.perf_counter()
    DbtProjectComponent(project_dir=str(project)).write_state_to_path(state)
    return project, state, time.perf_counter() - start


def _expected(case: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """dagster-dbt's specs, with sources whose relation a node builds resolved to that node
    (defstate's one documented addition to the default translator)."""
    assets = {a["key"]: a for a in case["assets"]}
    # every asset of the project (the first case selects all) may be the one a source names
    by_table = {a["metadata"].get("dagster/table_name"): a["key"] for a in _CASES[0]["assets"]}
    built = {}
    for source in case["sources"]:
        relation = source["metadata"]["dagster/table_name"]
        if relation in by_table:
            built[source["key"]] = by_table[relation]
    specs = [*assets.values(), *(s for s in case["sources"] if s["key"] not in built)]
    for spec in specs:
        spec["deps"] = sorted({built.get(d, d) for d in spec["deps"]})
    return sorted(specs, key=lambda s: s["key"]), case["asset_checks"]


def _actual(defs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    specs = []
    for spec in defs.assets:
        data = spec.to_json_dict()
        data["group"] = data.pop("group")
        specs.append(data)
    checks = sorted(
        (c.to_json_dict() for c in defs.asset_checks), key=lambda c: (c["asset"], c["name"])
    )
    return sorted(specs, key=lambda s: s["key"]), checks


def _case_id(case: Mapping[str, Any]) -> str:
    return (
        f"select={case['select']!r},exclude={case['exclude']!r},selector={case['selector']!r}"
        + (",source_tests" if case.get("source_tests_as_checks") else "")
    )


_CASES = json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.filterwarnings("ignore::defstate.contrib.dbt.DbtTranslationWarning")
@pytest.mark.parametrize("case", _CASES, ids=[_case_id(c) for c in _CASES])
def test_same_definitions_as_dagster_dbt(
    fidelity: tuple[Path, Path, float], case: dict[str, Any]
) -> None:
    project, state, _ = fidelity
    component = DbtProjectComponent.from_attributes(
        {
            "project_dir": str(project),
            "select": case["select"],
            "exclude": case["exclude"],
            "selector": case["selector"],
            "source_tests_as_checks": case.get("source_tests_as_checks", False),
        },
        _context(project.parent),
    )
    actual_specs, actual_checks = _actual(component.build_defs_from_state(_context(project), state))
    expected_specs, expected_checks = _expected(case)
    assert [s["key"] for s in actual_specs] == [s["key"] for s in expected_specs]
    for actual, expected in zip(actual_specs, expected_specs, strict=True):
        for field in (
            "deps",
            "group",
            "owners",
            "tags",
            "kinds",
            "description",
            "code_version",
            "metadata",
        ):
            assert actual[field] == expected[field], (actual["key"], field)
    assert actual_checks == expected_checks


def test_refresh_is_partial_byte_identical_and_leaves_the_project_clean(
    fidelity: tuple[Path, Path, float], cache_dir: Path
) -> None:
    project, state, full_seconds = fidelity
    assert (project / "dbt_packages" / "util_pkg").exists()  # dbt deps ran: it was missing
    packages = _tree(project / "dbt_packages")
    before = _tree(project)
    again = project.parent / "again"
    start = time.perf_counter()
    DbtProjectComponent(project_dir=str(project)).write_state_to_path(again)
    partial_seconds = time.perf_counter() - start
    assert again.read_bytes() == state.read_bytes()
    assert _tree(project) == before  # no target/, logs/, nor a second dbt deps
    assert _tree(project / "dbt_packages") == packages
    cache = parse_cache_dir(cache_dir, project, profiles_dir=project, target=None, dbt_vars={})
    assert (cache / "target" / "partial_parse.msgpack").is_file()
    assert not (project / "target").exists() and not (project / "logs").exists()
    print(f"full parse {full_seconds:.2f}s, partial {partial_seconds:.2f}s")  # bench/ measures


def test_state_holds_the_whole_project(fidelity: tuple[Path, Path, float]) -> None:
    _, state, _ = fidelity
    document = json.loads(state.read_text())
    assert "model.fidelity.stg_helper" in document["nodes"]  # ephemeral: a graph edge
    assert "model.fidelity.stg_disabled" not in document["nodes"]  # disabled: not in the project
    assert "source.fidelity.shop.refunds" in document["sources"]
    assert set(document["selectors"]) == {"marts_and_parents", "only_seeds"}
    assert str(state.parent) not in state.read_text()  # no absolute paths: state is portable


def _defstate_project(root: Path, dbt_dir: Path) -> None:
    (root / "pyproject.toml").write_text('[project]\nname = "wh"\n\n[tool.defstate]\n')
    entries = {
        "all": "",
        "marts": "  select: path:models/marts\n  key_prefix: [marts_only]\n",
        "prod": "  target: prod\n  select: resource_type:seed\n  key_prefix: [prod]\n",
    }
    for name, extra in entries.items():
        path = root / "defs" / name / "defs.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(
            "type: defstate.contrib.dbt.DbtProjectComponent\nattributes:\n"
            f"  project_dir: {dbt_dir.relative_to(root)}\n" + extra
        )


def test_instances_share_a_parse_and_deploy_from_state_alone(
    tmp_path: Path, cache_dir: Path
) -> None:
    root = tmp_path / "wh"
    dbt_dir = root / "dbt" / "fidelity"
    shutil.copytree(FIDELITY, dbt_dir, ignore=_IGNORE)
    _defstate_project(root, dbt_dir)
    env = {"DEFSTATE_CACHE_DIR": str(cache_dir)}
    refreshed = run_cli("state", "refresh", "--json", cwd=root, env=env, timeout=600)
    assert refreshed.returncode == 0, refreshed.stderr
    keys = sorted(r["key"] for r in json.loads(refreshed.stdout)["results"])
    # two instances differ only in selection: one key, one parse; the prod target has its own
    assert keys == ["DbtProject[fidelity,target=prod]", "DbtProject[fidelity]"]
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    before = json.loads(listed.stdout)
    by_component: dict[str, set[str]] = {}
    for asset in before["assets"]:
        by_component.setdefault(asset["component"], set()).add(asset["key"])
    assert by_component["defs/marts/defs.yaml:1"] == {
        "marts_only/marts/orders",
        "marts_only/marts/revenue",
        "marts_only/customers_v1",
        "marts_only/customers_v2",
    }
    assert by_component["defs/prod/defs.yaml:1"] == {"prod/raw_customers", "prod/raw_payments"}
    prod = next(a for a in before["assets"] if a["key"] == "prod/raw_customers")
    assert prod["metadata"]["dagster/table_name"] == "fidelity_prod.prod.raw_customers"
    assert len(before["asset_checks"]) > 10
    keys_before = load_defs(root).definitions.asset_keys

    # A ref cycle fails the refresh with dbt's message and keeps the previous state.
    model = dbt_dir / "models" / "staging" / "stg_payments.sql"
    model.write_text("select * from {{ ref('revenue') }}\n")
    (result,) = refresh_state(root, keys=["DbtProject[fidelity]"]).results
    assert not result.ok and "Found a cycle: " in (result.error or "")
    assert "model.fidelity.stg_payments" in (result.error or "")
    assert load_defs(root).definitions.asset_keys == keys_before

    # Deployed: no dbt project folder, and no dbt either (a shadow package that fails).
    shutil.rmtree(root / "dbt")
    shadow = tmp_path / "no_dbt" / "dbt"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('dbt is not installed here')\n")
    deploy_env = {**env, "DEFSTATE_DEPLOY": "1", "PYTHONPATH": str(shadow.parent)}
    deployed = run_cli("list", "defs", "--json", cwd=root, env=deploy_env)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout) == before


def test_missing_packages_that_cannot_be_fetched_fail_clearly(
    tmp_path: Path, cache_dir: Path
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "dbt_project.yml").write_text(
        "name: p\nversion: '1'\nconfig-version: 2\nprofile: p\n"
    )
    (project / "profiles.yml").write_text(
        "p:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: p.duckdb}\n"
    )
    (project / "packages.yml").write_text(
        f"packages:\n  - git: file://{tmp_path}/no-such-repo.git\n    revision: main\n"
    )
    (project / "models").mkdir()
    (project / "models" / "m.sql").write_text("select 1 as x\n")
    with pytest.raises(DbtParseError) as raised:
        DbtProjectComponent(project_dir=str(project)).write_state_to_path(tmp_path / "state")
    message = str(raised.value)
    assert message.startswith(f"dbt deps of {project} failed")
    assert "asks for 1 package(s) and 0 are installed" in message
    assert "vendor the packages" in message
    assert not (tmp_path / "state").exists()


def test_example_project_through_the_cli(tmp_path: Path, cache_dir: Path) -> None:
    """The README's commands on a copy of examples/dbt_project (a dbt and defstate project)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(
        REPO_ROOT / "examples/dbt_project",
        project,
        ignore=shutil.ignore_patterns("target", "logs", ".local_defs_state", "*.duckdb"),
    )
    env = {"DEFSTATE_CACHE_DIR": str(cache_dir)}
    refreshed = run_cli("state", "refresh", cwd=project, timeout=300, env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.startswith("refreshed DbtProject[shop]  version=local")
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assets = {a["key"]: a for a in data["assets"]}
    assert {"customers", "raw/raw_orders", "stg_orders"} <= set(assets)  # seeds: +schema: raw
    # the shop_raw sources name the relations the project's seeds build: they are the seeds
    assert "shop_raw/orders" not in assets and assets["stg_orders"]["deps"] == ["raw/raw_orders"]
    assert data["asset_checks"]
    assert data["state"]["DbtProject[shop]"]["management_type"] == "LOCAL_FILESYSTEM"
    assert not {"target", "logs"} & {p.name for p in project.iterdir()}

    # A model dbt cannot parse fails the refresh with dbt's own message; the state stays.
    (project / "models" / "marts" / "orders.sql").write_text("select {{ ref('stg_orders' }}\n")
    broken = run_cli("state", "refresh", cwd=project, timeout=300, env=env)
    assert broken.returncode == 1
    assert "Compilation Error in model orders (models/marts/orders.sql)" in broken.stderr
    assert len(broken.stderr.splitlines()) < 20  # dbt's error, not its whole log
    again = run_cli("list", "defs", "--no-refresh", "--json", cwd=project, env=env)
    assert json.loads(again.stdout)["assets"] == data["assets"]
