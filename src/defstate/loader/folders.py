"""The folders defstate never looks into: one home for discovery, the dev watcher and
``list component-types``."""

from __future__ import annotations

GENERATED_DIRS = frozenset({"__pycache__", "node_modules", "target", "logs"})
"""Caches and build output (dbt's ``target``, ``logs``): never a component's folder."""

TOOLING_DIRS = frozenset(
    {
        ".local_defs_state",
        ".git",
        ".hg",
        ".venv",
        "venv",
        "env",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "dbt_packages",
        "build",
        "dist",
    }
)
"""State, version control, virtual environments, tool caches and packaging output."""

NOT_PROJECT_SOURCES = GENERATED_DIRS | TOOLING_DIRS
"""What the dev watcher ignores and type listing does not import."""


def is_skipped_in_defs(name: str) -> bool:
    """Whether discovery skips a folder of the defs folder (hidden ones too)."""
    return name.startswith(".") or name in GENERATED_DIRS
