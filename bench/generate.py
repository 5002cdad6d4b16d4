"""Generate a benchmark project: N state-backed components x K assets each.

    python -m bench.generate DIR --n 100 [--k 20] [--mode io|cpu|instant]
        [--management LOCAL_FILESYSTEM|VERSIONED_STATE_STORAGE] [--storage-url URL]

The project has ``pyproject.toml`` ([tool.defstate]), ``benchproj/components.py`` with
``BenchComponent`` and ``defs/cNNNNN/defs.yaml`` per component. ``write_state_to_path`` sleeps
(``io``), burns a fixed number of pure-Python loop iterations (``cpu``, holds the GIL) or returns
at once (``instant``); the state is a JSON list of K assets, each with a few deps. Versioned
projects write ``[tool.defstate.state_storage] url``; ``DEFSTATE_STATE_STORAGE_URL`` overrides it.
"""

from __future__ import annotations

import argparse
import inspect
import shutil
from pathlib import Path
from typing import Literal

from bench.plain import make_state

Mode = Literal["io", "cpu", "instant"]
MODES: tuple[Mode, ...] = ("io", "cpu", "instant")
MANAGEMENT_TYPES = ("LOCAL_FILESYSTEM", "VERSIONED_STATE_STORAGE")

# The state every bench project writes (bench.dagster_native's component and the plain
# refresh baseline share it): the source of bench.plain.make_state, copied into the project.
MAKE_STATE_PY = inspect.getsource(make_state) + "\n\n"

COMPONENTS_PY = (
    '''\
"""Benchmark component: state is a JSON list of assets, written by a slow or quick fetch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs

from defstate import AssetSpec, ComponentLoadContext, Definitions, StateBackedComponent


'''
    + MAKE_STATE_PY
    + """@attrs.define(kw_only=True)
class BenchComponent(StateBackedComponent):
    name: str
    upstream: str | None = None
    assets: int = 20
    mode: str = "instant"
    io_seconds: float = 0.2
    cpu_iterations: int = 200_000

    def get_defs_state_key(self) -> str:
        return f"Bench[{self.name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        if self.mode == "io":
            time.sleep(self.io_seconds)
        elif self.mode == "cpu":
            total = 0
            for i in range(self.cpu_iterations):
                total += i * i
        state_path.write_text(json.dumps(make_state(self.name, self.upstream, self.assets)))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:
            return Definitions()
        with state_path.open("rb") as handle:
            rows = json.load(handle)
        return Definitions(
            [
                AssetSpec(
                    key=f"{self.name}/{row['name']}",
                    deps=row["deps"],
                    group_name=self.name,
                    kinds=row["kinds"],
                    metadata={"rows": row["rows"]},
                )
                for row in rows
            ]
        )
"""
)


def component_name(index: int) -> str:
    return f"c{index:05d}"


def generate(
    root: Path,
    n: int,
    *,
    k: int = 20,
    mode: Mode = "instant",
    management: str = "LOCAL_FILESYSTEM",
    storage_url: str | None = None,
    io_seconds: float = 0.2,
    cpu_iterations: int = 200_000,
) -> Path:
    """Write the project into ``root`` (emptied first); returns ``root``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if management not in MANAGEMENT_TYPES:
        raise ValueError(f"management must be one of {MANAGEMENT_TYPES}, got {management!r}")
    if root.exists():
        shutil.rmtree(root)
    (root / "benchproj").mkdir(parents=True)
    pyproject = f'[project]\nname = "benchproj-{n}"\nversion = "0"\n\n[tool.defstate]\n'
    pyproject += 'defs_dir = "defs"\n'
    if management == "VERSIONED_STATE_STORAGE":
        url = storage_url or (root / ".state-storage").resolve().as_uri()
        pyproject += f'\n[tool.defstate.state_storage]\nurl = "{url}"\n'
    (root / "pyproject.toml").write_text(pyproject)
    (root / "benchproj" / "__init__.py").write_text("")
    (root / "benchproj" / "components.py").write_text(COMPONENTS_PY)
    for index in range(n):
        name = component_name(index)
        folder = root / "defs" / name
        folder.mkdir(parents=True)
        upstream = f"\n  upstream: {component_name(index - 1)}" if index else ""
        (folder / "defs.yaml").write_text(
            "type: benchproj.components.BenchComponent\n"
            "attributes:\n"
            f"  name: {name}{upstream}\n"
            f"  assets: {k}\n"
            f"  mode: {mode}\n"
            f"  io_seconds: {io_seconds}\n"
            f"  cpu_iterations: {cpu_iterations}\n"
            "  defs_state:\n"
            f"    management_type: {management}\n"
            # CPU-bound components opt in to worker processes, as the README recommends
            + ("    executor: process\n" if mode == "cpu" else "")
        )
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--n", type=int, required=True, help="components")
    parser.add_argument("--k", type=int, default=20, help="assets per component")
    parser.add_argument("--mode", choices=MODES, default="instant")
    parser.add_argument("--management", choices=MANAGEMENT_TYPES, default="LOCAL_FILESYSTEM")
    parser.add_argument("--storage-url", help="versioned storage URL (default file://ROOT/...)")
    parser.add_argument("--io-seconds", type=float, default=0.2)
    parser.add_argument("--cpu-iterations", type=int, default=200_000)
    args = parser.parse_args(argv)
    generate(
        args.root,
        args.n,
        k=args.k,
        mode=args.mode,
        management=args.management,
        storage_url=args.storage_url,
        io_seconds=args.io_seconds,
        cpu_iterations=args.cpu_iterations,
    )
    print(f"generated {args.n} components x {args.k} assets in {args.root}")


if __name__ == "__main__":
    main()
