"""dbt projects as state-backed components, at dagster-dbt fidelity.

:class:`DbtProjectComponent` turns a dbt project into asset specs and asset checks. Its
*state* is the whole project as a trimmed, normalised ``manifest.json`` from a real
``dbt parse``; building definitions reads only that file, so a load never imports or runs
dbt, and never reads the dbt project (a deployed image needs only the state). Importing
this package is cheap: dbt runs in a subprocess, and only during a refresh.

A ``defs.yaml`` entry::

    type: defstate.contrib.dbt.DbtProjectComponent
    attributes:
      project_dir: dbt_project     # relative to the project root, or absolute
      profiles_dir: dbt_project    # optional: project_dir when it has a profiles.yml
      target: dev                  # optional: the profile's default target otherwise
      vars: {start_date: "2024-01-01"}
      select: "tag:nightly"        # dbt syntax; default fqn:* (everything)
      exclude: "stg_legacy"
      selector: ""                 # a selector of selectors.yml
      key_prefix: [warehouse]
      translation:                 # templates over node fields (see translation.py)
        group_name: "{{ node.fqn[1] }}"
      include_all_sources: false   # true: every selected source, referenced or not
      source_tests_as_checks: false
      asset_checks: true

**What it makes** (see :mod:`defstate.contrib.dbt.translator`): what dagster-dbt's default
translator makes. Models (not ephemeral), seeds and snapshots are assets keyed ``[name]``,
``[config.schema, name]`` when the schema is configured, ``[alias]`` for versioned models,
or ``meta.dagster.asset_key``; sources are ``[source, table]`` assets, only where a selected
asset reads them; group ``meta.dagster.group`` or the dbt group; owners
``meta.dagster.owners`` or the dbt group owner's email; dbt tags as tag keys; kinds ``dbt``
and the adapter; the description followed by the raw SQL; ``code_version`` the sha1 of the
raw code; metadata ``dagster/column_schema``, ``dagster/table_name``,
``dagster-dbt/materialization_type``, ``dagster/storage_kind``, ``dagster_dbt/unique_id``.
dbt tests become asset checks of the node they test (blocking unless ``severity: warn``).

Beyond dagster-dbt: a source whose relation a seed or model of the project builds resolves
to that node; when two packages give nodes one key, the root project's node keeps it and the
package's node is keyed ``[package, ...]`` (dagster-dbt fails instead); tags and owners that
Dagster rejects are dropped with a :class:`DbtTranslationWarning` naming the node.

**Customising**: ``key_prefix``, ``translation:``, or a subclass overriding the hooks
:meth:`DbtProjectComponent.get_asset_key`, ``get_group_name``, ``get_owners``, ``get_tags``,
``get_description``, ``get_metadata`` and ``get_code_version`` (each takes the node).

**State key**: ``DbtProject[<project folder name>]``, plus ``,target=<t>`` and
``,vars=<hash>`` when set, so instances with different targets or vars never share state;
``defs_state: {key: ...}`` overrides it. Instances that differ only in selection or
translation share a key, so one refresh (one ``dbt parse``) serves them all.

**Refreshing** runs ``dbt deps`` when ``packages.yml``/``dependencies.yml`` asks for packages
that are not installed, then ``dbt parse`` with partial parsing, its cache kept in
``$DEFSTATE_CACHE_DIR/dbt/`` (never the project's ``target/``). A parse error, or a ref
cycle (``Found a cycle: ...``), fails the refresh and the previous state stays.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import attrs

from defstate.components import ComponentLoadContext, StateBackedComponent
from defstate.components.attributes import check_key_parts
from defstate.components.json_state import dump_json_state, load_json_state
from defstate.contrib.dbt import translator
from defstate.contrib.dbt.parse import (
    PARSE_TIMEOUT_SECONDS,
    STATE_FORMAT,
    DbtParseError,
    DbtProjectError,
    dbt_parse_command,
    parse_cache_dir,
    read_dbt_project,
    run_dbt_parse,
    summarize_dbt_output,
    trim_manifest,
)
from defstate.contrib.dbt.selection import DbtGraph, DbtSelectionError, select_unique_ids
from defstate.contrib.dbt.translation import (
    CompiledTranslation,
    DbtTranslation,
    TranslationTemplateError,
)
from defstate.definitions import AssetCheckSpec, AssetKey, AssetSpec, Definitions
from defstate.errors import AttributeValueError, ComponentStateError, ProjectError

__all__ = [
    "PARSE_TIMEOUT_SECONDS",
    "STATE_FORMAT",
    "DbtParseError",
    "DbtProjectComponent",
    "DbtProjectError",
    "DbtSelectionError",
    "DbtStateError",
    "DbtTranslation",
    "DbtTranslationError",
    "DbtTranslationWarning",
    "dbt_parse_command",
    "load_state",
    "summarize_dbt_output",
    "trim_manifest",
]

Node = Mapping[str, Any]


class DbtStateError(ComponentStateError):
    """Stored state is not a state file this package can read."""


class DbtTranslationError(ProjectError, ValueError):
    """Two dbt nodes of one package get the same asset key."""


class DbtTranslationWarning(UserWarning):
    """A tag or owner Dagster would reject was dropped; the message names the node."""


@attrs.define(kw_only=True)
class DbtProjectComponent(StateBackedComponent):
    """A dbt project's models, seeds, snapshots, sources and tests as assets and checks.

    See the package documentation for attributes, keys and the state format.
    """

    project_dir: str
    """The folder holding ``dbt_project.yml``; relative to the defstate project root."""
    profiles_dir: str | None = None
    """The folder holding ``profiles.yml``; default: ``project_dir`` when it has one, else
    where dbt looks by itself (``$DBT_PROFILES_DIR``, ``~/.dbt``)."""
    target: str | None = None
    """The profile target to parse with; ``None``: the profile's default target."""
    vars: dict[str, Any] = attrs.field(factory=dict)
    """dbt ``--vars`` (JSON; values JSON cannot express, like YAML dates, as their text)."""
    select: str = "fqn:*"
    """dbt ``--select`` syntax, applied when definitions are built."""
    exclude: str = ""
    """dbt ``--exclude`` syntax."""
    selector: str = ""
    """A selector of the project's ``selectors.yml`` (replaces ``select``)."""
    key_prefix: str | list[str] = attrs.field(factory=list)
    """Prepended to every asset key the project makes (``a/b`` text or a list of parts)."""
    translation: DbtTranslation | None = None
    """Templates for key, group, owners, tags... (see :mod:`.translation`)."""
    include_all_sources: bool = False
    """Also make assets of selected sources no selected asset reads."""
    source_tests_as_checks: bool = False
    """Make tests of sources asset checks (dagster-dbt's ``enable_source_tests_as_checks``)."""
    asset_checks: bool = True
    """Make dbt tests asset checks (dagster-dbt's ``enable_asset_checks``)."""
    _compiled: CompiledTranslation | None = attrs.field(
        default=None, init=False, repr=False, eq=False
    )

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Validate the attributes and make the paths absolute. Nothing reads the dbt project
        here: a deployment loads from state alone."""
        component = super().from_attributes(attributes, context)
        project_dir = context.resolve_path(component.project_dir)
        profiles_dir = None
        if component.profiles_dir is not None:
            profiles_dir = str(context.resolve_path(component.profiles_dir))
        prefix = component.key_prefix
        if isinstance(prefix, list):
            check_key_parts(prefix)
        elif any(not part for part in prefix.split("/")):
            raise AttributeValueError(("key_prefix",), f"empty key part in {prefix!r}")
        checked = attrs.evolve(component, project_dir=str(project_dir), profiles_dir=profiles_dir)
        try:
            checked._compiled = checked.translation.compile() if checked.translation else None
        except TranslationTemplateError as exc:
            raise AttributeValueError(("translation",), str(exc)) from None
        return checked

    def get_defs_state_key(self) -> str:
        """``DbtProject[<folder>]``, with ``,target=`` and ``,vars=`` when they are set."""
        name = Path(self.project_dir).resolve().name or "dbt"
        if self.target:
            name += f",target={self.target}"
        if self.vars:
            text = json.dumps(self.vars, sort_keys=True, default=str)
            name += f",vars={hashlib.sha256(text.encode()).hexdigest()[:8]}"
        return f"DbtProject[{name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        """``dbt deps`` if needed, ``dbt parse``, and the trimmed manifest to ``state_path``."""
        from defstate.state_storage.cache import default_cache_dir

        project_dir = Path(self.project_dir)
        read_dbt_project(project_dir)  # a clear error for a folder that is no dbt project
        profiles_dir = self._profiles_dir()
        options: dict[str, Any] = {
            "profiles_dir": profiles_dir,
            "target": self.target,
            "dbt_vars": self.vars,
        }
        cache = parse_cache_dir(default_cache_dir(), project_dir, **options)
        manifest = run_dbt_parse(project_dir, cache, **options)
        state_path.write_bytes(dump_json_state(trim_manifest(manifest)))

    def _profiles_dir(self) -> Path | None:
        if self.profiles_dir is not None:
            path = Path(self.profiles_dir)
            if not path.is_dir():
                raise DbtProjectError(f"profiles_dir {path} is not a folder")
            return path
        project_dir = Path(self.project_dir)
        # the documented default, even if DBT_PROFILES_DIR is set
        return project_dir if (project_dir / "profiles.yml").is_file() else None

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """The selected assets and checks; none without state."""
        if state_path is None:
            return Definitions()
        return DbtDefinitionsBuilder(self, load_state(state_path)).build()

    # --- hooks: override in a subclass (each gets the dbt node, manifest field names) ----

    def get_asset_key(self, node: Node) -> AssetKey:
        """The asset key of a model, seed, snapshot or source (before ``key_prefix``)."""
        return translator.default_asset_key(node)

    def get_group_name(self, node: Node) -> str | None:
        return translator.default_group_name(node)

    def get_owners(self, node: Node) -> Sequence[str]:
        """``node["group"]`` is the dbt group's definition here, when the node has one."""
        return translator.default_owners(node)

    def get_tags(self, node: Node) -> Mapping[str, str]:
        return translator.default_tags(node)

    def get_description(self, node: Node) -> str | None:
        return translator.default_description(node)

    def get_metadata(self, node: Node) -> Mapping[str, Any]:
        return translator.default_metadata(node)

    def get_code_version(self, node: Node) -> str | None:
        return translator.default_code_version(node)


