"""dbt projects as state-backed components.

:class:`DbtProjectComponent` turns a dbt project into asset specs. Its *state* is a trimmed,
normalised ``manifest.json`` produced by a real ``dbt parse``; building definitions reads
only that file, so loading a project never imports or runs dbt. Importing this module is
cheap too: dbt runs in a subprocess, and only during a refresh.

A ``defs.yaml`` entry::

    type: defstate.contrib.dbt.DbtProjectComponent
    attributes:
      project_dir: dbt_project     # relative to the project root, or absolute
      profiles_dir: dbt_project    # optional, see below
      target: dev                  # optional: the profile's default target otherwise
      vars: {start_date: "2024-01-01"}

``profiles_dir`` defaults to ``project_dir`` when it holds a ``profiles.yml``; otherwise
dbt's own lookup applies (``$DBT_PROFILES_DIR``, else ``~/.dbt``). ``vars`` are passed to
dbt as JSON (values JSON cannot express, such as YAML dates, are passed as their text).

**State key**: ``DbtProject[<name>]``, ``<name>`` being ``name:`` in ``dbt_project.yml``;
``defs_state: {key: ...}`` overrides it.

**State format**: one UTF-8 JSON file, keys sorted, two-space indent, trailing newline::

    {
      "format": "defstate.dbt/1",
      "project_name": "shop", "adapter_type": "duckdb", "dbt_version": "1.11.16",
      "nodes":   {"model.shop.customers": NODE, ...},          # models, seeds, snapshots
      "sources": {"source.shop.shop_raw.orders": SOURCE, ...}
    }

    NODE:   name, resource_type, package_name, version, fqn, description, tags (sorted),
            materialized, owners, group, depends_on (sorted unique ids),
            original_file_path, database, schema, alias, relation_name
    SOURCE: source_name, name, package_name, description, source_description, tags
            (sorted), owners, loader, original_file_path, database, schema, identifier,
            relation_name

Timestamps, invocation ids, absolute paths, macros, SQL and checksums are left out, so
refreshing an unchanged project writes byte-identical state; it changes only when the
project, the target or the dbt version does.

**Asset keys** are the ones dagster-dbt users know:

* a model, seed or snapshot is ``AssetKey((name,))``; a versioned model is
  ``name_v<version>``; when two dbt packages use the same name, both get
  ``(package_name, name)``;
* a source table is ``AssetKey((source_name, table_name))``, an upstream asset of its own;
* ephemeral models are not assets (nothing is materialised): a dependency through one is
  attached to its upstream assets instead. Dependencies on anything else (tests, macros,
  functions, disabled nodes) are dropped.

**Groups**: ``group_name`` is the node's dbt ``group`` when it has one, else its dbt package
name, i.e. the dbt project's name for the project's own nodes: one dbt project is one group,
and dbt groups, where a project declares them, win.

**Other fields**: description; tags ``{dbt_tag: ""}``; owners from ``meta.owner`` (a string
or a list, in ``config.meta`` or ``meta``; for sources also the source's ``meta``), else the
email of the owner of the node's dbt group; kinds ``dbt`` and the adapter type (sources
also ``source``); metadata ``dbt/unique_id``, ``dbt/resource_type``, ``dbt/materialization``
(not for sources), ``dbt/original_file_path`` and ``dbt/relation_name``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Self

import attrs
import yaml

from defstate.components import ComponentLoadContext, StateBackedComponent
from defstate.components.json_state import dump_json_state, load_json_state
from defstate.definitions import AssetKey, AssetSpec, Definitions
from defstate.errors import (
    AttributeValueError,
    ComponentStateError,
    ProjectError,
    TerminalRefreshError,
)

STATE_FORMAT: Final = "defstate.dbt/1"
"""The ``format`` of the state this module writes and reads."""

ASSET_RESOURCE_TYPES: Final = frozenset({"model", "seed", "snapshot"})
"""The dbt node types that become assets (besides sources)."""

PARSE_TIMEOUT_SECONDS: Final = 900.0
"""How long one ``dbt parse`` may take before the refresh fails (and may be retried)."""

# Runs dbt's own click entry point. `python -m dbt.cli.main` works too but makes runpy warn
# on every run, because `dbt.cli` imports `dbt.cli.main` before runpy executes it.
_DBT_ENTRY_POINT: Final = "from dbt.cli.main import cli; cli(prog_name='dbt')"

# How much of dbt's output an error message may carry: the error, not pages of log.
_MAX_ERROR_LINES: Final = 40


class DbtProjectError(ProjectError, ValueError):
    """The dbt project folder or its ``dbt_project.yml`` is missing or unusable."""


class DbtParseError(TerminalRefreshError):
    """``dbt parse`` failed; the message carries dbt's own error output.

    Terminal: a project that does not parse fails the same way on every retry.
    """


class DbtStateError(ComponentStateError):
    """Stored state is not a state file this module can read."""


def read_dbt_project_name(project_dir: Path) -> str:
    """The ``name:`` of ``project_dir/dbt_project.yml``."""
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
    return name


@attrs.define(kw_only=True)
class DbtProjectComponent(StateBackedComponent):
    """A dbt project's models, seeds, snapshots and sources as assets.

    Refreshing runs ``dbt parse`` (offline; the warehouse is never touched) and stores a
    trimmed manifest; see the module documentation for the state format and asset keys.
    """

    project_dir: str
    """The folder holding ``dbt_project.yml``; relative to the defstate project root."""
    profiles_dir: str | None = None
    """The folder holding ``profiles.yml``; default: ``project_dir`` when it has one, else
    where dbt looks by itself (``$DBT_PROFILES_DIR``, ``~/.dbt``)."""
    target: str | None = None
    """The profile target to parse with; ``None``: the profile's default target."""
    vars: dict[str, Any] = attrs.field(factory=dict)
    """dbt ``--vars``."""
    # read from dbt_project.yml when the attributes are checked, so the key needs no re-read
    _project_name: str | None = attrs.field(default=None, init=False, repr=False, eq=False)

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Validate the attributes and make ``project_dir`` and ``profiles_dir`` absolute."""
        component = super().from_attributes(attributes, context)
        project_dir = context.resolve_path(component.project_dir)
        try:
            project_name = read_dbt_project_name(project_dir)
        except DbtProjectError as exc:
            raise AttributeValueError(("project_dir",), str(exc)) from None
        profiles_dir = None
        if component.profiles_dir is not None:
            profiles_dir = context.resolve_path(component.profiles_dir)
            if not profiles_dir.is_dir():
                raise AttributeValueError(("profiles_dir",), f"{profiles_dir} is not a folder")
        elif (project_dir / "profiles.yml").is_file():
            profiles_dir = project_dir  # the documented default, even if DBT_PROFILES_DIR is set
        checked = attrs.evolve(
            component,
            project_dir=str(project_dir),
            profiles_dir=None if profiles_dir is None else str(profiles_dir),
        )
        checked._project_name = project_name
        return checked

    def get_defs_state_key(self) -> str:
        """``DbtProject[<dbt project name>]``."""
        name = self._project_name or read_dbt_project_name(Path(self.project_dir))
        return f"DbtProject[{name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        """Run ``dbt parse`` and write the trimmed manifest to the file ``state_path``."""
        manifest = run_dbt_parse(
            Path(self.project_dir),
            profiles_dir=None if self.profiles_dir is None else Path(self.profiles_dir),
            target=self.target,
            dbt_vars=self.vars,
        )
        state_path.write_bytes(dump_state(trim_manifest(manifest)))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """One asset spec per model, seed, snapshot and source table; none without state."""
        if state_path is None:
            return Definitions()
        return Definitions(assets=asset_specs_from_state(load_state(state_path)))


# --- running dbt -------------------------------------------------------------------------


def dbt_parse_command(
    project_dir: Path,
    work_dir: Path,
    *,
    profiles_dir: Path | None = None,
    target: str | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
) -> list[str]:
    """The ``dbt parse`` command line; everything dbt writes goes under ``work_dir``."""
    command = [
        sys.executable,
        "-c",
        _DBT_ENTRY_POINT,
        "parse",
        "--project-dir",
        str(project_dir),
        # dbt's own target/ and logs/ would dirty the project (and a stale
        # partial_parse.msgpack there could even be reused): keep all output in work_dir.
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
        "--log-level-file",
        "none",
        "--no-partial-parse",
        "--write-json",
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
    if profiles_dir is not None:
        command += ["--profiles-dir", str(profiles_dir)]
    if target is not None:
        command += ["--target", target]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars, sort_keys=True, default=str)]
    return command


def run_dbt_parse(
    project_dir: Path,
    *,
    profiles_dir: Path | None = None,
    target: str | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    timeout_seconds: float = PARSE_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Run ``dbt parse`` in a subprocess of this interpreter and return its manifest.

    A subprocess keeps dbt's global state, logging setup and import cost out of this
    process. Raises :class:`DbtParseError` with dbt's error output when parsing fails, and
    ``TimeoutError`` when it takes longer than ``timeout_seconds``.
    """
    env = dict(os.environ)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    with tempfile.TemporaryDirectory(prefix="defstate-dbt-") as tmp:
        work_dir = Path(tmp)
        command = dbt_parse_command(
            project_dir, work_dir, profiles_dir=profiles_dir, target=target, dbt_vars=dbt_vars
        )
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
                f"dbt parse of {project_dir} did not finish within {timeout_seconds:g} s"
            ) from None
        if completed.returncode != 0:
            summary = summarize_dbt_output(completed.stdout, completed.stderr)
            if "No module named 'dbt" in summary:
                summary += (
                    f"\n(dbt-core and an adapter must be installed for {sys.executable}: "
                    "pip install 'defstate[dbt]')"
                )
            failed = f"dbt parse of {project_dir} failed (exit code {completed.returncode})"
            raise DbtParseError(f"{failed}:\n{summary}")
        manifest_path = work_dir / "target" / "manifest.json"
        try:
            manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DbtParseError(
                f"dbt parse of {project_dir} succeeded but its manifest is unreadable: {exc}"
            ) from None
    return manifest


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
        info = _mapping(event.get("info"))
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


