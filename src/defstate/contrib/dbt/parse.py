"""Running dbt during a refresh: ``dbt deps`` when packages are missing, ``dbt parse`` with
partial parsing kept in a cache folder, and the trimmed manifest that becomes the state.

Only refreshes import this module's subprocess work; dbt itself runs in a child process of
this interpreter, so its global state, logging and import cost stay out of defstate.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from defstate.contrib.dbt.translator import mapping
from defstate.errors import TerminalRefreshError

STATE_FORMAT: Final = "defstate.dbt/2"
"""The ``format`` of the state this package writes and reads."""

PARSE_TIMEOUT_SECONDS: Final = 900.0
"""How long one ``dbt parse`` (or ``dbt deps``) may take before the refresh fails."""

# Runs dbt's own click entry point. `python -m dbt.cli.main` works too but makes runpy warn
# on every run, because `dbt.cli` imports `dbt.cli.main` before runpy executes it.
_DBT_ENTRY_POINT: Final = "from dbt.cli.main import cli; cli(prog_name='dbt')"

# How much of dbt's output an error message may carry: the error, not pages of log.
_MAX_ERROR_LINES: Final = 40

# Node fields the state keeps (dbt's names, so translators read them as in dagster-dbt).
_NODE_FIELDS: Final = (
    "unique_id",
    "name",
    "resource_type",
    "package_name",
    "version",
    "latest_version",
    "alias",
    "database",
    "schema",
    "identifier",
    "source_name",
    "source_description",
    "source_meta",
    "loader",
    "fqn",
    "description",
    "tags",
    "config",
    "meta",
    "group",
    "access",
    "original_file_path",
    "patch_path",
    "relation_name",
    "raw_code",
    "checksum",
    "attached_node",
    "column_name",
    "language",
)
_COLUMN_FIELDS: Final = ("name", "description", "data_type", "tags", "meta")
# Nodes kept whole; other node types are kept only as graph edges (deps pass through them).
_FULL_NODE_TYPES: Final = frozenset({"model", "seed", "snapshot", "test"})


class DbtProjectError(TerminalRefreshError, ValueError):
    """The dbt project folder or its ``dbt_project.yml`` is missing or unusable."""


class DbtParseError(TerminalRefreshError):
    """``dbt parse`` (or ``dbt deps``) failed; the message carries dbt's own error output.

    Terminal: a project that does not parse fails the same way on every retry.
    """


def read_dbt_project(project_dir: Path) -> dict[str, Any]:
    """``project_dir/dbt_project.yml`` as a mapping with a ``name``."""
    path = project_dir / "dbt_project.yml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DbtProjectError(f"{path} does not exist (is {project_dir} a dbt project?)") from None
    except OSError as exc:
        raise DbtProjectError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DbtProjectError(f"{path} is not valid YAML: {exc}") from None
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name:
        raise DbtProjectError(f"{path} has no 'name:'")
    return dict(document)


# --- commands ------------------------------------------------------------------------------


def _dbt_command(
    subcommand: str,
    project_dir: Path,
    work_dir: Path,
    *,
    profiles_dir: Path | None,
    target: str | None,
    dbt_vars: Mapping[str, Any] | None,
) -> list[str]:
    command = [
        sys.executable,
        "-c",
        _DBT_ENTRY_POINT,
        subcommand,
        "--project-dir",
        str(project_dir),
        # dbt's own logs/ (and target/, below) would dirty the project: keep them elsewhere.
        "--log-path",
        str(work_dir / "logs"),
        "--log-level-file",
        "none",
        # JSON log lines let errors be picked out reliably; warnings and errors are enough.
        "--log-format",
        "json",
        "--log-level",
        "warn",
        "--no-quiet",
        "--no-use-colors",
        # With both off, `dbt parse` opens no network connection at all.
        "--no-send-anonymous-usage-stats",
        "--no-upload-to-artifacts-ingest-api",
    ]
    if subcommand == "parse":
        command += ["--target-path", str(work_dir / "target"), "--partial-parse", "--write-json"]
        if target is not None:
            command += ["--target", target]
    if profiles_dir is not None:
        command += ["--profiles-dir", str(profiles_dir)]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars, sort_keys=True, default=str)]
    return command


def dbt_parse_command(
    project_dir: Path,
    work_dir: Path,
    *,
    profiles_dir: Path | None = None,
    target: str | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
) -> list[str]:
    """The ``dbt parse`` command line; everything dbt writes goes under ``work_dir``."""
    return _dbt_command(
        "parse",
        project_dir,
        work_dir,
        profiles_dir=profiles_dir,
        target=target,
        dbt_vars=dbt_vars,
    )


def parse_cache_dir(
    cache_root: Path,
    project_dir: Path,
    *,
    profiles_dir: Path | None,
    target: str | None,
    dbt_vars: Mapping[str, Any] | None,
) -> Path:
    """The folder that keeps dbt's ``partial_parse.msgpack`` between refreshes of one
    project, profile, target and vars (outside the project, never its ``target/``)."""
    identity = json.dumps(
        [str(project_dir), str(profiles_dir), target, dbt_vars or {}], sort_keys=True, default=str
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_root / "dbt" / f"{project_dir.name}-{digest}"


def _run(
    command: Sequence[str], project_dir: Path, what: str, timeout_seconds: float
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    try:
        # cwd: dbt resolves relative paths in profiles (and finds a profiles.yml there)
        # as if run inside the project, which is how dbt projects are used.
        completed = subprocess.run(
            command,
            cwd=project_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(
            f"{what} of {project_dir} did not finish within {timeout_seconds:g} s"
        ) from None
    if completed.returncode != 0:
        summary = summarize_dbt_output(completed.stdout, completed.stderr)
        if "No module named 'dbt" in summary:
            summary += (
                f"\n(dbt-core and an adapter must be installed for {sys.executable}: "
                "pip install 'defstate[dbt]')"
            )
        failed = f"{what} of {project_dir} failed (exit code {completed.returncode})"
        raise DbtParseError(f"{failed}:\n{summary}")
    return completed


def run_dbt_parse(
    project_dir: Path,
    cache_dir: Path,
    *,
    profiles_dir: Path | None = None,
    target: str | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    timeout_seconds: float = PARSE_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """``dbt deps`` if packages are missing, then ``dbt parse``; returns the manifest.

    ``cache_dir`` (see :func:`parse_cache_dir`) keeps dbt's partial-parse file, so a second
    parse of an unchanged project reads only what changed. One refresh at a time uses it.
    Raises :class:`DbtParseError` with dbt's error output, ``TimeoutError`` past the timeout.
    """
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "profiles_dir": profiles_dir,
        "target": target,
        "dbt_vars": dbt_vars,
    }
    with FileLock(str(cache_dir / ".lock"), timeout=timeout_seconds):
        install_missing_packages(project_dir, cache_dir, timeout_seconds, **options)
        command = dbt_parse_command(project_dir, cache_dir, **options)
        _run(command, project_dir, "dbt parse", timeout_seconds)
        manifest_path = cache_dir / "target" / "manifest.json"
        try:
            manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DbtParseError(
                f"dbt parse of {project_dir} succeeded but its manifest is unreadable: {exc}"
            ) from None
    return manifest


def install_missing_packages(
    project_dir: Path,
    cache_dir: Path,
    timeout_seconds: float,
    **options: Any,
) -> bool:
    """Run ``dbt deps`` when ``packages.yml``/``dependencies.yml`` asks for more packages than
    the packages folder holds (dbt's own test); returns whether it ran.

    Instances of one project with other targets or vars parse with their own caches, but
    share the project's packages folder: one ``dbt deps`` at a time per project folder.
    """
    from filelock import FileLock

    wanted = declared_package_count(project_dir)
    if wanted == 0:
        return False
    configured = read_dbt_project(project_dir).get("packages-install-path")
    install_dir = project_dir / str(configured or "dbt_packages")
    if _installed_count(install_dir) >= wanted:
        return False
    project_id = hashlib.sha256(str(project_dir).encode()).hexdigest()[:16]
    with FileLock(str(cache_dir.parent / f"deps-{project_id}.lock"), timeout=timeout_seconds):
        installed = _installed_count(install_dir)  # another refresh may have installed them
        if installed >= wanted:
            return False
        command = _dbt_command("deps", project_dir, cache_dir, **options)
        try:
            _run(command, project_dir, "dbt deps", timeout_seconds)
        except DbtParseError as exc:
            raise DbtParseError(
                f"{exc}\n(the project asks for {wanted} package(s) and {installed} are installed "
                f"in {install_dir}; dbt deps needs the package registry or git hosts: without "
                "network, vendor the packages into that folder)"
            ) from None
    return True


def _installed_count(install_dir: Path) -> int:
    return sum(1 for p in install_dir.iterdir() if p.is_dir()) if install_dir.is_dir() else 0


def declared_package_count(project_dir: Path) -> int:
    """How many packages ``packages.yml`` and ``dependencies.yml`` declare."""
    count = 0
    for name in ("packages.yml", "dependencies.yml"):
        path = project_dir / name
        if not path.is_file():
            continue
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise DbtProjectError(f"cannot read {path}: {exc}") from None
        packages = mapping(document).get("packages")
        count += len(packages) if isinstance(packages, list) else 0
    return count


def summarize_dbt_output(stdout: str, stderr: str, max_lines: int = _MAX_ERROR_LINES) -> str:
    """dbt's error messages from its JSON log; failing those, the last lines it printed.

    dbt logs a failed parse as error events; output without any (dbt missing, a crash
    before logging started) ends with what matters, e.g. a traceback's last line.
    """
    errors: list[str] = []
    other: list[str] = []
    for line in stdout.splitlines():
        event = _json_log_event(line)
        if event is None:
            if line.strip():
                other.append(line.rstrip())
            continue
        info = mapping(event.get("info"))
        message = info.get("msg")
        if not isinstance(message, str) or not message.strip():
            continue
        (errors if info.get("level") == "error" else other).append(message.rstrip())
    other += [line.rstrip() for line in stderr.splitlines() if line.strip()]
    if errors:
        lines = "\n".join(errors).splitlines()
        if len(lines) > max_lines:
            lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    else:
        lines = "\n".join(other).splitlines()[-max_lines:]
    return "\n".join(lines) if lines else "(dbt printed nothing)"


def _json_log_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


# --- the state: trimming the manifest ------------------------------------------------------


def trim_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The state for a ``manifest.json``: the whole project (every node, test, source and
    selector; selection happens when definitions are built), minus what is volatile.

    Raises :class:`DbtParseError` with dbt's wording when the graph has a cycle.
    """
    metadata = mapping(manifest.get("metadata"))
    nodes: dict[str, dict[str, Any]] = {}
    for unique_id, node in mapping(manifest.get("nodes")).items():
        if isinstance(node, Mapping):
            nodes[unique_id] = _trim_node(node)
    for unique_id, node in mapping(manifest.get("functions")).items():
        if isinstance(node, Mapping):
            nodes[unique_id] = _trim_node(node)
    sources = {
        unique_id: _trim_node(source)
        for unique_id, source in mapping(manifest.get("sources")).items()
        if isinstance(source, Mapping)
    }
    check_acyclic({**nodes, **sources})
    groups = {
        str(group["name"]): {"name": group["name"], "owner": dict(mapping(group.get("owner")))}
        for group in mapping(manifest.get("groups")).values()
        if isinstance(group, Mapping) and group.get("name")
    }
    selectors = {
        name: {"name": name, "definition": mapping(selector).get("definition")}
        for name, selector in mapping(manifest.get("selectors")).items()
    }
    return {
        "format": STATE_FORMAT,
        "project_name": metadata.get("project_name"),
        "project_id": metadata.get("project_id"),
        "adapter_type": metadata.get("adapter_type"),
        "dbt_version": metadata.get("dbt_version"),
        "nodes": nodes,
        "sources": sources,
        "groups": groups,
        "selectors": selectors,
    }


def _trim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    resource_type = node.get("resource_type")
    depends_on = {"nodes": sorted(set(mapping(node.get("depends_on")).get("nodes") or []))}
    if resource_type not in _FULL_NODE_TYPES and resource_type != "source":
        return {
            "unique_id": node.get("unique_id"),
            "name": node.get("name"),
            "resource_type": resource_type,
            "package_name": node.get("package_name"),
            "depends_on": depends_on,
        }
    trimmed = {field: node[field] for field in _NODE_FIELDS if node.get(field) is not None}
    trimmed["depends_on"] = depends_on
    columns = mapping(node.get("columns"))
    if columns:
        # a list: the state's JSON has sorted keys, and column order is the table's
        trimmed["columns"] = [
            {"name": name, **{f: column[f] for f in _COLUMN_FIELDS if column.get(f) is not None}}
            for name, column in columns.items()
            if isinstance(column, Mapping)
        ]
    test_metadata = mapping(node.get("test_metadata"))
    if test_metadata:
        trimmed["test_metadata"] = {
            "name": test_metadata.get("name"),
            "namespace": test_metadata.get("namespace"),
        }
    return trimmed


def check_acyclic(nodes: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise ``DbtParseError("Found a cycle: a --> b --> a")`` (dbt's wording) on a ref cycle.

    ``dbt parse`` does not look for cycles (``dbt compile``/``build`` do, too late for a
    refresh): a cyclic project must never be published.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(nodes):
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, list[str]]] = [(root, _parents(nodes, root))]
        state[root] = 1
        path.append(root)
        while stack:
            uid, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                state[uid] = 2
                continue
            parent = pending.pop()
            if state.get(parent) == 1:
                # the path follows refs upstream; dbt names a cycle downstream
                cycle = [*path[path.index(parent) :], parent][::-1]
                raise DbtParseError(f"Found a cycle: {' --> '.join(cycle)}")
            if not state.get(parent):
                state[parent] = 1
                path.append(parent)
                stack.append((parent, _parents(nodes, parent)))


def _parents(nodes: Mapping[str, Mapping[str, Any]], uid: str) -> list[str]:
    parents = mapping(nodes[uid].get("depends_on")).get("nodes") or []
    return sorted((p for p in parents if p in nodes), reverse=True)
