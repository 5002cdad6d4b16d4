"""Rich rendering of load and refresh results (rich is imported only when rendering)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from defstate.cli.app import debug_enabled
from defstate.loader.discovery import LoadProblem
from defstate.loader.refresh import RefreshResult
from defstate.state_storage.management import ManagementType
from defstate.text import plural

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    from defstate.loader.history import StateHistory
    from defstate.loader.load import LoadResult, Project
    from defstate.loader.state_admin import KeyState


# --wide: as wide as the content (no terminal is this wide, so nothing wraps or folds)
_WIDE = 100_000
SHORT_ID = 8


def console(stderr: bool = False, wide: bool = False) -> Console:
    from rich.console import Console

    # Keys, paths and messages are user text: never markup ([/x]), emoji codes (:x:) or
    # highlighting.
    return Console(
        stderr=stderr,
        highlight=False,
        markup=False,
        emoji=False,
        width=_WIDE if wide else None,
        soft_wrap=wide,
    )


def short_id(version: str | None, wide: bool = False) -> str:
    """A uuid version as its first 8 characters, like git's short hashes (every command that
    takes a version accepts a unique prefix); ``local``/``code-server`` as they are."""
    if version is None:
        return ""
    return version if wide or len(version) <= SHORT_ID + 4 else version[:SHORT_ID]


def short_time(iso: str | None, wide: bool = False) -> str:
    """An ISO 8601 UTC time to the second (``2026-12-01T21:41:47Z``); full with --wide."""
    if not iso:
        return ""
    if wide or not iso.endswith("+00:00") or len(iso) < 19:
        return iso
    return iso[:19] + "Z"


def management_name(management_type: ManagementType | str, wide: bool = False) -> str:
    """The management type's full name with --wide, else its short label."""
    management_type = ManagementType(management_type)
    return management_type.value if wide else management_type.label


def table(title: str, columns: Sequence[str], wide: bool, keep: Sequence[str] = ()) -> Table:
    """A table that fits the terminal: columns in ``keep`` (keys, ids) never wrap, the others
    wrap when needed; --wide tables are as wide as their content."""
    from rich import box
    from rich.table import Table

    grid = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in columns:
        if column in keep:
            grid.add_column(column, no_wrap=True, overflow="fold")
        else:
            grid.add_column(column, overflow="fold")
    return grid


class Breakable:
    """A table cell of paths or keys (``quickstart/defs/wh/defs.yaml:2``, ``staging/orders,
    raw/orders``) that wraps after a ``/`` or a space (after a ``.`` too for dotted names:
    ``dotted=True``), so a narrow column shows whole segments; only a segment wider than the
    column by itself is folded."""

    def __init__(self, text: str, dotted: bool = False) -> None:
        self.text = text
        separators = "/." if dotted else "/"
        # each segment with the separator after it: the places the text may break
        pattern = rf"[^{separators} ]*(?:[{separators}]| +)|[^{separators} ]+"
        self.segments: list[str] = re.findall(pattern, text)

    def lines(self, width: int) -> list[str]:
        """The text in lines of at most ``width`` characters (spaces ending a line dropped)."""
        lines: list[str] = []
        line = ""
        for segment in self.segments:
            if len((line + segment).rstrip()) <= width:
                line += segment
                continue
            if line:
                lines.append(line.rstrip())
            while len(segment.rstrip()) > width:  # one segment wider than the column
                lines.append(segment[:width])
                segment = segment[width:]
            line = segment
        if line.rstrip() or not lines:
            lines.append(line.rstrip())
        return lines

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        return Measurement(self.widest, max(len(self.text), 1)).clamp(max_width=options.max_width)

    @property
    def widest(self) -> int:
        """The widest segment: the narrowest column that shows the text unfolded."""
        return max((len(s.rstrip()) for s in self.segments), default=0)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        from rich.text import Text

        yield Text("\n".join(self.lines(max(options.max_width, 1))), overflow="fold")


def relative_to_project(error: LoadProblem, root: Path | None) -> LoadProblem:
    """``error`` with its file relative to the project root (how every path is shown)."""
    return error.relative_to(root)


def print_errors(
    errors: Sequence[LoadProblem], root: Path | None = None, prefix: str = "error"
) -> None:
    """One ``error:`` line per problem, on stderr, with paths relative to ``root``
    (and, with ``--debug``, the traceback into the user's code)."""
    debug = debug_enabled()
    for error in errors:
        click.echo(f"{prefix}: {relative_to_project(error, root)}", err=True)
        if debug and error.traceback:
            click.echo(error.traceback.rstrip("\n"), err=True)


def exit_on_errors(errors: Sequence[LoadProblem], root: Path | None = None) -> None:
    """Print the errors, and exit 1 when there are any."""
    print_errors(errors, root)
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


def render_defs(result: LoadResult, wide: bool = False) -> None:
    assets = sorted(result.definitions.assets, key=lambda s: s.key)
    grid = table(
        plural(len(assets), "asset"),
        ("key", "deps", "group", "kinds", "component"),
        wide,
        keep=("key",),
    )
    for spec in assets:
        grid.add_row(
            spec.key.to_string(),
            Breakable(", ".join(d.to_string() for d in spec.deps)),
            spec.group_name or "",
            ", ".join(spec.kinds),
            Breakable(result.asset_sources.get(spec.key, "")),
        )
    out = console(wide=wide)
    out.print(grid)
    if result.definitions.asset_checks:
        out.print(_checks_table(result, wide))
    if result.state_info:
        state = table(
            "state",
            ("key", "version", "created_at", "storage"),
            wide,
            keep=("key", "version", "created_at"),
        )
        for key, version in sorted(result.state_info.versions.items()):
            state.add_row(
                key,
                short_id(version.version, wide),
                short_time(version.created_at, wide),
                management_name(version.management_type, wide),
            )
        out.print(state)


