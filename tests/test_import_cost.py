"""What importing defstate and running a load pulls in (behaviour; the timings are in bench/).

Every CLI command and every code-server worker starts a fresh interpreter, so modules imported
on the load path are paid for at every reload. These tests keep the expensive ones where they
belong: the storage backends, the terminal UI, the watcher, dbt and the retry library only in
the commands that use them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ProjectFactory, subprocess_env

# fsspec backends, rich, watchfiles, dbt and tenacity: only the commands that need them.
HEAVY = {
    "fsspec", "s3fs", "gcsfs", "botocore", "rich", "watchfiles", "dbt", "tenacity", "dagster",
}  # fmt: skip
HEAVY |= {"sqlalchemy", "psycopg", "dlt"}  # contrib drivers: only their refreshes
# the web server of `serve` / `dev` (the serve extra): never on the load path
HEAVY |= {"starlette", "uvicorn", "anyio", "h11"}
# What a load that only reads local state never needs (measured here: logging with traceback
# ~3 ms, hashlib ~4 ms, shutil with bz2/lzma ~3 ms of every worker's start-up).
NOT_ON_READ_PATH = {"logging", "hashlib", "shutil", "signal"}

_REPORT = """
import json, sys
{code}
print(json.dumps(sorted(sys.modules)))
"""


def _imported(code: str, cwd: Path | None = None) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _REPORT.format(code=code)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    modules = json.loads(done.stdout.splitlines()[-1])
    return {name.split(".")[0] for name in modules} | set(modules)


def test_import_defstate_defers_loader_yaml_cli_and_heavy_modules() -> None:
    modules = _imported("import defstate")
    assert not modules & HEAVY
    assert not modules & {"yaml", "click", "defstate.loader", "defstate.cli", "tomllib"}


def test_dagster_rules_and_the_contrib_package_do_not_import_dagster() -> None:
    # `defstate check --dagster` works without Dagster; the adapter imports it on first use
    modules = _imported("import defstate.contrib.dagster, defstate.contrib.dagster.rules")
    assert "dagster" not in modules


def test_component_api_is_cheap_to_import() -> None:
    modules = _imported(
        "from defstate import StateBackedComponent, AssetSpec, Definitions, ComponentLoadContext"
    )
    assert not modules & HEAVY
    assert "defstate.loader" not in modules


def test_list_defs_from_local_state_imports_only_the_read_path(
    make_project: ProjectFactory,
) -> None:
    project = make_project(
        {
            "defs/tables/defs.yaml": """
                type: tables.TablesComponent
                attributes:
                  names: [a, b]
            """,
            # a component module like a user's: the fixture components import asyncio
            "tables.py": """
                import json
                from pathlib import Path

                import attrs

                from defstate import AssetSpec, Definitions, StateBackedComponent


                @attrs.define(kw_only=True)
                class TablesComponent(StateBackedComponent):
                    names: list[str]

                    def write_state_to_path(self, state_path: Path) -> None:
                        state_path.write_text(json.dumps(self.names))

                    def build_defs_from_state(self, context, state_path):
                        names = json.loads(state_path.read_text()) if state_path else []
                        return Definitions([AssetSpec(key=n) for n in names])
            """,
        }
    )
    refresh = subprocess.run(
        [sys.executable, "-m", "defstate", "state", "refresh"],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refresh.returncode == 0, refresh.stderr
    code = (
        "import contextlib, io\n"
        "from defstate.cli.main import main\n"
        "sys.argv = ['defstate', 'list', 'defs', '--no-refresh', '--json']\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main()\n"
        "assert len(json.loads(out.getvalue())['assets']) == 2, out.getvalue()\n"
    )
    modules = _imported(code, cwd=project)
    assert not modules & HEAVY
    assert not modules & NOT_ON_READ_PATH, modules & NOT_ON_READ_PATH
