"""Server databases (PostgreSQL, MySQL, ...) read through SQLAlchemy's Inspector.

:class:`~defstate.contrib.sql.DatabaseTablesComponent` uses this module for every URL that
is not a ``sqlite:///`` or ``duckdb:///`` file: ``postgresql+psycopg://user:pw@host/db``,
``mysql+pymysql://...`` and any other URL SQLAlchemy has a dialect for. SQLite and DuckDB
keep their native paths (duckdb-engine does not work with SQLAlchemy 2.1).

Install ``defstate[sql]`` (SQLAlchemy 2.1 and psycopg 3) and the driver of your database.
SQLAlchemy is imported only while refreshing; parsing and checking a URL needs only the
standard library, so loading a project never imports it.

**What is read** (one catalog pass per schema, with the ``get_multi_*`` calls): tables,
views and materialized views of every schema except the system ones; columns with their
type, nullability and comment; the table comment; primary and foreign keys; and row-count
*estimates* from the catalog statistics — ``pg_class.reltuples`` on PostgreSQL (``null``
until the table was first analysed), ``information_schema.tables.table_rows`` on
MySQL/MariaDB, ``null`` on other dialects. A table is never scanned (no ``count(*)``).

**Credentials** come through templates (``{{ env.PGPASSWORD }}``) and stay in memory: the
state holds only the database *name*, and every message shows the URL with its password
masked and any echo of the password replaced by ``***``.

The session is read-only where the dialect allows it (PostgreSQL:
``default_transaction_read_only``) and bounded by ``timeout`` (connecting and each
statement, PostgreSQL and MySQL).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import attrs

from defstate.errors import ProjectError
from defstate.redaction import redact_data_with, redact_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import ReflectedColumn
    from sqlalchemy.engine.reflection import Inspector

# Schemas that hold the database's own catalog, never user tables.
SYSTEM_SCHEMAS: Final = frozenset(
    {"information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema", "sys"}
)

# `dialect` or `dialect+driver`, as SQLAlchemy spells them.
_SCHEME: Final = re.compile(r"[a-z][a-z0-9_]*(\+[a-z][a-z0-9_]*)?")

# Names SQLAlchemy 2 does not know, with the one it does.
_RENAMED: Final = {"postgres": "postgresql"}

# Row-count estimates from catalog statistics, by dialect: (schema) -> rows of (name, rows).
_ROW_ESTIMATES: Final = {
    # reltuples is -1 for a table never vacuumed or analysed (PostgreSQL 14+): unknown
    "postgresql": (
        "SELECT c.relname, CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples END"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'm')"
    ),
    "mysql": (
        "SELECT table_name, table_rows FROM information_schema.tables"
        " WHERE table_schema = :schema AND table_type = 'BASE TABLE'"
    ),
}
_ROW_ESTIMATES["mariadb"] = _ROW_ESTIMATES["mysql"]


class ServerUrlError(ProjectError, ValueError):
    """A URL that names no server database this module can read."""


def is_server_url(url: str) -> bool:
    """Whether ``url`` is for this module: a scheme other than SQLite's and DuckDB's files."""
    scheme = url.partition("://")[0]
    return bool(_SCHEME.fullmatch(scheme)) and scheme.split("+")[0] not in ("sqlite", "duckdb")


@attrs.frozen
class ServerUrl:
    """A SQLAlchemy URL of a server database; :attr:`url` (with credentials) is never shown."""

    url: str = attrs.field(repr=False)
    dialect: str
    database: str

    @classmethod
    def parse(cls, url: str) -> ServerUrl:
        """Check the form of ``url`` (standard library only); the dialect is checked on refresh."""
        scheme, separator, _ = url.partition("://")
        dialect = scheme.split("+")[0]
        if not separator or not _SCHEME.fullmatch(scheme):
            raise ServerUrlError(
                f"unsupported database URL {redact_url(url)!r}: expected dialect[+driver]://..."
            )
        if dialect in _RENAMED:
            raise ServerUrlError(
                f"unsupported database URL {redact_url(url)!r}: SQLAlchemy calls this dialect "
                f"{_RENAMED[dialect]!r} ({_RENAMED[dialect]}+psycopg://...)"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
        except ValueError as exc:
            raise ServerUrlError(f"invalid database URL {redact_url(url)!r}: {exc}") from None
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ServerUrlError(
                f"database URL {redact_url(url)!r} names no database (…/DATABASE at its end)"
            )
        return cls(url, dialect, database)

    @property
    def shown(self) -> str:
        """The URL for messages: password masked, query values masked."""
        return redact_url(self.url)

    @property
    def secrets(self) -> list[str]:
        """What must never appear in a message: the password, as written and decoded."""
        password = urlsplit(self.url).password
        if not password:
            return []
        return sorted({password, unquote(password)} - {""}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret of the URL replaced by ``***`` (redaction's rules)."""
        return str(redact_data_with(text, self.secrets))


# --- introspection -----------------------------------------------------------------------