def _checks_table(result: LoadResult, wide: bool) -> Table:
    checks = sorted(result.definitions.asset_checks, key=lambda c: (c.asset.path, c.name))
    grid = table(
        plural(len(checks), "asset check"),
        ("asset", "check", "blocking", "component"),
        wide,
        keep=("asset", "check"),
    )
    for check in checks:
        grid.add_row(
            check.asset.to_string(),
            check.name,
            "yes" if check.blocking else "",
            Breakable(result.check_sources.get(check.key, "")),
        )
    return grid


def render_components(project: Project, wide: bool = False) -> None:
    grid = table(
        plural(len(project.instances), "component"),
        ("source", "type", "state key", "storage"),
        wide,
        keep=("state key",),
    )
    for instance in project.instances:
        management = ""
        if instance.state_key is not None:
            value = project.groups[instance.state_key].management_type
            management = management_name(value, wide)
        grid.add_row(
            Breakable(instance.source),
            Breakable(instance.type_name, dotted=True),
            instance.state_key or "",
            management,
        )
    console(wide=wide).print(grid)


def render_refresh_results(results: Sequence[RefreshResult]) -> None:
    """One line per key: key, version, seconds, bytes (or the error)."""
    for result in results:
        if result.status == "unchanged":
            click.echo(
                f"unchanged {result.key}  version={result.published}  {result.seconds:.2f}s  "
                "(same bytes as the latest version: nothing published)"
            )
        elif result.ok and result.version is not None:
            attempts = f"  attempts={result.attempts}" if result.attempts > 1 else ""
            click.echo(
                f"refreshed {result.key}  version={result.version.version}  "
                f"{result.seconds:.2f}s  {format_bytes(result.size)}{attempts}"
            )
            for warning in result.warnings:
                click.echo(f"warning: [{result.key}] {warning}", err=True)
        elif result.status == "joined" and result.ok:
            click.echo(
                f"joined {result.key}  version={result.published}  (refreshed meanwhile by "
                f"another process)"
            )
        elif result.status == "skipped":
            click.echo(f"skipped {result.key}  (already refreshing in another process)")
        else:
            click.echo(
                f"error: {result.component}: [{result.key}] refresh {result.status} after "
                f"{result.seconds:.2f}s ({plural(result.attempts, 'attempt')}): {result.error}",
                err=True,
            )
            if result.traceback and debug_enabled():
                click.echo(result.traceback.rstrip("\n"), err=True)


def render_history(history: StateHistory, wide: bool = False) -> None:
    out = console(wide=wide)
    latest = short_id(history.latest.version, wide) if history.latest else "none"
    management = management_name(history.management_type, wide)
    out.print(f"{history.key} ({management}), latest version: {latest}")
    columns = ["started", "trigger", "status", "attempts", "version", "bytes"]
    if wide:
        columns.append("host")
    records = table(
        "refreshes (newest first)", [*columns, "error"], wide, keep=("started", "version")
    )
    for r in history.records:
        row = [
            short_time(r.started_at, wide),
            r.trigger,
            r.status,
            str(r.attempts),
            short_id(r.version, wide),
            format_bytes(r.bytes),
        ]
        if wide:
            row.append(r.host)
        records.add_row(*row, r.error or "")
    out.print(records)
    versions = table(
        "stored versions (oldest first)",
        ("version", "created_at", "bytes", "sha256"),
        wide,
        keep=("version", "created_at"),
    )
    for v in history.versions:
        versions.add_row(
            short_id(v.version, wide),
            short_time(v.created_at, wide),
            format_bytes(v.size),
            (v.sha256 or "") if wide else (v.sha256 or "")[:12],
        )
    out.print(versions)


def render_state_list(rows: Sequence[KeyState], wide: bool = False) -> None:
    out = console(wide=wide)
    cells = [_state_list_cells(row, wide) for row in rows]
    components = [Breakable(", ".join(row.components)) for row in rows]
    # Rather than fold the other columns mid-word, a table too wide for the terminal
    # leaves out the components (the one column other commands show too).
    fixed = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(_STATE_COLUMNS)]
    narrowest = max([len("components"), *(b.widest for b in components)])
    narrow = not wide and sum(fixed) + narrowest + 2 * len(fixed) > out.width
    grid = table(
        plural(len(rows), "state key"),
        _STATE_COLUMNS if narrow else (*_STATE_COLUMNS, "components"),
        wide,
        keep=("key", "latest", "created_at"),
    )
    for row_cells, row_components in zip(cells, components, strict=True):
        grid.add_row(*row_cells, *(() if narrow else (row_components,)))
    out.print(grid)
    if narrow:
        out.print(
            "components left out to fit the terminal (--wide shows them)",
            markup=False,
            highlight=False,
        )


_STATE_COLUMNS = ("key", "storage", "latest", "created_at", "bytes")


def _state_list_cells(row: KeyState, wide: bool) -> tuple[str, ...]:
    latest = row.latest
    return (
        row.key,
        management_name(row.management_type, wide),
        short_id(latest.version, wide) if latest else ("error" if row.error else "none"),
        short_time(latest.created_at if latest else None, wide),
        format_bytes(latest.size if latest else None),
    )