# --- the state: trimming the manifest ----------------------------------------------------


def trim_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The state for a ``manifest.json``: only what definitions need, nothing volatile."""
    metadata = _mapping(manifest.get("metadata"))
    group_owners = _group_owner_emails(_mapping(manifest.get("groups")))
    nodes = {
        unique_id: _trim_node(node, group_owners)
        for unique_id, node in _mapping(manifest.get("nodes")).items()
        if isinstance(node, Mapping) and node.get("resource_type") in ASSET_RESOURCE_TYPES
    }
    sources = {
        unique_id: _trim_source(source)
        for unique_id, source in _mapping(manifest.get("sources")).items()
        if isinstance(source, Mapping)
    }
    return {
        "format": STATE_FORMAT,
        "project_name": metadata.get("project_name"),
        "adapter_type": metadata.get("adapter_type"),
        "dbt_version": metadata.get("dbt_version"),
        "nodes": nodes,
        "sources": sources,
    }


def _trim_node(node: Mapping[str, Any], group_owners: Mapping[str, list[str]]) -> dict[str, Any]:
    config = _mapping(node.get("config"))
    group = node.get("group") or config.get("group")
    owners = _meta_owners(config.get("meta"), node.get("meta"))
    if not owners and isinstance(group, str):
        owners = group_owners.get(group, [])
    return {
        "name": node.get("name"),
        "resource_type": node.get("resource_type"),
        "package_name": node.get("package_name"),
        "version": node.get("version"),
        "fqn": list(node.get("fqn") or []),
        "description": node.get("description") or "",
        "tags": sorted(set(node.get("tags") or [])),
        "materialized": config.get("materialized"),
        "owners": owners,
        "group": group,
        "depends_on": sorted(set(_mapping(node.get("depends_on")).get("nodes") or [])),
        "original_file_path": node.get("original_file_path"),
        "database": node.get("database"),
        "schema": node.get("schema"),
        "alias": node.get("alias"),
        "relation_name": node.get("relation_name"),
    }


def _trim_source(source: Mapping[str, Any]) -> dict[str, Any]:
    config = _mapping(source.get("config"))
    return {
        "source_name": source.get("source_name"),
        "name": source.get("name"),
        "package_name": source.get("package_name"),
        "description": source.get("description") or "",
        "source_description": source.get("source_description") or "",
        "tags": sorted(set(source.get("tags") or [])),
        "owners": _meta_owners(config.get("meta"), source.get("meta"), source.get("source_meta")),
        "loader": source.get("loader") or "",
        "original_file_path": source.get("original_file_path"),
        "database": source.get("database"),
        "schema": source.get("schema"),
        "identifier": source.get("identifier"),
        "relation_name": source.get("relation_name"),
    }


def _meta_owners(*metas: Any) -> list[str]:
    """``owner`` from the first ``meta`` that sets it (a string or a list of strings)."""
    for meta in metas:
        owner = _mapping(meta).get("owner")
        candidates = [owner] if isinstance(owner, str) else owner
        if isinstance(candidates, list):
            owners = [o.strip() for o in candidates if isinstance(o, str) and o.strip()]
            if owners:
                return list(dict.fromkeys(owners))
    return []


def _group_owner_emails(groups: Mapping[str, Any]) -> dict[str, list[str]]:
    """dbt group name -> its owner's email (dbt groups declare ``owner: {email, name}``)."""
    result: dict[str, list[str]] = {}
    for value in groups.values():
        group = _mapping(value)
        name = group.get("name")
        email = _mapping(group.get("owner")).get("email")
        if isinstance(name, str) and isinstance(email, str) and email:
            result[name] = [email]
    return result


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


