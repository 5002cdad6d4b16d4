"""dagster-dbt's default translator, over stored dbt state (no dagster, no dbt).

Each function takes a node (a model, seed, snapshot, test or source, with the field names of
dbt's ``manifest.json``) and returns what dagster-dbt's ``DagsterDbtTranslator`` returns for
it, so a project moved from dagster-dbt keeps its asset keys, groups, owners, tags,
descriptions, code versions, metadata and checks. ``tests/test_contrib_dbt_fidelity.py``
compares the result with dagster-dbt's own output, stored in
``tests/dbt_projects/fidelity_dagster_dbt.json``.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Final

from defstate.definitions import (
    COLUMN_SCHEMA_METADATA_KEY,
    TABLE_NAME_METADATA_KEY,
    AssetKey,
)

Node = Mapping[str, Any]

ASSET_RESOURCE_TYPES: Final = frozenset({"model", "seed", "snapshot"})
"""The dbt node types that become assets (besides sources)."""

UNIQUE_ID_METADATA_KEY: Final = "dagster_dbt/unique_id"
MATERIALIZATION_METADATA_KEY: Final = "dagster-dbt/materialization_type"
PROJECT_ID_METADATA_KEY: Final = "dagster_dbt/project_id"
STORAGE_KIND_METADATA_KEY: Final = "dagster/storage_kind"

# Dagster's rules (dagster._utils.tags): a key is an optional `namespace/` and a name, each
# 1-63 of [A-Za-z0-9_.-]; a value is 0-63 of the same characters.
_TAG_KEY: Final = re.compile(r"^([A-Za-z0-9_.-]{1,63}/|dagster/kind/)?[A-Za-z0-9_.-]{1,63}$")
_TAG_VALUE: Final = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NON_ASSET_TYPES: Final = frozenset({"metric", "semantic_model", "saved_query", "function"})


_EMPTY: Final[Mapping[str, Any]] = {}


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (state is JSON: nearly always a dict)."""
    if type(value) is dict or isinstance(value, Mapping):
        return value
    return _EMPTY


def dagster_meta(node: Node, *, config_first: bool) -> Mapping[str, Any]:
    """``meta.dagster`` of a node. dagster-dbt reads ``config.meta`` first for keys only."""
    meta = mapping(node.get("meta"))
    if config_first:
        meta = mapping(mapping(node.get("config")).get("meta")) or meta
    return mapping(meta.get("dagster"))


def is_asset_node(node: Node) -> bool:
    """Models (except ephemeral ones), seeds and snapshots."""
    resource_type = node.get("resource_type")
    if resource_type not in ASSET_RESOURCE_TYPES:
        return False
    return not (resource_type == "model" and _materialized(node) == "ephemeral")


def is_non_asset_node(node: Node) -> bool:
    """Nodes the graph passes through: ephemeral models, metrics, functions..."""
    resource_type = node.get("resource_type")
    if resource_type in _NON_ASSET_TYPES:
        return True
    return resource_type == "model" and _materialized(node) == "ephemeral"


def _materialized(node: Node) -> Any:
    return mapping(node.get("config")).get("materialized")


def default_asset_key(node: Node) -> AssetKey:
    """``meta.dagster.asset_key``; else ``[source, table]`` for sources, ``[alias]`` for
    versioned models, ``[config.schema, name]`` when the schema is configured, else ``[name]``."""
    configured = dagster_meta(node, config_first=True).get("asset_key")
    if configured:
        return AssetKey.from_user(configured)
    if node.get("resource_type") == "source":
        return AssetKey((str(node["source_name"]), str(node["name"])))
    if node.get("version"):
        return AssetKey((str(node["alias"]),))
    schema = mapping(node.get("config")).get("schema")
    if schema is not None:
        return AssetKey((str(schema), str(node["name"])))
    return AssetKey((str(node["name"]),))


def default_group_name(node: Node) -> str | None:
    """``meta.dagster.group``, else the node's dbt group, else none."""
    group = dagster_meta(node, config_first=False).get("group")
    if group:
        return str(group)
    dbt_group = mapping(node.get("config")).get("group")
    return str(dbt_group) if dbt_group else None


def default_owners(node: Node) -> list[str]:
    """``meta.dagster.owners``, else the email of the owner of the node's dbt group.

    ``node["group"]`` is the group's definition here (``{name, owner: {email}}``), as
    dagster-dbt passes it.
    """
    configured = dagster_meta(node, config_first=False).get("owners")
    if configured:
        return [str(o) for o in configured] if isinstance(configured, list) else [str(configured)]
    email = mapping(mapping(node.get("group")).get("owner")).get("email")
    if not email:
        return []
    return [email] if isinstance(email, str) else [str(e) for e in email]


def default_tags(node: Node) -> dict[str, str]:
    """dbt tags as keys with empty values."""
    return {str(tag): "" for tag in node.get("tags") or ()}


def default_description(node: Node) -> str:
    """The description (or ``dbt <type> <name>``) followed by the raw SQL, as dagster-dbt."""
    code = textwrap.indent(node.get("raw_sql") or node.get("raw_code") or "", "    ")
    sections = [
        node.get("description") or f"dbt {node['resource_type']} {node['name']}",
        f"#### Raw SQL:\n```sql\n{code}\n```",
    ]
    return "\n\n".join(filter(None, sections))


