"""The sub-commands: each parses options, calls the library and renders the result."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from defstate.cli.app import (
    CliState,
    cli,
    handle_errors,
    json_dumps,
    pass_state,
    user_output_to_stderr,
)
from defstate.cli.render import (
    exit_on_errors,
    print_errors,
    render_components,
    render_defs,
    render_refresh_results,
)
from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.errors import DefstateError
from defstate.loader.gc_pause import paused_gc
from defstate.loader.load import (
    RefreshReport,
    is_deploy,
    load_defs,
    open_project,
    refresh_state,
)
from defstate.loader.refresh import RefreshOptions
from defstate.redaction import has_secrets
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateInfo

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from click.shell_completion import CompletionItem

    from defstate.loader.discovery import LoadProblem
    from defstate.loader.groups import Shard
    from defstate.loader.load import LoadResult
    from defstate.loader.refresh import RefreshListener
    from defstate.loader.state_admin import GcReport
    from defstate.selection import AssetSelection

_MANAGEMENT_TYPES = click.Choice([m.value for m in ManagementType], case_sensitive=False)


def read_state_info(path: Path | None) -> StateInfo | None:
    """A pin from ``--state-info FILE`` or ``DEFSTATE_STATE_INFO`` (a path or inline JSON)."""
    if path is None:
        value = os.environ.get("DEFSTATE_STATE_INFO", "").strip()
        if not value:
            return None
        if value.startswith("{"):
            return StateInfo.from_json(value)
        path = Path(value)
    try:
        return StateInfo.from_json(path.read_text())
    except OSError as exc:
        raise click.UsageError(f"cannot read state info {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise click.UsageError(f"{path} is not a defstate state info document: {exc}") from None


def complete_state_keys(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of KEY arguments: the project's state keys."""
    from click.shell_completion import CompletionItem

    project_dir = ctx.find_root().params.get("project")
    try:
        keys = open_project(project_dir).keys
    except Exception:  # completion must never fail loudly
        return []
    return [CompletionItem(key) for key in keys if key.startswith(incomplete)]


def _selection(text: str | None) -> AssetSelection | None:
    if text is None:
        return None
    from defstate.selection import AssetSelection

    return AssetSelection.from_string(text)


