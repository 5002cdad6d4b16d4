"""Generate the bench project as Dagster's own components: N ``StateBackedComponent``s x K assets.

    python -m bench.dagster_native DIR --n 100 [--k 20]

The same assets, deps, groups, kinds and metadata as ``bench.generate`` (one component per
``defs/cNNNNN/defs.yaml``, state = a JSON list of K assets), written as a dg project whose
component subclasses ``dagster.StateBackedComponent`` with local-filesystem state. Refresh its
state with ``dg utils refresh-defs-state``; ``refresh_if_dev`` is off so that ``dg list defs``
only loads.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bench.generate import MAKE_STATE_PY, component_name

PACKAGE = "dgnative"

COMPONENTS_PY = (
    '''\
"""The bench component written against Dagster's StateBackedComponent."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components import DefsStateConfig, DefsStateConfigArgs, ResolvedDefsStateConfig


'''
    + MAKE_STATE_PY
    + """@dataclass
class BenchComponent(dg.StateBackedComponent, dg.Resolvable):
    name: str
    upstream: str | None = None
    assets: int = 20
    defs_state: ResolvedDefsStateConfig = field(
        default_factory=DefsStateConfigArgs.local_filesystem
    )

    @property
    def defs_state_config(self) -> DefsStateConfig:
        return DefsStateConfig.from_args(self.defs_state, default_key=f"Bench[{self.name}]")

    def write_state_to_path(self, state_path: Path) -> None:
        state_path.write_text(json.dumps(make_state(self.name, self.upstream, self.assets)))

    def build_defs_from_state(
        self, context: dg.ComponentLoadContext, state_path: Path | None
    ) -> dg.Definitions:
        if state_path is None:
            return dg.Definitions()
        with state_path.open("rb") as handle:
            rows = json.load(handle)
        return dg.Definitions(
            assets=[
                dg.AssetSpec(
                    key=dg.AssetKey([self.name, row["name"]]),
                    deps=[dg.AssetKey(dep.split("/")) for dep in row["deps"]],
                    group_name=self.name,
                    kinds=set(row["kinds"]),
                    metadata={"rows": row["rows"]},
                )
                for row in rows
            ]
        )
"""
)

DEFINITIONS_PY = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def dg_pyproject(name: str, package: str) -> str:
    """A dg project's ``pyproject.toml`` (telemetry off)."""
    return (
        f'[project]\nname = "{name}"\nversion = "0"\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n'
        f'[tool.dg.project]\nroot_module = "{package}"\n\n'
        "[tool.dg.cli.telemetry]\nenabled = false\n"
    )


def write_dg_package(root: Path, package: str) -> Path:
    """``root`` emptied, with a dg project skeleton; returns its defs folder."""
    if root.exists():
        shutil.rmtree(root)
    defs = root / package / "defs"
    defs.mkdir(parents=True)
    (root / "pyproject.toml").write_text(dg_pyproject(f"{package}-bench", package))
    (root / package / "__init__.py").write_text("")
    (root / package / "definitions.py").write_text(DEFINITIONS_PY)
    (defs / "__init__.py").write_text("")
    return defs


def generate(root: Path, n: int, *, k: int = 20) -> Path:
    """Write the Dagster-native bench project into ``root`` (emptied first)."""
    defs = write_dg_package(root, PACKAGE)
    (root / PACKAGE / "components.py").write_text(COMPONENTS_PY)
    for index in range(n):
        name = component_name(index)
        folder = defs / name
        folder.mkdir()
        upstream = f"\n  upstream: {component_name(index - 1)}" if index else ""
        (folder / "defs.yaml").write_text(
            f"type: {PACKAGE}.components.BenchComponent\n"
            "attributes:\n"
            f"  name: {name}{upstream}\n"
            f"  assets: {k}\n"
            "  defs_state:\n"
            "    management_type: LOCAL_FILESYSTEM\n"
            "    refresh_if_dev: false\n"
        )
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--n", type=int, required=True, help="components")
    parser.add_argument("--k", type=int, default=20, help="assets per component")
    args = parser.parse_args(argv)
    generate(args.root, args.n, k=args.k)
    print(f"generated {args.n} Dagster components x {args.k} assets in {args.root}")


if __name__ == "__main__":
    main()
