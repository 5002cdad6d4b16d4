"""A database's tables and views as state-backed assets.

:class:`DatabaseTablesComponent` introspects a real database — the shape of an ingestion
tool's "connection tables" — and makes one asset per table or view. Refreshing opens the
database **read-only** and stores a normalised description of it; building definitions reads
only that file, so loading a project never opens the database (nor imports its driver).

A ``defs.yaml`` entry::

    type: defstate.contrib.sql.DatabaseTablesComponent
    attributes:
      url: sqlite:///data/warehouse.db     # relative to the project root
      schemas: [main]                      # optional filter (at build time); default: all
      include_views: true
      exclude: ["*_tmp", "raw.audit_*"]    # optional name patterns (also include: [...])
      group_name: warehouse
      key_prefix: [sqlite]

**URLs** follow SQLAlchemy's convention: ``sqlite:///relative/path.db`` (relative to the
project root), ``sqlite:////absolute/path.db``, and the same for ``duckdb:///path.duckdb``
(needs the ``duckdb`` package). SQLite comes with Python; its only schema is ``main``.
Every other URL (``postgresql+psycopg://user:{{ env.PGPASSWORD }}@host/db``, ...) is a server
database read through SQLAlchemy (``defstate[sql]``; see :mod:`defstate.contrib.sqlalchemy`).

**State key**: ``DatabaseTables[<database file stem or name>]``; ``defs_state: {key: ...}``
overrides it. The state holds every table and view; ``schemas`` and ``include_views`` filter
when definitions are built, so instances on one database share one key and one refresh.

**State format**: one UTF-8 JSON file, keys sorted, two-space indent, trailing newline::

    {
      "format": "defstate.sql/1",
      "dialect": "sqlite" | "duckdb" | "postgresql" | ...,
      "database": "warehouse.db",          # the file name only: state is machine-independent
      "row_counts": "estimate",            # server databases: counts from catalog statistics
      "tables": [TABLE, ...]               # sorted by (schema, name)
    }

    TABLE:       schema, name, type ("table" | "view" | "materialized_view"), row_count (null
                 when unknown), columns [{name, type}] (in table order),
                 foreign_keys [{columns, references: {schema, table, columns}}] (sorted);
                 server databases add comment, primary_key and, per column, nullable, comment

**Assets**: key ``[*key_prefix, schema, name]``; deps: the tables its foreign keys reference
(a table referencing itself has no dep on itself); kinds ``{dialect, type}``; metadata
``columns`` (``[{name, type}]``, plus ``nullable`` and ``comment`` when known), ``row_count``
(``row_count_estimate`` for server databases) and ``primary_key`` when there is one; the
table comment as description; ``group_name`` from the attribute.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import attrs

from defstate.components import ComponentLoadContext, StateBackedComponent
from defstate.components.attributes import check_key_parts
from defstate.components.json_state import dump_json_state, load_json_state
from defstate.contrib.name_patterns import selected, selected_tables_definitions
from defstate.contrib.sqlalchemy import (
    ServerUrl,
    ServerUrlError,
    introspect_server,
    is_server_url,
)
from defstate.definitions import AssetKey, AssetSpec, Definitions
from defstate.errors import (
    AttributeValueError,
    ComponentStateError,
    ProjectError,
    RefreshError,
    TerminalRefreshError,
)
from defstate.redaction import redact_url

if TYPE_CHECKING:
    import sqlite3

    import duckdb

STATE_FORMAT: Final = "defstate.sql/1"
"""The ``format`` of the state this module writes and reads."""

Dialect = Literal["sqlite", "duckdb"]

_DIALECTS: Final[tuple[Dialect, ...]] = ("sqlite", "duckdb")

# Kinds Dagster users know, where they differ from the dialect's name.
_KINDS: Final = {"postgresql": "postgres"}

# DuckDB's own catalogs; never user tables.
_DUCKDB_SYSTEM_SCHEMAS: Final = ("information_schema", "pg_catalog")


class DatabaseUrlError(ProjectError, ValueError):
    """A connection URL this module cannot use."""


class DatabaseNotFoundError(TerminalRefreshError):
    """The database file does not exist; it is never created (opened read-only)."""


class DatabaseIntrospectionError(RefreshError):
    """The database could not be opened or read (it may be locked: worth another try)."""

    transient = True


class DatabaseStateError(ComponentStateError):
    """Stored state is not a state file this module can read."""


@attrs.frozen
class DatabaseUrl:
    """A parsed ``sqlite:///`` or ``duckdb:///`` URL: the dialect and the database file."""

    dialect: Dialect
    path: Path

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        """Parse ``<dialect>:///relative`` or ``<dialect>:////absolute`` (SQLAlchemy style)."""
        scheme, separator, rest = url.partition("://")
        shown = redact_url(url)  # a mistyped server URL may hold a password
        expected = "expected sqlite:///path/to/file.db or duckdb:///path/to/file.duckdb"
        if not separator or scheme not in _DIALECTS:
            raise DatabaseUrlError(f"unsupported database URL {shown!r}: {expected}")
        if not rest.startswith("/"):
            # `sqlite://host/...`: a host part means a server, which neither dialect has
            raise DatabaseUrlError(f"database URL {shown!r} has a host part: {expected}")
        if "?" in rest or "#" in rest:
            raise DatabaseUrlError(f"database URL {shown!r}: query parameters are not supported")
        path = rest[1:]  # `///x` is the relative path `x`; `////x` is the absolute `/x`
        if not path or path == ":memory:":
            raise DatabaseUrlError(
                f"database URL {shown!r} names no database file (in-memory databases are empty)"
            )
        dialect: Dialect = "sqlite" if scheme == "sqlite" else "duckdb"
        return cls(dialect, Path(path))

    def to_string(self) -> str:
        return f"{self.dialect}:///{self.path}"


