"""A project's ``[tool.defstate]`` configuration in ``pyproject.toml``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import ProjectConfigError, SourceLocation, TemplateError
from defstate.loader.yaml_source import expand_templates, map_strings
from defstate.redaction import register_credentials

PYPROJECT = "pyproject.toml"
_KNOWN_KEYS = frozenset(
    {"defs_dir", "state_storage", "schedules", "refresh_concurrency", "snapshot_max_bytes"}
)


_CALL_SETTINGS = ("attempts", "deadline", "connect_timeout", "read_timeout")


@attrs.frozen
class StateStorageConfig:
    """``[tool.defstate.state_storage]``: an fsspec URL, its storage options, and how storage
    calls are bounded (``attempts``, ``deadline``, ``connect_timeout``, ``read_timeout``:
    numbers of seconds except ``attempts``; defaults 4, 60, 5, 20)."""

    url: str
    storage_options: Mapping[str, Any] = attrs.field(factory=dict)
    call_settings: Mapping[str, float] = attrs.field(factory=dict)


@attrs.frozen
class ProjectConfig:
    """The parsed ``[tool.defstate]`` table of a project."""

    root: Path
    defs_dir: Path
    refresh_concurrency: int = 32
    snapshot_max_bytes: int = 10 * 1024 * 1024
    state_storage: StateStorageConfig | None = None
    schedules: Mapping[str, Any] = attrs.field(factory=dict)  # the raw [...schedules] table

    @property
    def pyproject(self) -> Path:
        return self.root / PYPROJECT


def find_project_root(start: Path | None = None) -> Path:
    """Walk up from ``start`` (default: cwd) to the first ``pyproject.toml`` with
    a ``[tool.defstate]`` table."""
    return _find_project(start)[0]


def _find_project(start: Path | None) -> tuple[Path, dict[str, Any]]:
    """The project folder and its parsed ``pyproject.toml`` (see :func:`find_project_root`)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PYPROJECT
        if candidate.is_file():
            document = _read_toml(candidate)
            if "defstate" in document.get("tool", {}):
                return folder, document
    raise ProjectConfigError(
        f"no {PYPROJECT} with a [tool.defstate] table in {here} or any parent folder "
        "(pass --project DIR)"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ProjectConfigError(f"invalid TOML: {exc}", SourceLocation(path)) from None
    except OSError as exc:
        raise ProjectConfigError(f"cannot read: {exc.strerror}", SourceLocation(path)) from None


def load_project_config(root: Path | str | None = None) -> ProjectConfig:
    """Read ``<root>/pyproject.toml``; an absent ``[tool.defstate]`` table means defaults.

    ``root=None`` walks up from the current folder (:func:`find_project_root`).
    """
    if root is None:
        root, document = _find_project(None)  # already read: parse it once
    else:
        root = Path(root).resolve()
        path = root / PYPROJECT
        if not path.is_file():
            raise ProjectConfigError(f"{path} does not exist: {root} is not a defstate project")
        document = _read_toml(path)
    path = root / PYPROJECT
    table = document.get("tool", {}).get("defstate", {})
    where = SourceLocation(path)
    if not isinstance(table, dict):
        raise ProjectConfigError("[tool.defstate] must be a table", where)
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise ProjectConfigError(
            f"unknown key(s) in [tool.defstate]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_KNOWN_KEYS))})",
            where,
        )
    defs_dir = table.get("defs_dir", "defs")
    if not isinstance(defs_dir, str) or not defs_dir:
        raise ProjectConfigError("[tool.defstate] defs_dir must be a non-empty string", where)
    return ProjectConfig(
        root=root,
        defs_dir=(root / defs_dir).resolve(),
        refresh_concurrency=_positive_int(table, "refresh_concurrency", 32, where),
        snapshot_max_bytes=_positive_int(table, "snapshot_max_bytes", 10 * 1024 * 1024, where),
        state_storage=_state_storage_config(table.get("state_storage"), root, where),
        schedules=table.get("schedules", {}),
    )


def _positive_int(table: Mapping[str, Any], name: str, default: int, where: SourceLocation) -> int:
    value = table.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProjectConfigError(f"[tool.defstate] {name} must be a positive integer", where)
    return value


def _state_storage_config(
    table: Any, root: Path, where: SourceLocation
) -> StateStorageConfig | None:
    url = os.environ.get("DEFSTATE_STATE_STORAGE_URL")
    options: Mapping[str, Any] = {}
    if table is not None:
        if not isinstance(table, dict):
            raise ProjectConfigError("[tool.defstate.state_storage] must be a table", where)
        url = url or table.get("url")
        options = table.get("storage_options", {})
        if not isinstance(options, dict):
            raise ProjectConfigError(
                "[tool.defstate.state_storage] storage_options must be a table", where
            )
    if not url:
        return None
    if not isinstance(url, str):
        raise ProjectConfigError("[tool.defstate.state_storage] url must be a string", where)
    problems: list[str] = []

    def expand(text: str, _: object = None) -> str:
        try:
            return expand_templates(text, root, os.environ)
        except TemplateError as exc:
            problems.extend(exc.problems)
            return text

    url = expand(url)
    options = map_strings(options, expand)
    if problems:
        raise ProjectConfigError(f"[tool.defstate.state_storage]: {'; '.join(problems)}", where)
    _reject_userinfo(url, where)
    register_credentials(options)
    settings = _call_settings(table or {}, where)
    return StateStorageConfig(url=url, storage_options=options, call_settings=settings)


def _reject_userinfo(url: str, where: SourceLocation) -> None:
    """``scheme://user:password@host/...``: credentials belong in storage_options, and
    fsspec would take a ``file://`` URL's user part as a folder name."""
    from urllib.parse import urlsplit

    netloc = urlsplit(url).netloc
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        shown = f"{url.split('://', 1)[0]}://***@{host}" if "://" in url else "***"
        raise ProjectConfigError(
            f"[tool.defstate.state_storage] url {shown}... must not contain user:password@ "
            "(put credentials in [tool.defstate.state_storage.storage_options])",
            where,
        )


def _call_settings(table: Mapping[str, Any], where: SourceLocation) -> dict[str, float]:
    settings: dict[str, float] = {}
    for name in _CALL_SETTINGS:
        if name not in table:
            continue
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ProjectConfigError(
                f"[tool.defstate.state_storage] {name} must be a positive number", where
            )
        if name == "attempts" and not isinstance(value, int):
            raise ProjectConfigError(
                "[tool.defstate.state_storage] attempts must be a positive integer", where
            )
        settings[name] = value
    return settings
