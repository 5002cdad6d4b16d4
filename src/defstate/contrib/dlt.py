"""A dlt source's schema as state-backed assets: one asset per table.

:class:`DltSourceComponent` reads the schema of a `dlt <https://dlthub.com>`_ source — the
tables its resources declare, from ``discover_schema()`` (nothing runs, nothing is
loaded) — or the schema a pipeline stored after its runs, which also has the *nested*
tables dlt made from nested data (``orders__items``) and every inferred column. Building
definitions reads only the stored state, so loading a project never imports dlt (``import
dlt`` takes about a second) nor the source's module.

A ``defs.yaml`` entry::

    type: defstate.contrib.dlt.DltSourceComponent
    attributes:
      source: my_project.sources:shop_source   # module:attribute: a @dlt.source, a source
                                               # or a @dlt.resource (its own source)
      source_args: {start_date: "2024-01-01"}   # optional, passed to the source function
      # or, the schema a pipeline stored (after `pipeline.run(...)`):
      # pipeline_name: shop
      # pipelines_dir: .dlt/pipelines           # optional; relative to the project root
      # schema_name: shop                       # optional; default: the pipeline's default
      key_prefix: [dlt]
      group_name: ingestion
      include: ["orders*"]                      # optional table-name patterns (build time)
      exclude: ["*__tags"]
      include_nested: true

Install ``defstate[dlt]``. The source module is imported only when refreshing.

**State key**: ``DltSource[<source>]``, plus ``,args=<8 hex digits>`` (a hash of
``source_args``) when they are set; ``DltPipeline[<pipeline_name>]`` for a pipeline, plus
``,schema=<schema_name>`` when one is named: instances that store different schemas never
share a key, instances that only filter differently do. ``defs_state: {key: ...}`` overrides
it.

**State format**: one UTF-8 JSON file, keys sorted, two-space indent, trailing newline::

    {
      "format": "defstate.dlt/1",
      "schema": "shop", "version_hash": "...",      # the dlt schema's name and content hash
      "origin": "source" | "pipeline",
      "destination": "duckdb" | null,               # the pipeline's destination type
      "dataset": "shop_data" | null,
      "tables": [TABLE, ...]                        # sorted by name; dlt's own _dlt_* left out
    }

    TABLE: name, parent (null for a root table), resource (the root's resource),
           write_disposition (inherited by nested tables), description, table_format,
           columns [{name, data_type, nullable, primary_key, merge_key, description}]

**Assets**: key ``[*key_prefix, schema, table]``; a nested table depends on its parent table;
kinds ``{dlt, <destination>}``; metadata ``columns``, ``write_disposition``, ``resource``,
``parent`` (nested tables) and ``dlt_schema_version_hash``. Filters (``include``,
``exclude``, ``include_nested``) are applied when definitions are built, so instances sharing
a key may differ in them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import attrs

from defstate.components import ComponentLoadContext, StateBackedComponent
from defstate.components.attributes import check_key_parts
from defstate.components.json_state import dump_json_state, load_json_state
from defstate.contrib.name_patterns import selected, selected_tables_definitions
from defstate.definitions import AssetKey, AssetSpec, Definitions
from defstate.errors import (
    AttributeValueError,
    ComponentStateError,
    RefreshError,
    TerminalRefreshError,
)

if TYPE_CHECKING:
    from dlt.common.schema import Schema

STATE_FORMAT: Final = "defstate.dlt/1"
"""The ``format`` of the state this module writes and reads."""

# Column properties kept in the state (dlt's hints besides these are left out).
_COLUMN_FIELDS: Final = ("data_type", "nullable", "primary_key", "merge_key", "description")


class DltSourceError(TerminalRefreshError):
    """The source cannot be imported or called, or the pipeline does not exist."""


class DltSchemaError(RefreshError):
    """dlt failed while producing the schema."""


class DltStateError(ComponentStateError):
    """Stored state is not a state file this module can read."""


@attrs.define(kw_only=True)
class DltSourceComponent(StateBackedComponent):
    """One asset per table of a dlt source's schema (see the module documentation)."""

    source: str | None = None
    """``module:attribute`` of a dlt source (a ``@dlt.source`` function or a source)."""
    source_args: dict[str, Any] = attrs.field(factory=dict)
    """Keyword arguments for the source function."""
    pipeline_name: str | None = None
    """Read the schema this pipeline stored instead of discovering the source's."""
    pipelines_dir: str | None = None
    """Where dlt keeps the pipeline (default: dlt's); relative paths: project root."""
    schema_name: str | None = None
    """A pipeline's schema other than its default one."""
    key_prefix: list[str] = attrs.field(factory=list)
    """Key parts put before ``[schema, table]``."""
    group_name: str | None = None
    """The group of every asset."""
    include: list[str] | None = None
    """Only tables whose names match one of these patterns (``*``, ``?``)."""
    exclude: list[str] = attrs.field(factory=list)
    """Leave out tables whose names match one of these patterns."""
    include_nested: bool = True
    """Make assets of nested (child) tables too."""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Check that a source or a pipeline is named; resolve ``pipelines_dir``."""
        component = super().from_attributes(attributes, context)
        if component.source is None and component.pipeline_name is None:
            raise AttributeValueError(
                ("source",), "name a dlt source (source: module:attribute) or a pipeline_name"
            )
        if component.source is not None and not _is_import_path(component.source):
            raise AttributeValueError(
                ("source",), f"expected module:attribute (e.g. my_project.sources:shop), got "
                f"{component.source!r}"
            )  # fmt: skip
        if component.source_args and component.source is None:
            raise AttributeValueError(("source_args",), "source_args needs a source")
        check_key_parts(component.key_prefix)
        if component.pipelines_dir is not None:
            resolved = str(context.resolve_path(component.pipelines_dir))
            component = attrs.evolve(component, pipelines_dir=resolved)
        return component

    def get_defs_state_key(self) -> str:
        """``DltPipeline[<pipeline_name>]`` (``,schema=<name>`` for another schema than the
        default) or ``DltSource[<source>]`` (``,args=<hash>`` with ``source_args``): the
        attributes that decide which schema is stored, unlike the build-time filters."""
        if self.pipeline_name is not None:
            schema = f",schema={self.schema_name}" if self.schema_name else ""
            return f"DltPipeline[{self.pipeline_name}{schema}]"
        if not self.source_args:
            return f"DltSource[{self.source}]"
        import hashlib
        import json

        # a hash: arguments may be credentials, and need not be short
        text = json.dumps(self.source_args, sort_keys=True, default=str)
        return f"DltSource[{self.source},args={hashlib.sha256(text.encode()).hexdigest()[:8]}]"

    def write_state_to_path(self, state_path: Path) -> None:
        """Read the schema (discovered, or the pipeline's) and write it to ``state_path``."""
        try:
            import dlt
        except ImportError:
            raise DltSourceError("dlt is not installed (pip install 'defstate[dlt]')") from None
        if self.pipeline_name is not None:
            state = self._pipeline_state(dlt)
        else:
            schema = _discover(load_source(self.source or "", self.source_args))
            state = schema_state(schema, origin="source", destination=None, dataset=None)
        state_path.write_bytes(dump_json_state(state))

    def _pipeline_state(self, dlt: Any) -> dict[str, Any]:
        from dlt.common.exceptions import DltException

        try:
            pipeline = dlt.attach(
                pipeline_name=self.pipeline_name, pipelines_dir=self.pipelines_dir
            )
        except DltException as exc:
            where = f" in {self.pipelines_dir}" if self.pipelines_dir else ""
            raise DltSourceError(
                f"cannot attach to dlt pipeline {self.pipeline_name!r}{where}: {exc}"
            ) from None
        name = self.schema_name or pipeline.default_schema_name
        if name is None or name not in pipeline.schemas:
            known = ", ".join(sorted(pipeline.schema_names)) or "none (the pipeline never ran)"
            raise DltSourceError(
                f"dlt pipeline {self.pipeline_name!r} has no schema {name!r} (schemas: {known})"
            )
        destination = pipeline.destination
        return schema_state(
            pipeline.schemas[name],
            origin="pipeline",
            destination=destination.destination_name if destination is not None else None,
            dataset=pipeline.dataset_name,
        )

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """One asset per stored table that passes the filters; none without state."""
        return selected_tables_definitions(self, state_path, load_state, asset_specs_from_state)

    def selects(self, table: Mapping[str, Any]) -> bool:
        """Whether a stored table passes ``include``, ``exclude`` and ``include_nested``."""
        if table.get("parent") is not None and not self.include_nested:
            return False
        return selected([str(table["name"])], self.include, self.exclude)


def _is_import_path(value: str) -> bool:
    module, _, attribute = value.partition(":")
    names = [*module.split("."), *attribute.split(".")]
    return bool(module and attribute) and all(n.isidentifier() for n in names)


# --- refreshing (imports dlt) -------------------------------------------------------------


def load_source(path: str, arguments: Mapping[str, Any]) -> Any:
    """The ``DltSource`` named by ``module:attribute``: a source, a ``@dlt.source`` function
    (called with ``arguments``), or a resource (its own one-resource source)."""
    from dlt.extract import DltResource, DltSource

    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            target = getattr(target, name)
    except (ImportError, AttributeError) as exc:
        raise DltSourceError(f"cannot import dlt source {path!r}: {exc}") from None
    if isinstance(target, DltSource) and arguments:
        raise DltSourceError(f"{path!r} is a source, not a source function: no source_args")
    source = target
    if not isinstance(target, DltSource) and (arguments or not isinstance(target, DltResource)):
        if not callable(target):
            raise DltSourceError(f"{path!r} is {type(target).__name__}, not a dlt source")
        try:
            source = target(**arguments)
        except TypeError as exc:
            raise DltSourceError(f"cannot call dlt source {path!r}: {exc}") from None
    if isinstance(source, DltResource):
        from dlt.common.schema import Schema

        return DltSource.from_data(Schema(source.name), source.section or "", [source])
    if not isinstance(source, DltSource):
        raise DltSourceError(
            f"{path!r} returned {type(source).__name__}, not a dlt source (@dlt.source) or "
            "resource (@dlt.resource)"
        )
    return source


def _discover(source: Any) -> Schema:
    from dlt.common.exceptions import DltException

    try:
        schema: Schema = source.discover_schema()
    except DltException as exc:
        raise DltSchemaError(
            f"dlt could not discover the schema of {source.name!r}: {exc}"
        ) from None
    return schema


def schema_state(
    schema: Schema, *, origin: str, destination: str | None, dataset: str | None
) -> dict[str, Any]:
    """The normalised state of a dlt schema: its data tables, resolved and sorted."""
    from dlt.common.schema.utils import get_write_disposition

    tables = schema.data_tables(include_incomplete=True)
    by_name = {t["name"]: t for t in tables}
    records = []
    for table in tables:
        name = str(table["name"])
        root = table
        while root.get("parent") in by_name:
            root = by_name[root["parent"]]
        records.append(
            {
                "name": name,
                "parent": table.get("parent"),
                "resource": root.get("resource") or root["name"],
                "write_disposition": get_write_disposition(schema.tables, name),
                "description": table.get("description"),
                "table_format": table.get("table_format"),
                "columns": [
                    {"name": column_name, **{f: column.get(f) for f in _COLUMN_FIELDS}}
                    for column_name, column in table.get("columns", {}).items()
                ],
            }
        )
    return {
        "format": STATE_FORMAT,
        "schema": schema.name,
        "version_hash": schema.version_hash,
        "origin": origin,
        "destination": destination,
        "dataset": dataset,
        "tables": sorted(records, key=lambda t: t["name"]),
    }


# --- the state ----------------------------------------------------------------------------


def load_state(state_path: Path) -> dict[str, Any]:
    """Read a state file written by this component, checking its format."""
    return load_json_state(
        state_path, state_format=STATE_FORMAT, what="dlt schema", error=DltStateError
    )


def asset_specs_from_state(
    state: Mapping[str, Any], *, key_prefix: Sequence[str] = (), group_name: str | None = None
) -> list[AssetSpec]:
    """The asset specs for a state document (see the module documentation)."""
    schema = str(state["schema"])
    kinds = ["dlt", *([state["destination"]] if state.get("destination") else [])]
    specs = []
    for table in state["tables"]:
        parent = table.get("parent")
        metadata: dict[str, Any] = {
            "columns": [{k: v for k, v in c.items() if v is not None} for c in table["columns"]],
            "write_disposition": table["write_disposition"],
            "resource": table["resource"],
            "dlt_schema_version_hash": state["version_hash"],
        }
        if parent is not None:
            metadata["parent"] = parent
        specs.append(
            AssetSpec(
                key=AssetKey((*key_prefix, schema, table["name"])),
                deps=[AssetKey((*key_prefix, schema, parent))] if parent is not None else [],
                description=table.get("description"),
                group_name=group_name,
                kinds=kinds,
                metadata=metadata,
            )
        )
    return specs
