"""``state verify``, ``state pull``, ``state migrate-layout`` and ``state gc --orphans``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from defstate.cli.app import CliState, handle_errors, json_dumps, pass_state
from defstate.cli.commands import complete_state_keys, read_state_info, state_group
from defstate.text import plural


@state_group.command("verify")
@click.argument("keys", metavar="[KEY]...", nargs=-1, shell_complete=complete_state_keys)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def state_verify(state: CliState, keys: tuple[str, ...], as_json: bool) -> None:
    """Re-check every stored version of versioned keys (default: all of them) against its
    manifest (size, sha256); report corrupt or incomplete versions (exit 1)."""
    from defstate.loader.state_tools import verify_state

    checks = verify_state(state.project, keys)
    bad = [c for c in checks if not c.ok]
    if as_json:
        click.echo(json_dumps({"ok": not bad, "versions": [c.to_json_dict() for c in checks]}))
    else:
        for check in checks:
            line = f"{check.status:<10}  {check.key}  {check.version}"
            click.echo(f"{line}  {check.message}" if check.message else line)
        summary = f"{plural(len(checks), 'version')} checked, {len(bad)} bad"
        click.echo(summary, err=bool(bad))
    if bad:
        sys.exit(1)


@state_group.command("pull")
@click.argument("keys", metavar="[KEY]...", nargs=-1, shell_complete=complete_state_keys)
@click.option(
    "--state-info",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pull the versions this pin names (a `list defs --json` document) instead of latest.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def state_pull(
    state: CliState, keys: tuple[str, ...], state_info: Path | None, as_json: bool
) -> None:
    """Copy versioned state (latest, or pinned) into .local_defs_state/ for a build to bake.

    No component runs: the external systems are not called. The build then loads those
    components as LOCAL_FILESYSTEM (e.g. `management_type: "{{ env.STATE_MODE }}"`).
    """
    from defstate.cli.render import format_bytes
    from defstate.loader.state_tools import pull_state

    results = pull_state(state.project, keys, read_state_info(state_info))
    if as_json:
        click.echo(json_dumps({"pulled": [r.to_json_dict() for r in results]}))
        return
    for result in results:
        if result.skipped:
            click.echo(f"skipped {result.key}  ({result.skipped})")
        else:
            click.echo(
                f"pulled {result.key}  version={result.version}  {format_bytes(result.size)}"
            )
    if not results:
        click.echo("no versioned keys to pull")


@state_group.command("migrate-layout")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def state_migrate_layout(state: CliState, as_json: bool) -> None:
    """Move the versioned storage to the current layout (2: every latest pointer under one
    prefix, so an unchanged project's load lists them instead of reading one per key).

    Safe while other processes load and publish (they must run a defstate that knows layout
    2), safe to interrupt, and idempotent: run it again to finish or to check.
    """
    from defstate.loader.state_tools import migrate_layout

    result = migrate_layout(state.project)
    if as_json:
        click.echo(json_dumps(result.to_json_dict()))
        return
    for key in result.moved:
        click.echo(f"moved {key}")
    click.echo(
        f"{result.storage}: layout {result.layout_before} -> layout {result.layout}, "
        f"{plural(len(result.moved), 'key')} moved, {len(result.unchanged)} already there"
    )


def gc_orphans(state: CliState, as_json: bool) -> None:
    """``state gc --orphans``: delete the state of keys that no component uses."""
    from defstate.loader.state_tools import delete_orphans

    deleted = delete_orphans(state.project)
    if as_json:
        click.echo(json_dumps({"deleted_orphans": [o.to_json_dict() for o in deleted]}))
        return
    for orphan in deleted:
        click.echo(f"deleted orphan {orphan.key}  (from {orphan.storage})")
    click.echo(f"{plural(len(deleted), 'orphan key')} deleted")