dump_state = dump_json_state


def load_state(state_path: Path) -> dict[str, Any]:
    """Read a state file written by this component, checking its format."""
    state = load_json_state(state_path, state_format=STATE_FORMAT, what="dbt", error=DbtStateError)
    if not isinstance(state.get("nodes"), dict) or not isinstance(state.get("sources"), dict):
        raise DbtStateError(f"dbt state {state_path} lacks 'nodes' or 'sources'")
    return state


# --- from state to asset specs -----------------------------------------------------------


def asset_specs_from_state(state: Mapping[str, Any]) -> list[AssetSpec]:
    """Asset specs for every asset node and source of a state, in unique id order."""
    nodes: Mapping[str, Mapping[str, Any]] = state["nodes"]
    sources: Mapping[str, Mapping[str, Any]] = state["sources"]
    keys = asset_keys_by_unique_id(nodes, sources)
    adapter = state.get("adapter_type")
    kinds = ["dbt", adapter] if isinstance(adapter, str) and adapter else ["dbt"]
    specs: list[AssetSpec] = []
    for unique_id in sorted(keys):
        if unique_id in nodes:
            deps = _upstream_keys(unique_id, nodes, keys)
            specs.append(_node_spec(unique_id, nodes[unique_id], keys[unique_id], deps, kinds))
        else:
            specs.append(_source_spec(unique_id, sources[unique_id], keys[unique_id], kinds))
    return specs