def duckdb_available() -> bool:
    """Whether ``duckdb`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("duckdb") is not None


@attrs.define(kw_only=True)
class DatabaseTablesComponent(StateBackedComponent):
    """One asset per table (and view) of a SQLite or DuckDB database.

    Refreshing opens the database read-only and stores its tables, columns, row counts and
    foreign keys; see the module documentation for the URL forms, state format and keys.
    """

    url: str = attrs.field(repr=False)
    """``sqlite:///path.db``, ``duckdb:///path.duckdb`` (relative paths: project root) or a
    server database's SQLAlchemy URL (may hold credentials: never stored or shown)."""
    schemas: list[str] | None = None
    """Only these schemas; ``None``: all of them."""
    include_views: bool = True
    """Make assets of views (and materialized views) too."""
    include: list[str] | None = None
    """Only tables matching one of these patterns (``orders*``; ``raw.*`` with a ``.``
    matches ``schema.table``)."""
    exclude: list[str] = attrs.field(factory=list)
    """Leave out tables matching one of these patterns (same forms as ``include``)."""
    group_name: str | None = None
    """The group of every asset."""
    key_prefix: list[str] = attrs.field(factory=list)
    """Key parts put before ``[schema, table]``."""
    timeout: float = 30.0
    """Seconds for connecting to a server database and for each of its catalog queries."""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Validate the URL and make its path absolute (relative to the project root)."""
        component = super().from_attributes(attributes, context)
        if not component.timeout > 0:
            raise AttributeValueError(("timeout",), "timeout must be more than 0 seconds")
        check_key_parts(component.key_prefix)
        if is_server_url(component.url):
            try:
                ServerUrl.parse(component.url)
            except ServerUrlError as exc:
                raise AttributeValueError(("url",), str(exc)) from None
            return component
        try:
            parsed = DatabaseUrl.parse(component.url)
        except DatabaseUrlError as exc:
            raise AttributeValueError(("url",), str(exc)) from None
        if parsed.dialect == "duckdb" and not duckdb_available():
            raise AttributeValueError(
                ("url",), f"{component.url!r} needs the duckdb package: pip install duckdb"
            )
        # Only the path is resolved: the file may not exist yet (it is checked on refresh),
        # and loading from stored state must work where the database is unreachable.
        resolved = DatabaseUrl(parsed.dialect, context.resolve_path(parsed.path))
        return attrs.evolve(component, url=resolved.to_string())

    @property
    def database(self) -> DatabaseUrl | ServerUrl:
        """The parsed :attr:`url`: a database file, or a server database."""
        if is_server_url(self.url):
            return ServerUrl.parse(self.url)
        return DatabaseUrl.parse(self.url)

    def get_defs_state_key(self) -> str:
        """``DatabaseTables[<database file stem or name>]``."""
        database = self.database
        name = database.database if isinstance(database, ServerUrl) else database.path.stem
        return f"DatabaseTables[{name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        """Introspect the database (read-only) and write its description to ``state_path``."""
        database = self.database
        extra: dict[str, Any] = {}
        if isinstance(database, ServerUrl):
            tables = introspect_server(database, timeout=self.timeout)
            name, extra["row_counts"] = database.database, "estimate"
        elif database.dialect == "sqlite":
            tables, name = introspect_sqlite(database.path), database.path.name
        else:
            tables, name = introspect_duckdb(database.path), database.path.name
        # Every table: `schemas` and `include_views` apply when definitions are built, so
        # instances that share this key may filter differently.
        state = {
            "format": STATE_FORMAT,
            "dialect": database.dialect,
            "database": name,
            **extra,
            "tables": sorted(tables, key=lambda t: (t["schema"], t["name"])),
        }
        state_path.write_bytes(dump_json_state(state))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """One asset per stored table or view this instance selects; none without state."""
        return selected_tables_definitions(self, state_path, load_state, asset_specs_from_state)

    def selects(self, table: Mapping[str, Any]) -> bool:
        """Whether a stored table passes the filters (schemas, views, include, exclude)."""
        if self.schemas is not None and table["schema"] not in self.schemas:
            return False
        if not self.include_views and table["type"] != "table":
            return False
        names = [table["name"], f"{table['schema']}.{table['name']}"]
        return selected(names, self.include, self.exclude)


# --- introspection -----------------------------------------------------------------------


def _require_file(path: Path) -> None:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DatabaseNotFoundError(f"database file {path} {what}")


def _row_count(
    connection: Any, relation: str, kind: str, driver_error: type[Exception]
) -> int | None:
    """``count(*)`` of a table or view; ``None`` for a view that cannot be read (a broken
    definition), while a table that cannot be counted is an error."""
    try:
        counted = connection.execute(f"SELECT count(*) FROM {relation}").fetchone()
    except driver_error:
        if kind == "table":
            raise
        return None
    return int(counted[0]) if counted else None


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_record(
    schema: str,
    name: str,
    kind: str,
    columns: Iterable[tuple[str, str]],
    row_count: int | None,
    foreign_keys: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "schema": schema,
        "name": name,
        "type": kind,
        "columns": [{"name": n, "type": t} for n, t in columns],
        "row_count": row_count,
        "foreign_keys": sorted(foreign_keys, key=lambda fk: json.dumps(fk, sort_keys=True)),
    }


def introspect_sqlite(path: Path) -> list[dict[str, Any]]:
    """Every table and view of a SQLite file, opened read-only (never created)."""
    import sqlite3

    _require_file(path)
    # mode=ro: a missing file is an error instead of a new, empty database, and nothing the
    # refresh does can change the data.
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return _read_tables(
        "SQLite", path, lambda: sqlite3.connect(uri, uri=True), _sqlite_tables, sqlite3.Error
    )


def _sqlite_tables(connection: sqlite3.Connection) -> list[dict[str, Any]]:
    import sqlite3

    objects = connection.execute(
        "SELECT name, type FROM sqlite_master"
        " WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    tables = []
    for name, kind in objects:
        try:
            # The table-valued pragma functions take the name as a parameter: no quoting games.
            columns = connection.execute(
                "SELECT name, type FROM pragma_table_info(?) ORDER BY cid", (name,)
            ).fetchall()
        except sqlite3.Error:
            if kind == "table":
                raise
            columns = []  # a view over a missing table is valid SQLite until it is used
        references: dict[int, dict[str, Any]] = {}
        for fk_id, _seq, target, source_column, target_column in connection.execute(
            'SELECT id, seq, "table", "from", "to" FROM pragma_foreign_key_list(?)'
            " ORDER BY id, seq",
            (name,),
        ):
            fk = references.setdefault(
                fk_id,
                {"columns": [], "references": {"schema": "main", "table": target, "columns": []}},
            )
            fk["columns"].append(source_column)
            # `to` is NULL when the key references the parent's primary key implicitly
            if target_column is not None:
                fk["references"]["columns"].append(target_column)
        relation = f"main.{_quote_identifier(name)}"
        row_count = _row_count(connection, relation, kind, sqlite3.Error)
        tables.append(
            _table_record(
                "main",
                name,
                kind,
                ((c, t or "") for c, t in columns),
                row_count,
                references.values(),
            )
        )
    return tables


def introspect_duckdb(path: Path) -> list[dict[str, Any]]:
    """Every table and view of a DuckDB file, opened read-only (never created)."""
    try:
        import duckdb
    except ImportError:
        raise DatabaseIntrospectionError(
            f"cannot read {path}: the duckdb package is not installed (pip install duckdb)"
        ) from None

    _require_file(path)
    return _read_tables(
        "DuckDB",
        path,
        lambda: duckdb.connect(str(path), read_only=True),
        _duckdb_tables,
        duckdb.Error,
    )


def _read_tables(
    dialect: str,
    path: Path,
    connect: Callable[[], Any],
    read: Callable[[Any], list[dict[str, Any]]],
    error: type[Exception],
) -> list[dict[str, Any]]:
    """Open, read and close a database, turning its driver's errors into one message."""
    try:
        connection = connect()
    except error as exc:
        raise DatabaseIntrospectionError(f"cannot open {dialect} database {path}: {exc}") from None
    try:
        return read(connection)
    except error as exc:
        raise DatabaseIntrospectionError(f"cannot read {dialect} database {path}: {exc}") from None
    finally:
        connection.close()


