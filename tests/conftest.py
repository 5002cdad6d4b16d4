"""Shared fixtures: throw-away projects and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

pytest_plugins = ["storage_servers", "postgres_server"]

ProjectFactory = Callable[..., Path]


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Create a project: ``make_project({"defs/a/defs.yaml": "..."}, pyproject_extra="...")``."""

    def make(files: Mapping[str, str], *, pyproject_extra: str = "", name: str = "proj") -> Path:
        root = tmp_path / name
        root.mkdir()
        pyproject = f'[project]\nname = "{name}"\n\n[tool.defstate]\n{pyproject_extra}\n'
        (root / "pyproject.toml").write_text(pyproject)
        write_files(root, files)
        return root

    return make


@pytest.fixture
def counter_dir(tmp_path: Path) -> Path:
    path = tmp_path / "counters"
    path.mkdir()
    return path


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: fixture components importable, no user state."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env.pop("DEFSTATE_DEPLOY", None)
    env.pop("DEFSTATE_STATE_INFO", None)
    env.update(extra or {})
    return env


def run_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m defstate ARGS`` in a real child process."""
    return subprocess.run(
        [sys.executable, "-m", "defstate", *args],
        cwd=cwd,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Secrets a test registered (values of its env templates) are not masked in later tests."""
    yield
    from defstate.redaction import forget_secrets

    forget_secrets()
