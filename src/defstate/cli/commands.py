"""The sub-commands: each parses options, calls the library and renders the result."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from defstate.cli.app import CliState, cli, handle_errors, is_deploy, json_dumps, pass_state
from defstate.cli.render import (
    print_errors,
    render_components,
    render_defs,
    render_refresh_results,
)
from defstate.loader.load import load_defs, open_project, refresh_state
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import StateInfo

_MANAGEMENT_TYPES = click.Choice([m.value for m in ManagementType], case_sensitive=False)


def _read_state_info(path: Path | None) -> StateInfo | None:
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
@pass_state
@handle_errors
def list_defs(state: CliState, as_json: bool, no_refresh: bool, state_info: Path | None) -> None:
    """Load the project and print its definitions.

    A dev command, like `dg list defs`: it refreshes refresh_if_dev components first unless
    --no-refresh is given or DEFSTATE_DEPLOY=1 is set.
    """
    pin = _read_state_info(state_info)
    dev = pin is None and not no_refresh and not is_deploy()
    result = load_defs(state.project, dev=dev, state_info=pin)
    if as_json:
        click.echo(json_dumps(result.to_json_dict()))
    else:
        render_defs(result)
    print_errors(result.errors)
    if result.errors:
        sys.exit(1)


@list_group.command("components")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def list_components(state: CliState, as_json: bool) -> None:
    """List the project's component instances and their state keys."""
    project = open_project(state.project)
    if as_json:
        click.echo(json_dumps({"components": project.components_json()}))
    else:
        render_components(project)
    print_errors(project.errors)
    if project.errors:
        sys.exit(1)


@cli.command("check")
@pass_state
@handle_errors
def check(state: CliState) -> None:
    """Validate the project (configuration, defs.yaml, definitions) without refreshing."""
    result = load_defs(state.project, dev=False)
    print_errors(result.errors)
    if result.errors:
        click.echo(f"{len(result.errors)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {len(result.project.instances)} components, "
        f"{len(result.definitions.assets)} assets, {len(result.state_info)} keys with state"
    )


def _refresh_options(func: click.decorators.FC) -> click.decorators.FC:
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
        "keys",
        multiple=True,
        help="Only this state key or glob pattern (repeatable; default: every key).",
    )(func)
    return func


@cli.group("state")
def state_group() -> None:
    """Inspect and refresh component state."""


@state_group.command("refresh")
@click.argument("key_args", metavar="[KEY]...", nargs=-1)
@_refresh_options
@pass_state
@handle_errors
def state_refresh(
    state: CliState,
    key_args: tuple[str, ...],
    keys: tuple[str, ...],
    management_types: tuple[str, ...],
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Refresh state: call write_state_to_path and publish the result, per key."""
    _run_refresh(state, (*key_args, *keys), management_types, concurrency, as_json)


def _run_refresh(
    state: CliState,
    keys: tuple[str, ...],
    management_types: tuple[str, ...],
    concurrency: int | None,
    as_json: bool,
) -> None:
    types = tuple(ManagementType(m.upper()) for m in management_types)
    show_progress = not as_json and sys.stderr.isatty()
    if show_progress:
        from defstate.cli.progress import refresh_progress

        with refresh_progress() as listener:
            report = refresh_state(
                state.project,
                keys=keys,
                management_types=types,
                concurrency=concurrency,
                listener=listener,
            )
    else:
        report = refresh_state(
            state.project, keys=keys, management_types=types, concurrency=concurrency
        )
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
    print_errors(report.errors)
    if not report.ok:
        sys.exit(1)


@cli.group("utils")
def utils_group() -> None:
    """Commands kept for people coming from Dagster."""


@utils_group.command("refresh-defs-state")
@click.argument("key_args", metavar="[KEY]...", nargs=-1)
@_refresh_options
@pass_state
@handle_errors
def utils_refresh_defs_state(
    state: CliState,
    key_args: tuple[str, ...],
    keys: tuple[str, ...],
    management_types: tuple[str, ...],
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Alias of `defstate state refresh`."""
    _run_refresh(state, (*key_args, *keys), management_types, concurrency, as_json)