def _duckdb_tables(connection: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    import duckdb

    system = ", ".join(f"'{s}'" for s in _DUCKDB_SYSTEM_SCHEMAS)
    objects = connection.execute(
        "SELECT table_schema, table_name, table_type FROM information_schema.tables"
        f" WHERE table_catalog = current_database() AND table_schema NOT IN ({system})"
    ).fetchall()
    columns: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, data_type in connection.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_catalog = current_database() ORDER BY ordinal_position"
    ).fetchall():
        columns.setdefault((schema, table), []).append((column, data_type))
    foreign_keys: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for schema, table, source_columns, target, target_columns in connection.execute(
        "SELECT schema_name, table_name, constraint_column_names, referenced_table,"
        " referenced_column_names FROM duckdb_constraints()"
        " WHERE database_name = current_database() AND constraint_type = 'FOREIGN KEY'"
    ).fetchall():
        # DuckDB refuses foreign keys across schemas: the target is in the same schema.
        foreign_keys.setdefault((schema, table), []).append(
            {
                "columns": list(source_columns),
                "references": {"schema": schema, "table": target, "columns": list(target_columns)},
            }
        )
    tables = []
    for schema, name, table_type in objects:
        kind = "view" if table_type == "VIEW" else "table"
        relation = f"{_quote_identifier(schema)}.{_quote_identifier(name)}"
        row_count = _row_count(connection, relation, kind, duckdb.Error)
        tables.append(
            _table_record(
                schema,
                name,
                kind,
                columns.get((schema, name), []),
                row_count,
                foreign_keys.get((schema, name), []),
            )
        )
    return tables


