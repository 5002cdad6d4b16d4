"""uv.lock (what `make install` and `make test` install, with `uv sync --frozen`) matches
pyproject.toml: a requirement added or changed without `uv lock` would silently be missing or
stale in every fresh install, so this fails first, naming it."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import REPO_ROOT

Wanted = dict[tuple[str, str | None], SpecifierSet]


def _from_pyproject(project: dict[str, Any]) -> Wanted:
    wanted: Wanted = {}
    groups = {None: project["dependencies"], **project.get("optional-dependencies", {})}
    for extra, requirements in groups.items():
        for text in requirements:
            requirement = Requirement(text)
            wanted[(canonicalize_name(requirement.name), extra)] = requirement.specifier
    return wanted


def _from_lock(lock: dict[str, Any], name: str) -> Wanted:
    (package,) = [p for p in lock["package"] if p["name"] == name]
    locked: Wanted = {}
    for item in package["metadata"]["requires-dist"]:
        extra = re.fullmatch(r"extra == '([^']+)'", item.get("marker", ""))
        key = (canonicalize_name(item["name"]), extra.group(1) if extra else None)
        locked[key] = SpecifierSet(item.get("specifier", ""))
    return locked


def test_uv_lock_matches_pyproject() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    wanted = _from_pyproject(project)
    locked = _from_lock(lock, project["name"])
    stale = sorted(
        f"{name} {spec or '(any version)'}{f' (extra {extra})' if extra else ''}"
        for (name, extra), spec in wanted.items()
        if locked.get((name, extra)) != spec
    )
    assert not stale, f"pyproject.toml differs from uv.lock, run `.venv/bin/uv lock`: {stale}"
