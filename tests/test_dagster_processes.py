"""A defstate project as a real Dagster code location: real `dagster` and `dg` processes.

Marked ``dagster`` (``pytest -m "not dagster"`` skips them). About a minute in all here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO_ROOT, write_files
from dagster_processes import code_server, dagster_env, run_tool, wait_for_json
from fixture_components import call_count

pytestmark = pytest.mark.dagster

TWO_LINE_DEFINITIONS = """\
from defstate.contrib.dagster import build_dagster_definitions

defs = build_dagster_definitions()
"""

# The two-line definitions plus one executable asset, so a real run worker reconstructs the
# code location and writes down what it sees.
PROBE_DEFINITIONS = """
import json
import os
from pathlib import Path

import dagster as dg

from defstate.contrib.dagster import build_dagster_definitions

project = build_dagster_definitions()


@dg.asset
def probe() -> None:
    keys = sorted(key.to_user_string() for key in project.resolve_all_asset_keys())
    out = Path(os.environ["PROBE_OUT"])
    report = {"assets": keys, "pid": os.getpid(), "dev": os.environ.get("DAGSTER_IS_DEV_CLI")}
    out.with_suffix(".tmp").write_text(json.dumps(report))
    out.with_suffix(".tmp").replace(out)


defs = dg.Definitions.merge(
    project,
    dg.Definitions(assets=[probe], jobs=[dg.define_asset_job("probe_job", selection=[probe])]),
)
"""


def test_quickstart_definitions_validate_as_a_dagster_code_location(tmp_path: Path) -> None:
    project = tmp_path / "quickstart"
    shutil.copytree(
        REPO_ROOT / "examples" / "quickstart",
        project,
        ignore=shutil.ignore_patterns(".local_defs_state", "__pycache__"),
    )
    assert (project / "definitions.py").read_text() == TWO_LINE_DEFINITIONS
    env = dagster_env(tmp_path / "home")
    assert run_tool("defstate", "state", "refresh", cwd=project, env=env).returncode == 0
    done = run_tool(
        "dagster", "definitions", "validate", "-f", "definitions.py", cwd=project, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All code locations passed validation" in done.stdout + done.stderr


def test_dagster_rule_violations_fail_validation_with_the_file_and_line(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write_files(
        project,
        {
            "pyproject.toml": "[tool.defstate]\n",
            "definitions.py": TWO_LINE_DEFINITIONS,
            "people.py": """
                import attrs

                from defstate import AssetSpec, Component, Definitions


                @attrs.define(kw_only=True)
                class OwnedComponent(Component):
                    owner: str

                    def build_defs(self, context):
                        return Definitions([AssetSpec(key="orders", owners=[self.owner])])
            """,
            "defs/people/defs.yaml": """
                # an owner as people write it, which Dagster rejects
                type: people.OwnedComponent
                attributes:
                  owner: team-ingest
            """,
        },
    )
    env = dagster_env(tmp_path / "home")
    done = run_tool(
        "dagster", "definitions", "validate", "-f", "definitions.py", cwd=project, env=env
    )
    output = done.stdout + done.stderr
    assert "Validation failed" in output
    assert (
        "defs/people/defs.yaml:2: asset orders: owner 'team-ingest' is not valid "
        "in Dagster: an owner must be an email address or 'team:NAME'"
    ) in output
    assert "DagsterInvalidDefinitionError" not in output
    # `defstate check --dagster` reports the same line, without Dagster being involved
    check = run_tool("defstate", "check", "--dagster", cwd=project, env=env)
    assert check.returncode == 1
    assert ("error: defs/people/defs.yaml:2: asset orders: owner 'team-ingest'") in check.stderr


def test_run_workers_load_the_pinned_versions_until_the_code_location_reloads(
    tmp_path: Path, counter_dir: Path
) -> None:
    store = tmp_path / "store"
    external = tmp_path / "external.json"
    external.write_text('["a"]')
    project = tmp_path / "proj"
    write_files(
        project,
        {
            "pyproject.toml": f'[tool.defstate.state_storage]\nurl = "file://{store}"\n',
            "definitions.py": PROBE_DEFINITIONS,
            "defs/versioned/defs.yaml": f"""
                type: fixture_components.ListComponent
                attributes:
                  source_file: {external}
                  counter_dir: {counter_dir}
                  name: versioned
                  defs_state:
                    management_type: VERSIONED_STATE_STORAGE
                    refresh_if_dev: false
            """,
            "defs/dev/defs.yaml": f"""
                type: fixture_components.ListComponent
                attributes:
                  assets: [d1]
                  counter_dir: {counter_dir}
                  name: dev
                  defs_state: {{refresh_if_dev: true}}
            """,
        },
    )
    probe_out = tmp_path / "probe.json"
    # DAGSTER_IS_DEV_CLI is what `dagster dev` sets for its code servers (and their run workers)
    env = dagster_env(tmp_path / "home", {"PROBE_OUT": str(probe_out)})
    server_env = {**env, "DAGSTER_IS_DEV_CLI": "1"}
    assert run_tool("defstate", "state", "refresh", cwd=project, env=env).returncode == 0
    pointer = store / "_pointers.d" / "List[versioned].json"
    target = ("-f", "definitions.py", "-a", "defs")

    with code_server(project, server_env, tmp_path / "server1.log", *target) as port:
        assert call_count(counter_dir, "dev") == 2  # the dev initialization refreshed it once
        external.write_text('["a", "b"]')
        published = run_tool(
            "defstate", "state", "refresh", "--key", "List[versioned]", cwd=project, env=env
        )
        assert published.returncode == 0, published.stderr
        good_pointer = pointer.read_text()
        pointer.write_text("not a pointer")  # a reconstruction that read it would fail
        launched = run_tool(
            "dagster", "job", "launch", "--grpc-host", "127.0.0.1", "--grpc-port", str(port),
            "-j", "probe_job", cwd=project, env=env,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stdout + launched.stderr
        seen = wait_for_json(probe_out, log=tmp_path / "server1.log")
    assert seen["assets"] == ["a", "d1"]  # the pin: not the newer ["a", "b"]
    assert seen["dev"] == "1"  # the run worker ran in dev mode ...
    assert call_count(counter_dir, "dev") == 2  # ... and refreshed nothing
    assert call_count(counter_dir, "versioned") == 2

    pointer.write_text(good_pointer)
    probe_out.unlink()
    with code_server(project, server_env, tmp_path / "server2.log", *target) as port:
        assert call_count(counter_dir, "dev") == 3  # a reload is a new load: one refresh
        launched = run_tool(
            "dagster", "job", "launch", "--grpc-host", "127.0.0.1", "--grpc-port", str(port),
            "-j", "probe_job", cwd=project, env=env,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stdout + launched.stderr
        seen = wait_for_json(probe_out, log=tmp_path / "server2.log")
    assert seen["assets"] == ["a", "b", "d1"]  # the reload picked up the new latest
    assert call_count(counter_dir, "versioned") == 2


CATALOG_COMPONENTS = '''
import json
from pathlib import Path

import attrs

from defstate import AssetCheckSpec, AssetSpec, Definitions, StateBackedComponent
from fixture_components import record_call


@attrs.define(kw_only=True)
class CatalogComponent(StateBackedComponent):
    """Every field Dagster shows, from a JSON catalog."""

    catalog: str
    counter_dir: str
    defs_key: str = "catalog"

    def get_defs_state_key(self) -> str:
        return f"Catalog[{self.defs_key}]"

    def write_state_to_path(self, state_path: Path) -> None:
        record_call(self.counter_dir, self.defs_key)
        state_path.write_text(Path(self.catalog).read_text())

    def build_defs_from_state(self, context, state_path):
        if state_path is None:
            return Definitions()
        tables = json.loads(state_path.read_text())
        return Definitions(
            assets=[
                AssetSpec(
                    key=t["key"],
                    deps=t.get("deps", []),
                    description=t.get("description"),
                    group_name=t.get("group"),
                    kinds=t.get("kinds", []),
                    tags=t.get("tags", {}),
                    owners=t.get("owners", []),
                    metadata=t.get("metadata", {}),
                    code_version=t.get("code_version"),
                )
                for t in tables
            ],
            asset_checks=[
                AssetCheckSpec(
                    name=c,
                    asset=t["key"],
                    description=f"{c} of {t['key']}",
                    additional_deps=t.get("deps", [])[:1],
                )
                for t in tables
                for c in t.get("checks", [])
            ],
        )
'''

CATALOG = [
    {
        "key": "raw/orders",
        "description": "Orders as loaded.",
        "group": "raw",
        "kinds": ["duckdb", "table"],
        "tags": {"domain": "sales", "tier": "gold"},
        "owners": ["team:ingest", "ana@example.com"],
        "metadata": {
            "dagster/table_name": "raw.orders",
            "dagster/column_schema": {"columns": [{"name": "id", "type": "int"}]},
            "row_count": 3,
        },
        "code_version": "v1",
        "checks": ["not_null_id", "unique_id"],
    },
    {"key": "raw/customers", "group": "raw", "owners": ["team:ingest"]},
    {
        "key": "marts/revenue",
        "deps": ["raw/orders", "raw/customers", "external/fx_rates"],
        "group": "marts",
        "kinds": ["sql"],
        "checks": ["matches_orders"],
    },
]


def test_dg_list_defs_lists_what_defstate_list_defs_lists(
    tmp_path: Path, counter_dir: Path
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    defstate_project = tmp_path / "catalog_project"
    shared = f"""
        type: catalog_components.CatalogComponent
        attributes:
          catalog: {catalog}
          counter_dir: {counter_dir}
          defs_state: {{refresh_if_dev: true}}
    """
    write_files(
        defstate_project,
        {
            "pyproject.toml": "[tool.defstate]\n",
            "catalog_components.py": CATALOG_COMPONENTS,
            "defs/catalog/defs.yaml": shared,
        },
    )
    dg_project = tmp_path / "dgp"
    write_files(
        dg_project,
        {
            "pyproject.toml": """
                [project]
                name = "dgp"
                version = "0.1.0"

                [tool.dg]
                directory_type = "project"

                [tool.dg.project]
                root_module = "dgp"

                [tool.dg.cli.telemetry]
                enabled = false
            """,
            "dgp/__init__.py": "",
            "dgp/definitions.py": """
                from pathlib import Path

                import dagster as dg


                @dg.definitions
                def defs() -> dg.Definitions:
                    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
            """,
            "dgp/defs/__init__.py": "",
            "dgp/defs/catalog/defs.yaml": """
                type: defstate.contrib.dagster.DefstateProjectComponent
                attributes:
                  project: ../../../../catalog_project
            """,
        },
    )
    env = dagster_env(tmp_path / "home")
    listed = run_tool("dg", "list", "defs", "--json", cwd=dg_project, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert call_count(counter_dir, "catalog") == 1  # dg is a dev command: one refresh per load
    dagster_view = json.loads(listed.stdout)
    ours = run_tool("defstate", "list", "defs", "--json", cwd=defstate_project, env=env)
    assert ours.returncode == 0, ours.stderr
    assert call_count(counter_dir, "catalog") == 2
    defstate_view = json.loads(ours.stdout)

    def dg_asset(a: dict[str, object]) -> dict[str, object]:
        tags = {t["key"]: t["value"] for t in a.get("tags") or []}  # type: ignore[attr-defined]
        return {
            "key": a["asset_key"],
            "deps": sorted(a["dependency_keys"]),  # type: ignore[call-overload]
            "group": a["group_name"],
            "kinds": sorted(a["kinds"]),  # type: ignore[call-overload]
            "tags": {k: v for k, v in tags.items() if not k.startswith("dagster/kind/")},
            "owners": sorted(
                o.get("email") or f"team:{o['team']}"
                for o in a.get("owners") or []  # type: ignore[attr-defined]
            ),
            "description": a.get("description"),
        }

    def defstate_asset(a: dict[str, object]) -> dict[str, object]:
        return {
            "key": a["key"],
            "deps": sorted(a["deps"]),  # type: ignore[call-overload]
            "group": a["group"],
            "kinds": sorted(a["kinds"]),  # type: ignore[call-overload]
            "tags": a["tags"],
            "owners": sorted(a["owners"]),  # type: ignore[call-overload]
            "description": a["description"],
        }

    ours_by_key = {a["key"]: defstate_asset(a) for a in defstate_view["assets"]}
    dagster_by_key = {a["asset_key"]: dg_asset(a) for a in dagster_view["assets"]}
    # Dagster adds a stub for an upstream that no definition defines; nothing else differs
    stub = dagster_by_key.pop("external/fx_rates")
    assert stub == {
        "key": "external/fx_rates", "deps": [], "group": "default", "kinds": [], "tags": {},
        "owners": [], "description": None,
    }  # fmt: skip
    assert dagster_by_key == ours_by_key
    assert len(ours_by_key) == 3
    # dg lists a check's deps with the checked asset first; defstate lists only the others
    assert sorted(
        (
            c["asset_key"],
            c["name"],
            c["description"],
            sorted(set(c["additional_deps"]) - {c["asset_key"]}),
        )
        for c in dagster_view["asset_checks"]
    ) == sorted(
        (c["asset"], c["name"], c["description"], c["additional_deps"])
        for c in defstate_view["asset_checks"]
    )
    assert len(dagster_view["asset_checks"]) == 3