def default_code_version(node: Node) -> str | None:
    """The sha1 of the raw code, else dbt's checksum of the file (seeds)."""
    code = node.get("raw_sql") or node.get("raw_code")
    if code:
        return hashlib.sha1(code.encode("utf-8")).hexdigest()
    checksum = mapping(node.get("checksum")).get("checksum")
    return str(checksum) if checksum else None


def default_metadata(node: Node) -> dict[str, Any]:
    """Materialization, column schema (``dagster/column_schema``) and relation name."""
    metadata: dict[str, Any] = {}
    materialized = _materialized(node)
    if materialized is not None:
        metadata[MATERIALIZATION_METADATA_KEY] = materialized
    columns = mapping(node.get("columns"))
    if columns:
        metadata[COLUMN_SCHEMA_METADATA_KEY] = {
            "columns": [
                {
                    "name": name,
                    "type": mapping(column).get("data_type") or "?",
                    "description": mapping(column).get("description"),
                    "tags": {str(t): "" for t in mapping(column).get("tags") or ()},
                }
                for name, column in columns.items()
            ]
        }
    table_name = relation_name(node)
    if table_name is not None:
        metadata[TABLE_NAME_METADATA_KEY] = table_name
    return metadata


def relation_parts(node: Node) -> tuple[str, ...]:
    """``(database, schema, alias)``, or ``(database, schema, table)`` of a source."""
    last = node.get("identifier") if node.get("resource_type") == "source" else None
    parts = [node.get("database"), node.get("schema"), node.get("alias")]
    if node.get("resource_type") == "source":
        parts = [node.get("database"), node.get("schema"), last or node.get("name")]
    return tuple(str(p) for p in parts if p)


def relation_name(node: Node) -> str | None:
    """``database.schema.alias`` (dagster-dbt's table name; a source adds its table name)."""
    parts = [node.get("database"), node.get("schema"), node.get("alias")]
    if node.get("resource_type") == "source":
        parts.append(node.get("name"))
    text = ".".join(str(p) for p in parts if p)
    return text or None


def upstream_unique_ids(node: Node, nodes: Mapping[str, Node]) -> set[str]:
    """The assets and sources ``node`` reads, looking through ephemeral and other non-asset
    nodes; dependencies on anything else (macros, disabled nodes) are dropped."""
    found: set[str] = set()
    for parent in _depends_on(node):
        parent_node = nodes.get(parent)
        if parent_node is None:
            continue
        if not is_non_asset_node(parent_node):
            if _is_valid_upstream(parent_node):
                found.add(parent)
            continue
        seen: set[str] = set()
        pending = list(_depends_on(parent_node))
        while pending:
            candidate = pending.pop()
            if candidate in seen:
                continue
            seen.add(candidate)
            candidate_node = nodes.get(candidate)
            if candidate_node is None:
                continue
            if is_non_asset_node(candidate_node):
                pending.extend(_depends_on(candidate_node))
            elif _is_valid_upstream(candidate_node):
                found.add(candidate)
    return found


def _is_valid_upstream(node: Node) -> bool:
    return node.get("resource_type") in ASSET_RESOURCE_TYPES or node.get("resource_type") == (
        "source"
    )


def _depends_on(node: Node) -> Sequence[str]:
    return mapping(node.get("depends_on")).get("nodes") or ()


def attached_node(test: Node, nodes: Mapping[str, Node], project_name: str) -> str | None:
    """The node a test checks: a generic test's ``attached_node``, a singular test's only
    parent, or the model named by ``meta.dagster.ref`` (as dagster-dbt decides)."""
    parents = set(_depends_on(test))
    attached = test.get("attached_node")
    if len(parents) == 1:
        (attached,) = parents
    ref = mapping(dagster_meta(test, config_first=True).get("ref"))
    if ref:
        wanted = (ref.get("name"), ref.get("package") or project_name, ref.get("version"))
        attached = next(
            (
                uid
                for uid, node in nodes.items()
                if (node.get("name"), node.get("package_name"), node.get("version")) == wanted
            ),
            None,
        )
    return attached if isinstance(attached, str) and attached else None


def test_blocking(test: Node) -> bool:
    """A test of severity ``error`` (dbt's default) blocks; ``warn`` does not."""
    severity = mapping(test.get("config")).get("severity") or "error"
    return str(severity).lower() == "error"


def test_description(test: Node) -> str | None:
    description = mapping(test.get("meta")).get("description")
    return str(description) if description is not None else None


def invalid_tags(tags: Mapping[str, str]) -> list[str]:
    """The ``key=value`` pairs of ``tags`` Dagster rejects."""
    return [
        f"{k}={v}" if v else k
        for k, v in tags.items()
        if not _TAG_KEY.match(k) or not _TAG_VALUE.match(v)
    ]


def valid_owner(owner: str) -> bool:
    """Dagster accepts an email address or ``team:<name>``."""
    return bool(_EMAIL.match(owner)) or (owner.startswith("team:") and len(owner) > 5)