def load_state(state_path: Path) -> dict[str, Any]:
    """Read a state file written by this package, checking its format."""
    stat = state_path.stat()
    return _load_state(str(state_path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load_state(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    # Instances sharing a key read one state file: parse it once per load.
    state = load_json_state(Path(path), state_format=STATE_FORMAT, what="dbt", error=DbtStateError)
    if not isinstance(state.get("nodes"), dict) or not isinstance(state.get("sources"), dict):
        raise DbtStateError(f"dbt state {path} lacks 'nodes' or 'sources'")
    for node in (*state["nodes"].values(), *state["sources"].values()):
        columns = node.get("columns")
        if isinstance(columns, list):  # stored as a list to keep their order
            node["columns"] = {c["name"]: c for c in columns}
    return state


# --- from state to definitions -------------------------------------------------------------


class DbtDefinitionsBuilder:
    """One instance's definitions from one state: selection, keys, specs and checks."""

    def __init__(self, component: DbtProjectComponent, state: Mapping[str, Any]) -> None:
        self.component = component
        self.nodes: Mapping[str, Node] = state["nodes"]
        self.sources: Mapping[str, Node] = state["sources"]
        self.all: dict[str, Node] = {**self.nodes, **self.sources}
        self.project_name = str(state.get("project_name") or "")
        self.groups: Mapping[str, Any] = translator.mapping(state.get("groups"))
        self.graph = DbtGraph(self.all, self.project_name)
        self.selected = select_unique_ids(
            self.graph,
            select=component.select,
            exclude=component.exclude,
            selector=component.selector,
            selectors=translator.mapping(state.get("selectors")),
        )
        adapter = state.get("adapter_type")
        self.kinds = sorted({"dbt", adapter if isinstance(adapter, str) and adapter else "dbt"})
        self.fixed_metadata: dict[str, Any] = {}
        if adapter:
            self.fixed_metadata[translator.STORAGE_KIND_METADATA_KEY] = adapter
        if state.get("project_id"):
            self.fixed_metadata[translator.PROJECT_ID_METADATA_KEY] = state["project_id"]
        prefix = component.key_prefix
        self.prefix = tuple(prefix.split("/") if isinstance(prefix, str) else prefix)
        self.translation = component._compiled
        self.built_by = self._relations_built()
        self.keys = self._asset_keys()
        self.specs: dict[str, AssetSpec] = {}

    def build(self) -> Definitions:
        asset_ids = sorted(u for u in self.selected if u in self.nodes and self._is_asset(u))
        referenced: set[str] = set()
        for uid in asset_ids:
            upstream = {
                self._resolve(u) for u in translator.upstream_unique_ids(self.nodes[uid], self.all)
            }
            referenced |= {u for u in upstream if u in self.sources}
            self.specs[uid] = self._spec(uid, sorted({self.keys[u] for u in upstream}))
        source_ids = set(referenced)
        if self.component.include_all_sources:
            source_ids |= {u for u in self.selected if u in self.sources and u not in self.built_by}
        for uid in sorted(source_ids):
            self.specs[uid] = self._spec(uid, [])
        checks = self._checks(asset_ids, sorted(source_ids))
        ordered = sorted(self.specs.values(), key=lambda s: s.key.path)
        return Definitions(assets=ordered, asset_checks=checks)

    def _is_asset(self, uid: str) -> bool:
        return translator.is_asset_node(self.nodes[uid])

    def _relations_built(self) -> dict[str, str]:
        """source unique id -> the asset node that builds the same relation."""
        by_relation = {
            tuple(p.lower() for p in translator.relation_parts(node)): uid
            for uid, node in self.nodes.items()
            if translator.is_asset_node(node)
        }
        built: dict[str, str] = {}
        for uid, source in self.sources.items():
            relation = tuple(p.lower() for p in translator.relation_parts(source))
            if relation in by_relation:
                built[uid] = by_relation[relation]
        return built

    def _resolve(self, uid: str) -> str:
        return self.built_by.get(uid, uid)

    # --- keys ------------------------------------------------------------------------------

    def _asset_keys(self) -> dict[str, AssetKey]:
        """Every asset node's and source's final key (hook, translation, package, prefix)."""
        base = {
            uid: self._translated_key(node)
            for uid, node in self.all.items()
            if uid in self.sources or translator.is_asset_node(node)
        }
        counts = Counter(k for uid, k in base.items() if uid not in self.built_by)
        for uid, key in list(base.items()):
            package = str(self.all[uid].get("package_name") or "")
            if counts[key] > 1 and package != self.project_name and uid not in self.built_by:
                base[uid] = AssetKey((package, *key.path))
        self._check_unique(base)
        if not self.prefix:
            return base
        return {uid: AssetKey((*self.prefix, *key.path)) for uid, key in base.items()}

    def _translated_key(self, node: Node) -> AssetKey:
        key = self.component.get_asset_key(node)
        if self.translation is not None:
            parts = self.translation.key_parts({"node": node, "spec": {"key": key.to_string()}})
            if parts:
                key = AssetKey(tuple(parts))
        return key

    def _check_unique(self, keys: Mapping[str, AssetKey]) -> None:
        owners: dict[AssetKey, str] = {}
        for uid in sorted(keys):
            if uid in self.built_by:
                continue
            first = owners.setdefault(keys[uid], uid)
            if first != uid:
                raise DbtTranslationError(
                    f"dbt nodes {first} and {uid} both have the asset key {keys[uid]}: give "
                    "one of them meta.dagster.asset_key, or change the translation"
                )

    # --- specs -----------------------------------------------------------------------------

    def _spec(self, uid: str, deps: Sequence[AssetKey]) -> AssetSpec:
        node = self.all[uid]
        component = self.component
        group = self.groups.get(str(node.get("group") or ""))
        owners_node = {**node, "group": group} if group else node
        spec: dict[str, Any] = {
            "key": self.keys[uid].to_string(),
            "group_name": component.get_group_name(node),
            "owners": list(component.get_owners(owners_node) or ()),
            "tags": dict(component.get_tags(node)),
            "kinds": list(self.kinds),
            "description": component.get_description(node),
            "code_version": component.get_code_version(node),
            "metadata": {
                **component.get_metadata(node),
                **self.fixed_metadata,
                translator.UNIQUE_ID_METADATA_KEY: uid,
            },
        }
        if self.translation is not None:
            self._apply_translation(node, spec)
        return AssetSpec(
            key=self.keys[uid],
            deps=deps,
            description=spec["description"],
            group_name=spec["group_name"],
            kinds=spec["kinds"],
            tags=_valid_tags(node, spec["tags"]),
            owners=_valid_owners(node, spec["owners"]),
            metadata=spec["metadata"],
            code_version=spec["code_version"],
        )

    def _apply_translation(self, node: Node, spec: dict[str, Any]) -> None:
        translation = self.translation
        assert translation is not None
        scope = {"node": node, "spec": spec}
        if translation.group_name is not None:
            spec["group_name"] = translation.optional(translation.group_name, scope)
        if translation.owners is not None:
            spec["owners"] = [o for o in (t.render(scope) for t in translation.owners) if o]
        if translation.tags is not None:
            rendered = {k.render(scope): v.render(scope) for k, v in translation.tags}
            spec["tags"] = {**spec["tags"], **{k: v for k, v in rendered.items() if k}}
        if translation.kinds is not None:
            spec["kinds"] = [k for k in (t.render(scope) for t in translation.kinds) if k]
        if translation.description is not None:
            spec["description"] = translation.optional(translation.description, scope)
        if translation.code_version is not None:
            spec["code_version"] = translation.optional(translation.code_version, scope)
        if translation.metadata is not None:
            spec["metadata"] = {
                **spec["metadata"],
                **{k: t.render(scope) for k, t in translation.metadata},
            }

    # --- checks ----------------------------------------------------------------------------

    def _checks(self, asset_ids: Sequence[str], source_ids: Sequence[str]) -> list[AssetCheckSpec]:
        if not self.component.asset_checks:
            return []
        checks: dict[tuple[AssetKey, str], AssetCheckSpec] = {}
        targets = [(uid, True) for uid in asset_ids]
        if self.component.source_tests_as_checks:
            targets += [(uid, False) for uid in source_ids]
        for uid, needs_selection in targets:
            for child in sorted(self.graph.children.get(uid, ())):
                if not child.startswith("test.") or (
                    needs_selection and child not in self.selected
                ):
                    continue
                check = self._check(child, uid)
                if check is not None:
                    checks.setdefault((check.asset, check.name), check)
        return list(checks.values())

    def _check(self, test_id: str, uid: str) -> AssetCheckSpec | None:
        test = self.nodes[test_id]
        if translator.attached_node(test, self.nodes, self.project_name) != uid:
            return None
        asset = self.keys[uid]
        parents = translator.mapping(test.get("depends_on")).get("nodes") or ()
        additional = {self.keys[self._resolve(p)] for p in parents if self._resolve(p) in self.keys}
        additional.discard(asset)
        return AssetCheckSpec(
            name=str(test["name"]),
            asset=asset,
            description=translator.test_description(test),
            blocking=translator.test_blocking(test),
            additional_deps=sorted(additional),
            metadata={translator.UNIQUE_ID_METADATA_KEY: test_id},
        )


def _valid_tags(node: Node, tags: Mapping[str, str]) -> dict[str, str]:
    invalid = translator.invalid_tags(tags)
    if not invalid:
        return dict(tags)
    _warn(
        node,
        f"dropped tag(s) Dagster rejects: {', '.join(invalid)} (keys and values may use "
        "letters, digits, '_', '-', '.', at most 63 characters)",
    )
    bad = set(invalid)
    return {k: v for k, v in tags.items() if (f"{k}={v}" if v else k) not in bad}


def _valid_owners(node: Node, owners: Sequence[str]) -> list[str]:
    valid = [o for o in owners if translator.valid_owner(o)]
    if len(valid) != len(owners):
        dropped = ", ".join(o for o in owners if o not in valid)
        _warn(
            node,
            f"dropped owner(s) Dagster rejects: {dropped} (an owner is an email address or "
            "team:<name>)",
        )
    return valid


def _warn(node: Node, problem: str) -> None:
    # Attributed to the node's file in the dbt project (no line: none is stored), not to
    # this module's source line, which would mean nothing to the project's owner.
    warnings.warn_explicit(
        DbtTranslationWarning(f"dbt node {node.get('unique_id')}: {problem}"),
        DbtTranslationWarning,
        filename=str(node.get("original_file_path") or "dbt project"),
        lineno=0,
    )
