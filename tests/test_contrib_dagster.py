"""defstate.contrib.dagster in-process: Dagster's rules, the translation, pins, the private API.

The real-process behaviour (code servers, run workers, dg) is in test_dagster_processes.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dagster as dg
import pytest

from conftest import ProjectFactory, run_cli
from defstate import AssetCheckSpec, AssetSpec, load_defs, refresh_state
from defstate.contrib.dagster import rules
from defstate.contrib.dagster._dagster_private import DagsterLoadContext
from defstate.contrib.dagster.adapter import (
    DagsterDefinitionsError,
    build_for_load,
    pin_metadata_key,
)
from fixture_components import call_count

PEOPLE = """
import attrs

from defstate import AssetCheckSpec, AssetSpec, Component, Definitions


@attrs.define(kw_only=True)
class SpecComponent(Component):
    \"\"\"One asset per entry of ``specs`` (AssetSpec fields), checks from ``checks``.\"\"\"

    specs: list[dict]
    checks: list[dict] = attrs.field(factory=list)

    def build_defs(self, context):
        return Definitions(
            [AssetSpec(**spec) for spec in self.specs],
            [AssetCheckSpec(**check) for check in self.checks],
        )
"""


def _spec_project(make_project: ProjectFactory, specs: str, checks: str = "[]") -> Path:
    return make_project(
        {
            "people.py": PEOPLE,
            "defs/people/defs.yaml": f"""
                # specs as people write them
                type: people.SpecComponent
                attributes:
                  specs: {specs}
                  checks: {checks}
            """,
        }
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            AssetSpec(key="a", owners=["team-ingest"]),
            "owner 'team-ingest' is not valid in Dagster: an owner must be an email address or "
            "'team:NAME'",
        ),
        (AssetSpec(key="a", owners=["team:"]), "owner 'team:' is not valid in Dagster"),
        (AssetSpec(key="a", owners=["ana@localhost"]), "owner 'ana@localhost' is not valid"),
        (AssetSpec(key="a", group_name="my-group"), "group 'my-group' is not valid in Dagster"),
        (AssetSpec(key="a", group_name="a//b"), "group 'a//b' is not valid in Dagster"),
        (AssetSpec(key="a", tags={"a b": "x"}), "tag key 'a b' is not valid in Dagster"),
        (AssetSpec(key="a", tags={"ns/b/c": "x"}), "tag key 'ns/b/c' is not valid in Dagster"),
        (AssetSpec(key="a", tags={"k": "x y"}), "tag 'k' has a value Dagster rejects ('x y')"),
        (AssetSpec(key="a", tags={"k": "x" * 64}), "tag 'k' has a value Dagster rejects"),
        (AssetSpec(key="a", kinds=[f"k{i}" for i in range(11)]), "11 kinds: Dagster allows"),
        (AssetSpec(key="a", deps=["a"]), "depends on itself"),
        (
            AssetSpec(key="a", metadata={"dagster/column_schema": {"id": "int"}}),
            "metadata 'dagster/column_schema' must be",
        ),
        (
            AssetSpec(key="a", metadata={"dagster/row_count": "3"}),
            "metadata 'dagster/row_count' must be an integer",
        ),
        (
            AssetSpec(key="a", metadata={"dagster/table_name": 3}),
            "metadata 'dagster/table_name' must be a string",
        ),
    ],
)
def test_each_dagster_rule_is_reported(spec: AssetSpec, message: str) -> None:
    problems = rules.spec_violations(spec)
    assert len(problems) == 1
    assert message in problems[0]


def test_what_dagster_accepts_passes_the_rules() -> None:
    spec = AssetSpec(
        key=["raw-data", "orders.v2"],
        deps=["x"],
        group_name="marts/finance",
        owners=["team:ingest", "ana@example.com"],
        tags={"domain": "sales", "ns/key": "", "dagster/kind/duckdb": ""},
        kinds=[f"k{i}" for i in range(10)],
        metadata={
            "dagster/column_schema": {"columns": [{"name": "id", "type": "int"}]},
            "dagster/row_count": 3,
            "dagster/table_name": "raw.orders",
            "anything": {"nested": [1, None]},
        },
    )
    assert rules.spec_violations(spec) == []
    check = AssetCheckSpec(name="not_null_id", asset="a", additional_deps=["b"])
    assert rules.check_violations(check) == []


def test_checks_follow_dagster_rules() -> None:
    bad = AssetCheckSpec(name="not-null id", asset="a", additional_deps=["a", "b"])
    assert rules.check_violations(bad) == [
        "name 'not-null id' is not valid in Dagster: an asset check name must be [A-Za-z0-9_]",
        "lists the asset it checks as an additional dep, which Dagster rejects",
    ]
    fixed, notes = rules.normalize_check(bad)
    assert (fixed.name, [d.to_string() for d in fixed.additional_deps]) == ("not_null_id", ["b"])
    assert len(notes) == 2
    assert rules.check_violations(fixed) == []


def test_normalisation_follows_the_documented_rules() -> None:
    spec = AssetSpec(
        key="a",
        deps=["a", "b"],
        group_name="my-group/sub group",
        owners=["team-ingest", "team:", "ana@example.com", "team:ingest"],
        tags={"ok": "yes", "bad key": "x", "bad_value": "x y"},
        kinds=[f"k{i:02}" for i in range(12)],
        metadata={"dagster/row_count": "3", "kept": 1},
    )
    fixed, notes = rules.normalize_spec(spec)
    assert fixed.owners == ("team:team-ingest", "ana@example.com", "team:ingest")
    assert fixed.group_name == "my_group/sub_group"
    assert fixed.tags == {"ok": "yes"}
    assert fixed.kinds == tuple(f"k{i:02}" for i in range(10))
    assert [d.to_string() for d in fixed.deps] == ["b"]
    assert fixed.metadata == {"kept": 1}
    assert len(notes) == len(rules.spec_violations(spec))
    assert rules.spec_violations(fixed) == []
    assert rules.normalize_group("/") is None
    assert rules.normalize_spec(fixed) == (fixed, [])


def test_check_dagster_reports_every_violation_with_the_component_file_and_line(
    make_project: ProjectFactory,
) -> None:
    project = _spec_project(
        make_project,
        '[{key: a, owners: [team-ingest]}, {key: b, group_name: my-group, tags: {k: "x y"}}]',
        "[{name: not-null, asset: a}]",
    )
    plain = run_cli("check", cwd=project)
    assert plain.returncode == 0, plain.stderr  # defstate itself accepts all of it
    done = run_cli("check", "--dagster", cwd=project)
    assert done.returncode == 1
    where = "error: defs/people/defs.yaml:2: "
    assert done.stderr.splitlines() == [
        f"{where}asset a: owner 'team-ingest' is not valid in Dagster: an owner must be an "
        "email address or 'team:NAME'",
        f"{where}asset b: group 'my-group' is not valid in Dagster: a group name must be "
        "segments of [A-Za-z0-9_] separated by '/'",
        f"{where}asset b: tag 'k' has a value Dagster rejects ('x y'): a tag value must be "
        "[A-Za-z0-9_.-], at most 63 characters",
        f"{where}asset check a:not-null: name 'not-null' is not valid in Dagster: an asset "
        "check name must be [A-Za-z0-9_]",
        "4 problems found",
    ]


# ---- the adapter, in-process (Dagster's library, with a load context of our own) ----


class Recorder:
    """A Dagster load as the adapter sees it; ``recorded`` is what would travel to runs."""

    def __init__(self, metadata: dict[str, str] | None = None, dev: bool = False) -> None:
        self.recorded: dict[str, str] = {}
        self.context = DagsterLoadContext(
            reconstruction=metadata is not None,
            reconstruction_metadata=metadata or {},
            record=self.recorded.__setitem__,
            dev=dev,
        )


@pytest.mark.dagster
def test_every_field_reaches_the_dagster_asset_spec(make_project: ProjectFactory) -> None:
    project = _spec_project(
        make_project,
        json.dumps(
            [
                {
                    "key": "raw/orders",
                    "deps": ["raw/customers"],
                    "description": "Orders.",
                    "group_name": "raw",
                    "kinds": ["duckdb", "table"],
                    "tags": {"domain": "sales"},
                    "owners": ["team:ingest", "ana@example.com"],
                    "metadata": {
                        "row_count": 3,
                        "columns": ["id"],
                        "dagster/column_schema": {
                            "columns": [{"name": "id", "type": "int", "description": "pk"}]
                        },
                    },
                    "code_version": "abc123",
                },
                {"key": "raw/customers"},
            ]
        ),
        json.dumps(
            [
                {
                    "name": "not_null_id",
                    "asset": "raw/orders",
                    "description": "ids",
                    "blocking": True,
                    "additional_deps": ["raw/customers"],
                    "metadata": {"severity": "error"},
                }
            ]
        ),
    )
    defs = build_for_load(project, Recorder().context)
    spec = next(
        s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey(["raw", "orders"])
    )
    assert [d.asset_key for d in spec.deps] == [dg.AssetKey(["raw", "customers"])]
    assert spec.description == "Orders."
    assert spec.group_name == "raw"
    assert spec.kinds == {"duckdb", "table"}
    assert spec.owners == ["team:ingest", "ana@example.com"]
    assert {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")} == {
        "domain": "sales"
    }
    assert spec.code_version == "abc123"
    assert spec.metadata["row_count"] == 3
    assert spec.metadata["columns"] == ["id"]
    assert spec.metadata["dagster/column_schema"] == dg.TableSchema(
        columns=[dg.TableColumn(name="id", type="int", description="pk")]
    )
    [checks_def] = defs.asset_checks
    [check] = checks_def.check_specs
    assert check.key == dg.AssetCheckKey(dg.AssetKey(["raw", "orders"]), "not_null_id")
    assert (check.description, check.blocking) == ("ids", True)
    assert [d.asset_key for d in check.additional_deps] == [dg.AssetKey(["raw", "customers"])]
    assert check.metadata["severity"] == "error"


@pytest.mark.dagster
def test_violations_fail_with_file_and_line_or_are_normalised(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    project = _spec_project(
        make_project,
        "[{key: a, owners: [team-ingest], group_name: my-group}]",
        "[{name: not-null, asset: a}]",
    )
    with pytest.raises(DagsterDefinitionsError) as raised:
        build_for_load(project, Recorder().context)
    where = "defs/people/defs.yaml:2"
    assert str(raised.value).splitlines() == [
        f"defstate project {project}: 3 problems before Dagster can load it:",
        f"  {where}: asset a: owner 'team-ingest' is not valid in Dagster: an owner must be an "
        "email address or 'team:NAME'",
        f"  {where}: asset a: group 'my-group' is not valid in Dagster: a group name must be "
        "segments of [A-Za-z0-9_] separated by '/'",
        f"  {where}: asset check a:not-null: name 'not-null' is not valid in Dagster: an asset "
        "check name must be [A-Za-z0-9_]",
    ]
    with caplog.at_level(logging.WARNING, logger="defstate.contrib.dagster"):
        defs = build_for_load(project, Recorder().context, normalize=True)
    [spec] = defs.resolve_all_asset_specs()
    assert (spec.owners, spec.group_name) == (["team:team-ingest"], "my_group")
    [checks] = defs.asset_checks
    assert [c.name for c in checks.check_specs] == ["not_null"]
    assert len(caplog.messages) == 3
    assert all(m.startswith(f"{where}: ") and m.endswith("(normalised)") for m in caplog.messages)
    assert f"{where}: asset check a:not-null: name 'not-null'" in caplog.messages[2]


@pytest.mark.dagster
def test_a_broken_project_fails_with_every_problem(make_project: ProjectFactory) -> None:
    project = make_project(
        {
            "defs/a/defs.yaml": "type: nowhere.Component\n",
            "defs/b/defs.yaml": "type: fixture_components.PlainComponent\nattributes: {}\n",
        }
    )
    with pytest.raises(DagsterDefinitionsError) as raised:
        build_for_load(project, Recorder().context)
    assert len(raised.value.errors) == 2
    assert "defs/a/defs.yaml:1" in str(raised.value)
    assert "defs/b/defs.yaml" in str(raised.value)


def _versioned_project(make_project: ProjectFactory, tmp_path: Path) -> tuple[Path, Path]:
    external = tmp_path / "external.json"
    external.write_text('["a"]')
    project = make_project(
        {
            "defs/v/defs.yaml": f"""
                type: fixture_components.ListComponent
                attributes:
                  source_file: {external}
                  name: v
                  defs_state: {{management_type: VERSIONED_STATE_STORAGE}}
            """
        },
        pyproject_extra=f'[tool.defstate.state_storage]\nurl = "file://{tmp_path / "store"}"\n',
    )
    return project, external


def _keys(defs: object) -> list[str]:
    return sorted(k.to_user_string() for k in defs.resolve_all_asset_keys())  # type: ignore[attr-defined]


@pytest.mark.dagster
def test_initialization_records_the_pin_and_reconstruction_uses_it(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project, external = _versioned_project(make_project, tmp_path)
    assert refresh_state(project).ok
    init = Recorder()
    assert _keys(build_for_load(project, init.context)) == ["a"]
    key = pin_metadata_key("proj")
    assert list(init.recorded) == [key]
    pin = json.loads(init.recorded[key])
    assert pin == load_defs(project).state_info.to_json_dict()

    external.write_text('["a", "b"]')
    assert refresh_state(project).ok
    pointer = tmp_path / "store" / "_pointers.d" / "List[v].json"
    pointer.write_text("garbage")  # a reconstruction never reads it
    again = Recorder(dict(init.recorded))
    assert _keys(build_for_load(project, again.context)) == ["a"]
    assert again.recorded == init.recorded  # the pin travels on unchanged
    pointer.unlink()


@pytest.mark.dagster
def test_dev_initialization_refreshes_once_and_reconstruction_never(
    make_project: ProjectFactory, counter_dir: Path
) -> None:
    project = make_project(
        {
            f"defs/{name}/defs.yaml": f"""
                type: fixture_components.ListComponent
                attributes:
                  assets: [{name}1]
                  prefix: {name}_
                  counter_dir: {counter_dir}
                  name: shared
            """
            for name in ("x", "y")
        }
    )
    init = Recorder(dev=True)
    assert _keys(build_for_load(project, init.context)) == ["x_x1", "y_x1"]
    assert call_count(counter_dir, "shared") == 1  # two instances, one key, one refresh
    assert _keys(build_for_load(project, Recorder(dict(init.recorded), dev=True).context))
    assert call_count(counter_dir, "shared") == 1
    build_for_load(project, Recorder(dev=False).context)
    assert call_count(counter_dir, "shared") == 1  # not dev: no refresh


@pytest.mark.dagster
def test_build_dagster_definitions_finds_the_project_of_the_calling_file(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = _spec_project(make_project, "[{key: a}]")
    (project / "sub").mkdir()
    code = "from defstate.contrib.dagster import build_dagster_definitions\ndefs = build_dagster_definitions()\n"
    monkeypatch.chdir(tmp_path)  # not the project: the caller's file decides
    namespace: dict[str, object] = {"__file__": str(project / "sub" / "definitions.py")}
    exec(compile(code, str(project / "sub" / "definitions.py"), "exec"), namespace)
    assert _keys(namespace["defs"]) == ["a"]


# ---- the private Dagster API, isolated in _dagster_private.current_load_context ----


@pytest.mark.dagster
def test_dagsters_private_load_context_api_is_what_defstate_relies_on() -> None:
    """Fails when a Dagster release changes what carries the pin to run workers."""
    from defstate.contrib.dagster._dagster_private import current_load_context

    try:
        from dagster._core.definitions.definitions_load_context import (
            DefinitionsLoadContext,
            DefinitionsLoadType,
        )
        from dagster._core.definitions.repository_definition import RepositoryLoadData
        from dagster._utils.test.definitions import scoped_reconstruction_metadata
    except ImportError as exc:
        pytest.fail(f"dagster {dg.__version__} moved its definitions load context: {exc}")

    initialization = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(initialization):
        context = current_load_context()
        assert not context.reconstruction
        context.record("defstate/pin[x]", "{}")
        assert initialization.get_pending_reconstruction_metadata() == {"defstate/pin[x]": "{}"}, (
            f"dagster {dg.__version__}: add_to_pending_reconstruction_metadata no longer records"
        )
    with scoped_reconstruction_metadata({"defstate/pin[x]": "{}"}):
        context = current_load_context()
        assert context.reconstruction, f"dagster {dg.__version__}: load types changed"
        assert context.reconstruction_metadata == {"defstate/pin[x]": "{}"}, (
            f"dagster {dg.__version__}: reconstruction_metadata no longer returns what was recorded"
        )
    assert RepositoryLoadData(reconstruction_metadata={}).reconstruction_metadata == {}


@pytest.mark.dagster
def test_a_changed_private_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext

    from defstate.contrib.dagster._dagster_private import (
        DagsterApiChangedError,
        current_load_context,
    )

    monkeypatch.delattr(DefinitionsLoadContext, "add_to_pending_reconstruction_metadata")
    with pytest.raises(DagsterApiChangedError, match=r"dagster 1\.\d+\.\d+ changed the private"):
        current_load_context()


@pytest.mark.dagster
def test_the_component_type_is_registered_for_dg_list_components() -> None:
    from importlib.metadata import entry_points

    [entry] = [
        e for e in entry_points(group="dagster_dg_cli.registry_modules") if e.name == "defstate"
    ]
    module = entry.load()
    assert issubclass(module.DefstateProjectComponent, dg.Component)
    assert "DefstateProjectComponent" in dir(module)


@pytest.mark.dagster
def test_code_server_snapshots_travel_inside_the_pin(
    make_project: ProjectFactory, counter_dir: Path, tmp_path: Path
) -> None:
    external = tmp_path / "external.json"
    external.write_text('["s1"]')
    project = make_project(
        {
            "defs/snap/defs.yaml": f"""
                type: fixture_components.ListComponent
                attributes:
                  source_file: {external}
                  counter_dir: {counter_dir}
                  name: snap
                  defs_state: {{management_type: LEGACY_CODE_SERVER_SNAPSHOTS}}
            """
        }
    )
    init = Recorder()  # not dev: snapshots are made by every initialization all the same
    assert _keys(build_for_load(project, init.context)) == ["s1"]
    assert call_count(counter_dir, "snap") == 1
    external.write_text('["s1", "s2"]')
    run_worker = Recorder(dict(init.recorded))
    assert _keys(build_for_load(project, run_worker.context)) == ["s1"]  # from the pin's bytes
    assert call_count(counter_dir, "snap") == 1


@pytest.mark.dagster
def test_a_reconstruction_without_a_pin_loads_latest_without_refreshing(
    make_project: ProjectFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project, external = _versioned_project(make_project, tmp_path)
    assert refresh_state(project).ok
    external.write_text('["a", "b"]')  # a refresh would publish this
    unpinned = Recorder({}, dev=True)  # e.g. `dagster asset materialize -f` under dg
    with caplog.at_level(logging.WARNING, logger="defstate.contrib.dagster"):
        assert _keys(build_for_load(project, unpinned.context)) == ["a"]
    assert "no defstate pin in Dagster's reconstruction metadata" in caplog.text
