"""Rich rendering of load and refresh results (rich is imported only when rendering)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from defstate.loader.discovery import LoadError
from defstate.loader.refresh import RefreshResult

if TYPE_CHECKING:
    from rich.console import Console

    from defstate.loader.history import StateHistory
    from defstate.loader.load import LoadResult, Project
    from defstate.loader.state_admin import KeyState


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False)


def print_errors(errors: Sequence[LoadError]) -> None:
    """One ``error:`` line per problem, on stderr."""
    for error in errors:
        click.echo(f"error: {error}", err=True)


def exit_on_errors(errors: Sequence[LoadError]) -> None:
    """Print the errors, and exit 1 when there are any."""
    print_errors(errors)
    if errors:
        sys.exit(1)


def format_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render_defs(result: LoadResult) -> None:
    from rich.table import Table

    table = Table(title=f"{len(result.definitions.assets)} assets", title_justify="left")
    for column in ("key", "deps", "group", "kinds", "component"):
        table.add_column(column, overflow="fold")
    for spec in sorted(result.definitions.assets, key=lambda s: s.key):
        table.add_row(
            spec.key.to_string(),
            ", ".join(d.to_string() for d in spec.deps),
            spec.group_name or "",
            ", ".join(spec.kinds),
            result.asset_sources.get(spec.key, ""),
        )
    out = console()
    out.print(table)
    if result.state_info:
        state = Table(title="state", title_justify="left")
        for column in ("key", "version", "created_at", "management type"):
            state.add_column(column, overflow="fold")
        for key, version in sorted(result.state_info.versions.items()):
            state.add_row(key, version.version, version.created_at, version.management_type.value)
        out.print(state)


def render_components(project: Project) -> None:
    from rich.table import Table

    table = Table(title=f"{len(project.instances)} components", title_justify="left")
    for column in ("source", "type", "state key", "management type"):
        table.add_column(column, overflow="fold")
    for instance in project.instances:
        management = ""
        if instance.state_key is not None:
            management = project.groups[instance.state_key].management_type.value
        table.add_row(instance.source, instance.type_name, instance.state_key or "", management)
    console().print(table)


def render_refresh_results(results: Sequence[RefreshResult]) -> None:
    """One line per key: key, version, seconds, bytes (or the error)."""
    for result in results:
        if result.ok and result.version is not None:
            attempts = f"  attempts={result.attempts}" if result.attempts > 1 else ""
            click.echo(
                f"refreshed {result.key}  version={result.version.version}  "
                f"{result.seconds:.2f}s  {format_bytes(result.size)}{attempts}"
            )
        elif result.status == "joined" and result.ok:
            click.echo(
                f"joined {result.key}  version={result.published}  (refreshed meanwhile by "
                f"another process)"
            )
        elif result.status == "already_refreshing":
            click.echo(f"skipped {result.key}  (already refreshing in another process)")
        else:
            click.echo(
                f"error: {result.component}: [{result.key}] refresh {result.status} after "
                f"{result.seconds:.2f}s ({result.attempts} attempt(s)): {result.error}",
                err=True,
            )


def render_history(history: StateHistory) -> None:
    from rich.table import Table

    out = console()
    latest = history.latest.version if history.latest else "none"
    out.print(f"{history.key} ({history.management_type}), latest version: {latest}")
    records = Table(title="refreshes (newest first)", title_justify="left")
    for column in ("started", "trigger", "status", "attempts", "version", "bytes", "host", "error"):
        records.add_column(column, overflow="fold")
    for r in history.records:
        records.add_row(
            r.started_at,
            r.trigger,
            r.status,
            str(r.attempts),
            r.version or "",
            format_bytes(r.bytes),
            r.host,
            r.error or "",
        )
    out.print(records)
    versions = Table(title="stored versions (oldest first)", title_justify="left")
    for column in ("version", "created_at", "bytes", "sha256"):
        versions.add_column(column, overflow="fold")
    for v in history.versions:
        versions.add_row(v.version, v.created_at, format_bytes(v.size), (v.sha256 or "")[:12])
    out.print(versions)


def render_state_list(rows: Sequence[KeyState]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(rows)} state keys", title_justify="left")
    for column in ("key", "management type", "latest", "created_at", "bytes", "components"):
        table.add_column(column, overflow="fold")
    for row in rows:
        latest = row.latest
        table.add_row(
            row.key,
            row.management_type.value,
            latest.version if latest else ("error" if row.error else "none"),
            latest.created_at if latest else "",
            format_bytes(latest.size if latest else None),
            ", ".join(row.components),
        )
    console().print(table)
