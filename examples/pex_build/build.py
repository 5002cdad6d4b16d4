"""Build a PEX of a defstate project with its LOCAL_FILESYSTEM state baked in.

    python examples/pex_build/build.py [--project examples/quickstart] [--output app.pex]

1. stage a clean copy of the project (no developer state, caches or virtualenvs);
2. make a build venv with defstate (a wheel of this repository) and the project's
   ``[project].dependencies``, installed by uv;
3. ``defstate state refresh --management-type LOCAL_FILESYSTEM`` in that venv: the one moment
   the external systems are read;
4. ``pex --venv`` from that venv, with the project (``pyproject.toml``, the package holding the
   defs folder and its ``.local_defs_state/``) as a sources directory and ``defstate_entry.py``
   as the entry point: ``./app.pex list defs`` runs ``defstate`` on the baked project.

See README.md next to this file. Needs ``uv`` and ``pex`` (beside this Python or on PATH).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENTRY = HERE / "defstate_entry.py"
PROJECT_IN_PEX = "defstate_project"  # must match defstate_entry.PROJECT_ROOT
# Never staged: a developer's local state (a fresh refresh makes it), caches, environments.
_NOT_STAGED = shutil.ignore_patterns(".local_defs_state", "__pycache__", "*.pyc", ".venv", ".git")
# Not shipped: lock files and abandoned temporaries of a refresh.
_NOT_SHIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.lock", ".tmp-*")


def tool(name: str) -> str:
    """``name`` beside the running Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise SystemExit(f"error: `{name}` not found: pip install {name}")
    return found


def run(*args: object) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    returncode = subprocess.run([str(a) for a in args], check=False).returncode
    if returncode != 0:
        raise SystemExit(f"error: {Path(str(args[0])).name} exited with {returncode}")


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


def read_project(project: Path) -> tuple[list[str], str]:
    """The project's dependencies other than defstate, and the top folder of its defs folder."""
    data = tomllib.loads((project / "pyproject.toml").read_text())
    deps = [r for r in data.get("project", {}).get("dependencies", []) if _name(r) != "defstate"]
    defs_dir = Path(data.get("tool", {}).get("defstate", {}).get("defs_dir", "defs"))
    if defs_dir.is_absolute() or ".." in defs_dir.parts:
        raise SystemExit(f"error: defs_dir {defs_dir} must be inside the project to be baked")
    return deps, defs_dir.parts[0]


def stage(project_src: Path, build_dir: Path) -> Path:
    """A fresh build dir holding a clean copy of the project."""
    if build_dir.is_relative_to(project_src):
        raise SystemExit(f"error: the build dir {build_dir} must be outside the project")
    marker = build_dir / ".defstate-pex-build"
    if build_dir.exists() and any(build_dir.iterdir()) and not marker.exists():
        raise SystemExit(f"error: {build_dir} is not empty and not a build dir of this script")
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    marker.touch()
    shutil.copytree(project_src, build_dir / "project", ignore=_NOT_STAGED)
    return build_dir / "project"


def make_venv(build_dir: Path, deps: Sequence[str]) -> Path:
    """A venv with defstate (a wheel of this repository) and the project's dependencies."""
    uv, venv = tool("uv"), build_dir / "venv"
    run(uv, "build", "--wheel", "--out-dir", build_dir / "dist", REPO)
    wheel = next((build_dir / "dist").glob("defstate-*.whl"))
    run(uv, "venv", "--python", sys.executable, venv)
    # the serve extra: the PEX is a code location (`serve`), whose HTTP server needs it
    run(uv, "pip", "install", "--python", venv / "bin" / "python", f"{wheel}[serve]", *deps)
    return venv


def assemble(project: Path, sources: Path, ship: Sequence[str]) -> None:
    """The PEX's sources: the entry point, and the project with its baked state."""
    baked = sources / PROJECT_IN_PEX
    baked.mkdir(parents=True)
    shutil.copy2(ENTRY, sources / ENTRY.name)
    shutil.copy2(project / "pyproject.toml", baked / "pyproject.toml")
    for relative in dict.fromkeys(ship):
        src = project / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts or not src.exists():
            raise SystemExit(f"error: {relative} is not a file or folder of the project")
        if src.is_dir():
            shutil.copytree(src, baked / relative, ignore=_NOT_SHIPPED)
        else:
            (baked / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, baked / relative)


def build(
    project_src: Path, build_dir: Path, output: Path, *, refresh: bool, include: Sequence[str]
) -> Path:
    """Run the four steps; returns the PEX path."""
    pex = tool("pex")
    project = stage(project_src, build_dir)
    deps, top = read_project(project)
    venv = make_venv(build_dir, deps)
    if refresh:  # the only step that reads the external systems
        defstate = (venv / "bin" / "python", "-m", "defstate", "--project", project)
        run(*defstate, "state", "refresh", "--management-type", "LOCAL_FILESYSTEM")
    assemble(project, build_dir / "pex_src", [top, *include])
    output.parent.mkdir(parents=True, exist_ok=True)
    # --venv: at run time the PEX becomes a real venv under $PEX_ROOT, so `defstate serve` can
    # start its `python -m defstate` worker processes with sys.executable.
    run(
        *(pex, "defstate[serve]", *deps, "--venv-repository", venv, "--venv"),
        *("--sources-directory", build_dir / "pex_src", "--entry-point", "defstate_entry:main"),
        *("--output-file", output),
    )
    return output


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project",
        type=Path,
        default=REPO / "examples" / "quickstart",
        help="the project folder (default: examples/quickstart)",
    )
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=REPO / "build" / "pex",
        help="work folder, wiped first (default: build/pex)",
    )
    parser.add_argument("--output", type=Path, help="default: BUILD_DIR/app.pex")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="another project-relative file or folder to ship (repeatable), e.g. a dbt project",
    )
    parser.add_argument(
        "--no-refresh",
        action="store_true",
        help="skip the refresh: the PEX has no baked state and fails under DEFSTATE_DEPLOY=1",
    )
    args = parser.parse_args(argv)
    output = args.output or args.build_dir / "app.pex"
    built = build(
        args.project.resolve(),
        args.build_dir.resolve(),
        output.resolve(),
        refresh=not args.no_refresh,
        include=args.include,
    )
    print(f"built {built}")


if __name__ == "__main__":
    main()