def asset_keys_by_unique_id(
    nodes: Mapping[str, Mapping[str, Any]], sources: Mapping[str, Mapping[str, Any]]
) -> dict[str, AssetKey]:
    """The asset key of every node that is an asset, and of every source table."""
    names = {uid: _node_asset_name(node) for uid, node in nodes.items() if _is_asset(node)}
    # dbt lets two packages define the same name; only those pay for a longer key.
    counts = Counter(names.values())
    keys = {
        uid: AssetKey((name,))
        if counts[name] == 1
        else AssetKey((str(nodes[uid]["package_name"]), name))
        for uid, name in names.items()
    }
    for uid, source in sources.items():
        keys[uid] = AssetKey((str(source["source_name"]), str(source["name"])))
    return keys


def _is_asset(node: Mapping[str, Any]) -> bool:
    # An ephemeral model is inlined into its children as a CTE: no table, no asset.
    return node.get("materialized") != "ephemeral"


def _node_asset_name(node: Mapping[str, Any]) -> str:
    version = node.get("version")
    return str(node["name"]) if version is None else f"{node['name']}_v{version}"


def _upstream_keys(
    unique_id: str, nodes: Mapping[str, Mapping[str, Any]], keys: Mapping[str, AssetKey]
) -> list[AssetKey]:
    """The assets ``unique_id`` reads, looking through ephemeral models."""
    found: set[AssetKey] = set()
    seen: set[str] = {unique_id}
    pending = list(nodes[unique_id].get("depends_on") or [])
    while pending:
        parent = pending.pop()
        if parent in seen:
            continue
        seen.add(parent)
        if parent in keys:
            found.add(keys[parent])
        elif parent in nodes:  # an ephemeral model: its own parents are the real inputs
            pending.extend(nodes[parent].get("depends_on") or [])
    return sorted(found)


def _node_spec(
    unique_id: str,
    node: Mapping[str, Any],
    key: AssetKey,
    deps: Sequence[AssetKey],
    kinds: Sequence[str],
) -> AssetSpec:
    metadata = {
        "dbt/unique_id": unique_id,
        "dbt/resource_type": node.get("resource_type"),
        "dbt/materialization": node.get("materialized"),
        "dbt/original_file_path": node.get("original_file_path"),
        "dbt/relation_name": node.get("relation_name"),
    }
    return AssetSpec(
        key=key,
        deps=deps,
        description=node.get("description") or None,
        group_name=node.get("group") or node.get("package_name"),
        kinds=kinds,
        tags=_tags(node.get("tags")),
        owners=node.get("owners") or (),
        metadata=_without_nulls(metadata),
    )


def _source_spec(
    unique_id: str, source: Mapping[str, Any], key: AssetKey, kinds: Sequence[str]
) -> AssetSpec:
    metadata = {
        "dbt/unique_id": unique_id,
        "dbt/resource_type": "source",
        "dbt/original_file_path": source.get("original_file_path"),
        "dbt/relation_name": source.get("relation_name"),
    }
    return AssetSpec(
        key=key,
        description=source.get("description") or source.get("source_description") or None,
        group_name=source.get("package_name"),
        kinds=[*kinds, "source"],
        tags=_tags(source.get("tags")),
        owners=source.get("owners") or (),
        metadata=_without_nulls(metadata),
    )


def _without_nulls(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if v is not None}


def _tags(tags: Iterable[str] | None) -> dict[str, str]:
    # dbt tags are labels without values; as asset tags they become keys with empty values.
    return {tag: "" for tag in tags or ()}