def introspect_server(url: ServerUrl, *, timeout: float) -> list[dict[str, Any]]:
    """Every table, view and materialized view of a server database (see the module doc).

    Raises :class:`~defstate.contrib.sql.DatabaseIntrospectionError` with the URL's
    password masked.
    """
    from defstate.contrib.sql import DatabaseIntrospectionError

    try:
        import sqlalchemy
    except ImportError:
        raise DatabaseIntrospectionError(
            f"cannot read {url.shown}: SQLAlchemy is not installed (pip install 'defstate[sql]')"
        ) from None
    try:
        with _connection(url, timeout) as connection:
            return _read_catalog(connection)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        raise DatabaseIntrospectionError(
            f"cannot read {url.shown}: {url.mask(_error_text(exc))}"
        ) from None


@contextlib.contextmanager
def _connection(url: ServerUrl, timeout: float) -> Iterator[Connection]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(
        url.url, poolclass=NullPool, connect_args=_connect_args(url.dialect, timeout)
    )
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _connect_args(dialect: str, timeout: float) -> dict[str, Any]:
    """Driver options that bound each connect and statement by ``timeout`` (read-only on
    PostgreSQL); other dialects get their driver's defaults."""
    seconds = max(1, round(timeout))
    if dialect == "postgresql":
        options = f"-c default_transaction_read_only=on -c statement_timeout={seconds * 1000}"
        return {"connect_timeout": seconds, "options": options}
    if dialect in ("mysql", "mariadb"):
        return {"connect_timeout": seconds, "read_timeout": seconds}
    return {}


def _error_text(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy's wrapper adds the SQL and a link), one line."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return f"{type(original).__name__}: {' '.join(lines)}" if lines else type(original).__name__


def _read_catalog(connection: Connection) -> list[dict[str, Any]]:
    import sqlalchemy

    inspector = sqlalchemy.inspect(connection)
    tables: list[dict[str, Any]] = []
    for schema in sorted(set(inspector.get_schema_names()) - SYSTEM_SCHEMAS):
        tables += _schema_tables(connection, inspector, schema)
    return tables


def _relations(inspector: Inspector, schema: str) -> dict[str, str]:
    """name -> ``table`` | ``view`` | ``materialized_view`` of one schema."""
    kinds = dict.fromkeys(inspector.get_table_names(schema), "table")
    kinds |= dict.fromkeys(inspector.get_view_names(schema), "view")
    with contextlib.suppress(NotImplementedError):  # dialects without materialized views
        kinds |= dict.fromkeys(inspector.get_materialized_view_names(schema), "materialized_view")
    return kinds


def _schema_tables(
    connection: Connection, inspector: Inspector, schema: str
) -> list[dict[str, Any]]:
    from sqlalchemy.engine.reflection import ObjectKind

    from defstate.contrib.sql import _table_record

    kinds = _relations(inspector, schema)
    if not kinds:
        return []
    columns = inspector.get_multi_columns(schema=schema, kind=ObjectKind.ANY)
    primary_keys = inspector.get_multi_pk_constraint(schema=schema, kind=ObjectKind.TABLE)
    foreign_keys = inspector.get_multi_foreign_keys(schema=schema, kind=ObjectKind.TABLE)
    comments = _optional(
        lambda: inspector.get_multi_table_comment(schema=schema, kind=ObjectKind.ANY)
    )
    estimates = _row_estimates(connection, schema)
    tables = []
    for name, kind in kinds.items():
        reflected = columns.get((schema, name), [])
        record = _table_record(
            schema,
            name,
            kind,
            ((c["name"], _type_name(c, connection)) for c in reflected),
            estimates.get(name),
            (_foreign_key(fk, schema) for fk in foreign_keys.get((schema, name), [])),
        )
        for column, source in zip(record["columns"], reflected, strict=True):
            column["nullable"] = bool(source.get("nullable", True))
            column["comment"] = source.get("comment")
        primary_key: Mapping[str, Any] = primary_keys.get((schema, name)) or {}
        record["primary_key"] = list(primary_key.get("constrained_columns") or [])
        record["comment"] = (comments.get((schema, name)) or {}).get("text")
        tables.append(record)
    return tables


def _optional(read: Any) -> Mapping[Any, Any]:
    try:
        result: Mapping[Any, Any] = read()
    except NotImplementedError:  # e.g. comments on a dialect without them
        return {}
    return result


def _type_name(column: ReflectedColumn, connection: Connection) -> str:
    """The column type as the database spells it (``VARCHAR(20)``, ``TIMESTAMP ...``)."""
    try:
        return str(column["type"].compile(dialect=connection.dialect))
    except Exception:  # a type SQLAlchemy reflects but cannot render (NullType, ...)
        return str(column["type"].__class__.__name__).upper()


def _foreign_key(reflected: Mapping[str, Any], schema: str) -> dict[str, Any]:
    return {
        "columns": list(reflected["constrained_columns"]),
        "references": {
            # the referred schema is left out when it is the one being read
            "schema": reflected.get("referred_schema") or schema,
            "table": reflected["referred_table"],
            "columns": list(reflected["referred_columns"]),
        },
    }


def _row_estimates(connection: Connection, schema: str) -> dict[str, int | None]:
    """name -> estimated rows, from the catalog statistics (never by counting)."""
    import sqlalchemy

    query = _ROW_ESTIMATES.get(connection.dialect.name)
    if query is None:
        return {}
    rows: Iterable[tuple[str, Any]] = connection.execute(sqlalchemy.text(query), {"schema": schema})
    return {str(name): None if count is None else int(count) for name, count in rows}