# --- the state ---------------------------------------------------------------------------


def load_state(state_path: Path) -> dict[str, Any]:
    """Read a state file written by this component, checking its format."""
    return load_json_state(
        state_path, state_format=STATE_FORMAT, what="database", error=DatabaseStateError
    )


def asset_specs_from_state(
    state: Mapping[str, Any],
    *,
    key_prefix: Sequence[str] = (),
    group_name: str | None = None,
) -> list[AssetSpec]:
    """The asset specs for a state document (see the module documentation)."""
    dialect = str(state["dialect"])
    kind = _KINDS.get(dialect, dialect)
    row_count = "row_count_estimate" if state.get("row_counts") == "estimate" else "row_count"
    specs = []
    for table in state["tables"]:
        key = AssetKey((*key_prefix, table["schema"], table["name"]))
        deps = [
            AssetKey((*key_prefix, fk["references"]["schema"], fk["references"]["table"]))
            for fk in table["foreign_keys"]
        ]
        metadata: dict[str, Any] = {
            "columns": [{k: v for k, v in c.items() if v is not None} for c in table["columns"]],
            row_count: table["row_count"],
        }
        if table.get("primary_key"):
            metadata["primary_key"] = table["primary_key"]
        specs.append(
            AssetSpec(
                key=key,
                deps=[d for d in deps if d != key],
                description=table.get("comment"),
                group_name=group_name,
                kinds=[kind, table["type"]],
                metadata=metadata,
            )
        )
    return specs