def _read_json_file(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.UsageError(f"{path} is not JSON: {exc}") from None


_SELECT = click.option(
    "--select",
    "select",
    metavar="SELECTION",
    help="Only these assets, in Dagster's selection syntax: key:raw/*, group:G, tag:T[=V], "
    "kind:K, owner:O, +X / X+ / 2+X (up/downstream), and, or, not, ( ).",
)

_WIDE = click.option(
    "--wide", is_flag=True, help="Full version ids, times and names (tables wider than 80)."
)

_STRICT = click.option(
    "--strict",
    is_flag=True,
    help="Missing state is an error naming the key (implied by DEFSTATE_DEPLOY=1).",
)


@cli.group("list")
def list_group() -> None:
    """List definitions or components."""


@list_group.command("defs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (assets and the pin).")
@click.option(
    "--no-refresh",
    is_flag=True,
    help="Do not refresh refresh_if_dev components first (implied by DEFSTATE_DEPLOY=1).",
)
@click.option(
    "--state-info",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reconstruct from this pin (a JSON file from `list defs --json` or LoadResult).",
)
@_STRICT
@_SELECT
@click.option(
    "--modified-since",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PIN.json",
    help="Only assets whose definition differs from the one in this saved `list defs --json` "
    "document (or built from this pin): new or changed, like dbt's state:modified.",
)
@_WIDE
@pass_state
@handle_errors
def list_defs(
    state: CliState,
    as_json: bool,
    no_refresh: bool,
    state_info: Path | None,
    strict: bool,
    select: str | None,
    modified_since: Path | None,
    wide: bool,
) -> None:
    """Load the project and print its definitions.

    A dev command, like `dg list defs`: it refreshes refresh_if_dev components first unless
    --no-refresh is given or DEFSTATE_DEPLOY=1 is set.
    """
    selection = _selection(select)  # a syntax error stops before anything loads
    pin = read_state_info(state_info)
    dev = pin is None and not no_refresh and not is_deploy()
    with user_output_to_stderr(as_json):
        result = load_defs(state.project, dev=dev, state_info=pin, strict=strict or None)
    if selection is not None:
        from defstate.loader.select import select_from_load

        result = select_from_load(result, selection)
    if modified_since is not None:
        from defstate.loader.select import modified_since as only_modified

        result = only_modified(result, _read_json_file(modified_since))
    with paused_gc:  # rendering allocates as much as the load did (see gc_pause)
        if as_json:
            _echo_defs_json(result)
        else:
            render_defs(result, wide)
    exit_on_errors(result.errors, result.project.config.root)


def _echo_defs_json(result: LoadResult) -> None:
    """The ``list defs --json`` document: through ``json_dumps`` on a terminal (indented) or
    when a secret is to be masked in it; otherwise the same text written straight from the
    definitions, in pieces (no dict per asset, no copy of the whole document)."""
    if sys.stdout.isatty() or has_secrets():
        click.echo(json_dumps(result.to_json_dict()))
        return
    write = sys.stdout.write  # JSON text is ASCII without terminal codes: nothing to strip
    for chunk in result.json_text_chunks():
        write(chunk)
    write("\n")
    sys.stdout.flush()


@list_group.command("components")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_WIDE
@pass_state
@handle_errors
def list_components(state: CliState, as_json: bool, wide: bool) -> None:
    """List the project's component instances and their state keys."""
    project = open_project(state.project)
    if as_json:
        click.echo(json_dumps({"components": project.components_json()}))
    else:
        render_components(project, wide)
    exit_on_errors(project.errors, project.config.root)


@cli.command("check")
@_STRICT
@click.option(
    "--storage",
    "probe_storage",
    is_flag=True,
    help="Also probe the state storage: connect, list, write, read and delete one small "
    "object, with a short timeout (like `dbt debug`).",
)
@click.option(
    "--storage-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds the storage probe may take.",
)
@click.option(
    "--dagster",
    "dagster_rules",
    is_flag=True,
    help="Also check every asset and check against Dagster's rules (owners, groups, tags, "
    "kinds, names), as the defstate[dagster] adapter does; Dagster need not be installed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def check(
    state: CliState,
    strict: bool,
    probe_storage: bool,
    storage_timeout: float,
    dagster_rules: bool,
    as_json: bool,
) -> None:
    """Validate the project without refreshing: configuration, defs.yaml, definitions,
    schedule key patterns, keys without state (hints) and, with --storage, the storage."""
    from defstate.loader.check import check_project
    from defstate.text import plural

    with user_output_to_stderr(as_json):
        report = check_project(
            state.project,
            strict=strict or None,
            storage=probe_storage,
            storage_timeout=storage_timeout,
            extra_checks=_dagster_rule_check() if dagster_rules else (),
        )
    if as_json:
        click.echo(json_dumps(report.to_json_dict()))
        sys.exit(0 if report.ok else 1)
    for probe in report.storage:
        if probe.ok:
            steps = ", ".join(probe.steps)
            click.echo(f"state storage {probe.storage}: ok ({steps}) in {probe.seconds:.2f}s")
    print_errors(report.hints, report.root, prefix="hint")
    print_errors(report.errors, report.root)
    if not report.ok:
        click.echo(f"{plural(len(report.errors), 'problem')} found", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {plural(report.components, 'component')}, {plural(report.assets, 'asset')}, "
        f"{report.keys_with_state} of {plural(report.keys, 'state key')} with state"
    )


def _dagster_rule_check() -> tuple[Callable[[LoadResult], list[LoadProblem]], ...]:
    from defstate.contrib.dagster.rules import rule_errors

    return (rule_errors,)


def _refresh_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--no-wait",
        is_flag=True,
        help="If another process is refreshing a key, report it and move on (exit 0).",
    )(func)
    func = click.option(
        "--max-removed-fraction",
        type=click.FloatRange(0, 1),
        help="Refuse to publish a key whose new definitions drop more than this fraction "
        "of the current assets.",
    )(func)
    func = click.option(
        "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per attempt."
    )(func)
    func = click.option(
        "--max-attempts", type=click.IntRange(min=1), help="Attempts in all (with --retry)."
    )(func)
    func = click.option(
        "--retry",
        "retry_kind",
        type=click.Choice(["none", "fixed", "backoff"]),
        help="Retry policy for every selected key (default: each component's defs_state).",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")(func)
    func = click.option(
        "--concurrency", type=click.IntRange(min=1), help="Keys refreshed at once."
    )(func)
    func = click.option(
        "--management-type",
        "management_types",
        multiple=True,
        type=_MANAGEMENT_TYPES,
        help="Only keys with this management type (repeatable).",
    )(func)
    func = click.option(
        "--key",
        "--defs-state-key",
        "keys",
        multiple=True,
        shell_complete=complete_state_keys,
        help="Only this state key or glob pattern (repeatable; default: every key).",
    )(func)
    func = click.option(
        "--shard",
        metavar="I/N",
        help="Only share I of N (I from 0) of the selected keys, split by a stable hash of "
        "each key: N machines running 0/N … N-1/N refresh every key once.",
    )(func)
    func = click.option(
        "--select",
        "select",
        metavar="SELECTION",
        help="Only the keys whose components define these assets (Dagster selection syntax, "
        "see `list defs --select`; resolved from the current state).",
    )(func)
    return func


@cli.group("state")
def state_group() -> None:
    """Inspect and refresh component state."""


@state_group.command("refresh")
@click.argument("key_args", metavar="[KEY]...", nargs=-1, shell_complete=complete_state_keys)
@_refresh_options
@pass_state
@handle_errors
def state_refresh(
    state: CliState,
    /,
    key_args: tuple[str, ...],
    keys: tuple[str, ...],
    management_types: tuple[str, ...],
    concurrency: int | None,
    as_json: bool,
    select: str | None,
    shard: str | None,
    **policy: Any,
) -> None:
    """Refresh state: call write_state_to_path and publish the result, per key."""
    from defstate.loader import Shard

    share = Shard.parse(shard) if shard is not None else None  # a bad I/N stops at once
    selected = (*key_args, *keys)
    selection = _selection(select)
    if selection is not None:
        selected = (*selected, *_keys_of_selection(state, selection, as_json))
    _run_refresh(state, selected, management_types, concurrency, as_json, _options(**policy), share)


def _keys_of_selection(
    state: CliState, selection: AssetSelection, as_json: bool
) -> tuple[str, ...]:
    from defstate.errors import UsageError
    from defstate.loader.groups import known_keys
    from defstate.loader.select import state_keys_for_selection

    with user_output_to_stderr(as_json):
        keys, result = state_keys_for_selection(selection, state.project)
    if not keys:
        print_errors(result.errors, result.project.config.root)
        raise UsageError(
            f"selection {selection.text!r} matches no asset of a state-backed component "
            "(a component without state defines no assets yet: name its key instead, "
            f"{known_keys(result.project.keys)})"
        )
    return tuple(keys)


def _options(
    retry_kind: str | None,
    max_attempts: int | None,
    timeout: float | None,
    max_removed_fraction: float | None,
    no_wait: bool,
    trigger: str = "cli",
) -> RefreshOptions:
    retry = None
    if retry_kind is not None or max_attempts is not None:
        strategy = retry_kind or "backoff"
        retry = RetryPolicy(type=strategy, max_attempts=max_attempts or 3)  # type: ignore[arg-type]
    guard = None
    if max_removed_fraction is not None:
        guard = RefreshGuard(max_removed_fraction=max_removed_fraction)
    return RefreshOptions(
        trigger=trigger, retry=retry, timeout=timeout, guard=guard, wait=not no_wait
    )


def _run_refresh(
    state: CliState,
    keys: tuple[str, ...],
    management_types: tuple[str, ...],
    concurrency: int | None,
    as_json: bool,
    options: RefreshOptions,
    shard: Shard | None = None,
) -> None:
    from defstate.state_storage.interrupts import released_on_signals

    types = tuple(ManagementType(m.upper()) for m in management_types)
    with released_on_signals():
        report = _refresh_with_output(state, keys, types, concurrency, as_json, options, shard)
    _print_report(state, report, as_json)


def _refresh_with_output(
    state: CliState,
    keys: tuple[str, ...],
    types: tuple[ManagementType, ...],
    concurrency: int | None,
    as_json: bool,
    options: RefreshOptions,
    shard: Shard | None,
) -> RefreshReport:
    with _refresh_output(as_json) as listener:
        return refresh_state(
            state.project,
            keys=keys,
            management_types=types,
            concurrency=concurrency,
            listener=listener,
            options=options,
            shard=shard,
        )


@contextlib.contextmanager
def _refresh_output(as_json: bool) -> Iterator[RefreshListener | None]:
    """A live progress display on a terminal; otherwise no listener, and the components'
    own output goes to stderr under ``--json`` (stdout keeps the document)."""
    if not as_json and sys.stderr.isatty():
        from defstate.cli.progress import refresh_progress

        with refresh_progress() as listener:
            yield listener
    else:
        with user_output_to_stderr(as_json):
            yield None


def _print_report(state: CliState, report: RefreshReport, as_json: bool) -> None:
    if as_json:
        click.echo(
            json_dumps(
                {
                    "results": [r.to_json_dict() for r in report.results],
                    "errors": [e.to_json_dict() for e in report.errors],
                }
            )
        )
    else:
        render_refresh_results(report.results)
        if not report.results and not report.errors:
            click.echo("no state-backed components selected")
    if report.errors:
        from defstate.loader.project import load_project_config

        print_errors(report.errors, load_project_config(state.project).root)
    if not report.ok:
        sys.exit(1)


@cli.group("utils")
def utils_group() -> None:
    """Commands kept for people coming from Dagster."""


# The alias is the same command object: one implementation, two names.
utils_group.add_command(state_refresh, "refresh-defs-state")


@state_group.command("history")
@click.argument("key", shell_complete=complete_state_keys)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_WIDE
@pass_state
@handle_errors
def state_history_command(state: CliState, key: str, as_json: bool, limit: int, wide: bool) -> None:
    """Show a key's refresh records (newest first) and its stored versions."""
    from defstate.cli.render import render_history
    from defstate.loader.history import state_history

    history = state_history(state.project, key, limit)
    if as_json:
        click.echo(json_dumps(history.to_json_dict()))
    else:
        render_history(history, wide)


@cli.group("schedule")
def schedule_group() -> None:
    """Scheduled refreshes ([tool.defstate.schedules.NAME])."""


@schedule_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def schedule_ls(state: CliState, as_json: bool) -> None:
    """List schedules with their next run time."""
    from datetime import UTC, datetime

    from defstate.loader.project import load_project_config
    from defstate.loader.schedules import load_schedules

    config = load_project_config(state.project)
    now = datetime.now(UTC)
    rows = [s.to_json_dict(now) for s in load_schedules(config).values()]
    if as_json:
        click.echo(json_dumps({"schedules": rows}))
        return
    if not rows:
        click.echo("no schedules ([tool.defstate.schedules.NAME] in pyproject.toml)")
    for row in rows:
        click.echo(
            f"{row['name']}  cron={row['cron']!r}  keys={','.join(row['keys'])}  "
            f"next run {row['next_run']}"
        )


@schedule_group.command("run")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--no-wait", is_flag=True, help="Skip keys another process is refreshing.")
@pass_state
@handle_errors
def schedule_run(state: CliState, name: str, as_json: bool, no_wait: bool) -> None:
    """Run one schedule once (for cron, Kubernetes CronJobs, Airflow, Dagster...)."""
    from defstate.loader.schedules import run_schedule
    from defstate.state_storage.interrupts import released_on_signals

    with released_on_signals(), user_output_to_stderr(as_json):
        report = run_schedule(state.project, name, wait=not no_wait)
    _print_report(state, report, as_json)


@state_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_WIDE
@pass_state
@handle_errors
def state_ls(state: CliState, as_json: bool, wide: bool) -> None:
    """List state keys with their latest version."""
    from defstate.cli.render import render_state_list
    from defstate.loader.state_admin import list_state
    from defstate.loader.state_tools import orphan_keys

    rows = list_state(state.project)
    orphans = []
    orphan_error = None
    try:
        orphans = orphan_keys(state.project)
    except DefstateError as exc:  # the rows already say what is wrong with each key
        orphan_error = exc.message
    if as_json:
        click.echo(
            json_dumps(
                {
                    "keys": [r.to_json_dict() for r in rows],
                    "orphans": [o.to_json_dict() for o in orphans],
                }
            )
        )
    else:
        render_state_list(rows, wide)
        for orphan in orphans:
            click.echo(
                f"orphan {orphan.key}  (in {orphan.storage}, used by no component: "
                "`defstate state gc --orphans` deletes it)"
            )
    if orphan_error is not None:
        click.echo(f"error: cannot list orphan keys: {orphan_error}", err=True)
    if any(r.error for r in rows) or orphan_error is not None:
        for row in rows:
            if row.error:
                click.echo(f"error: [{row.key}] {row.error}", err=True)
        sys.exit(1)


@state_group.command("show")
@click.argument("key", shell_complete=complete_state_keys)
@click.option("--version", help="A stored version or a unique prefix (default: the latest).")
@pass_state
@handle_errors
def state_show(state: CliState, key: str, version: str | None) -> None:
    """Show one version of a key (JSON: version, created_at, size, sha256, ...)."""
    from defstate.loader.state_admin import show_state

    shown = show_state(state.project, key, version)
    click.echo(json_dumps({"key": key, **shown.to_json_dict()}))


@state_group.command("diff")
@click.argument("key", shell_complete=complete_state_keys)
@click.argument("old", required=False)
@click.argument("new", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def state_diff(state: CliState, key: str, old: str | None, new: str | None, as_json: bool) -> None:
    """Which assets and asset checks NEW adds, removes and changes compared with OLD.

    Defaults: NEW is the latest version, OLD the one stored before it.
    """
    from defstate.loader.state_admin import diff_state

    diff = diff_state(state.project, key, old, new)
    if as_json:
        click.echo(json_dumps(diff.to_json_dict()))
        return
    click.echo(
        f"{key}: {diff.old} -> {diff.new}: +{len(diff.added)} -{len(diff.removed)} "
        f"~{len(diff.changed)}"
    )
    for sign, keys in (("+", diff.added), ("-", diff.removed), ("~", diff.changed)):
        for asset in keys:
            click.echo(f"  {sign} {asset}")
    changed_checks = (diff.checks_added, diff.checks_removed, diff.checks_changed)
    if any(changed_checks):
        added, removed, changed = (len(c) for c in changed_checks)
        click.echo(f"asset checks: +{added} -{removed} ~{changed}")
        for sign, keys in zip("+-~", changed_checks, strict=True):
            for check in keys:
                click.echo(f"  {sign} {check}")


@state_group.command("rollback")
@click.argument("key", shell_complete=complete_state_keys)
@click.argument("version")
@pass_state
@handle_errors
def state_rollback(state: CliState, key: str, version: str) -> None:
    """Make a stored VERSION the latest of KEY again (versioned storage)."""
    from defstate.loader.state_admin import rollback_state

    restored = rollback_state(state.project, key, version)
    click.echo(f"rolled back {key}  latest={restored.version}  ({restored.created_at})")


class Duration(click.ParamType):  # type: ignore[type-arg]
    """Seconds, or a number with a unit: ``90s``, ``30m``, ``1h``, ``7d``."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        unit = self._UNITS.get(text[-1:], None)
        number = text[:-1] if unit else text
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 90s, 30m, 1h, 7d)", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


@state_group.command("gc")
@click.option(
    "--keep", type=click.IntRange(min=0), default=5, show_default=True, help="Newest kept."
)
@click.option("--key", "keys", multiple=True, help="Only this key or glob pattern (repeatable).")
@click.option(
    "--orphans",
    is_flag=True,
    help="Instead: delete the whole state of keys no component uses (see `state ls`; a "
    "storage shared by several projects holds the others' keys too).",
)
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Keep versions superseded less than this ago (from the successor's publication).",
)
@click.option(
    "--older-than", type=Duration(), default="0", help="Only delete versions older than this."
)
@click.option(
    "--protect",
    "protect_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the versions this pin names (a state info JSON file; repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def state_gc(
    state: CliState,
    keep: int,
    keys: tuple[str, ...],
    orphans: bool,
    grace: float,
    older_than: float,
    protect_files: tuple[Path, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete old versions of versioned keys.

    Kept: the latest, every version a live process has pinned (serve, dev, opted-in loads),
    the versions --protect pins name, the KEEP newest, and versions superseded less than
    --grace ago. Prints each deleted version with the bytes freed.
    """
    from defstate.cli.render import format_bytes
    from defstate.loader.state_admin import gc_state

    if orphans:
        from defstate.cli.state_commands import gc_orphans

        gc_orphans(state, as_json)
        return

    pins = tuple(p for p in (read_state_info(f) for f in protect_files) if p is not None)
    report = gc_state(
        state.project,
        keep=keep,
        keys=keys,
        grace=grace,
        older_than=older_than,
        protect=pins,
        dry_run=dry_run,
    )
    if as_json:
        click.echo(json_dumps(report.to_json_dict()))
    else:
        from defstate.text import plural

        verb = "would delete" if dry_run else "deleted"
        for key_report in report.keys:
            for entry in key_report.entries:
                if entry.action != "kept":
                    click.echo(
                        f"{verb} {key_report.key} {entry.version}  {format_bytes(entry.bytes)}"
                    )
            click.echo(
                f"{key_report.key}: {verb} {plural(len(key_report.deleted), 'version')}, "
                f"{format_bytes(key_report.bytes_freed)}"
            )
        click.echo(f"{'would free' if dry_run else 'freed'} {format_bytes(report.bytes_freed)}")
    _gc_problems(report)
    if not report.ok:
        sys.exit(1)


def _gc_problems(report: GcReport) -> None:
    """gc's warnings (damaged records: skipped) and key errors, on stderr."""
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    for key_report in report.keys:
        for problem in key_report.problems:
            click.echo(f"warning: [{key_report.key}] {problem}", err=True)
        if key_report.error:
            click.echo(f"error: [{key_report.key}] {key_report.error}", err=True)
