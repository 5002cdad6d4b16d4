"""``defstate init``, ``defstate scaffold``, ``list component-types`` and the defs.yaml schema."""

from __future__ import annotations

from pathlib import Path

import click

from defstate.cli.app import CliState, cli, handle_errors, json_dumps, pass_state
from defstate.cli.commands import list_group, utils_group


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--name", help="Project name (default: the folder's name).")
@handle_errors
def init(directory: Path, name: str | None) -> None:
    """Create a working project in DIRECTORY (default: here), like `dg scaffold project`.

    Then `defstate state refresh && defstate list defs` work in it at once.
    """
    from defstate.loader.scaffold import init_project

    written = init_project(directory, name)
    root = directory.resolve()
    for path in written:
        click.echo(f"created {_shown(path, root)}")
    where = "" if root == Path.cwd().resolve() else f"cd {directory} && "
    click.echo(f"next: {where}defstate state refresh && defstate list defs")


@cli.group("scaffold")
def scaffold_group() -> None:
    """Write skeletons: a component class, a defs.yaml for a component type."""


@scaffold_group.command("component")
@click.argument("name")
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: <package>/<snake_case_name>.py, relative to the project).",
)
@pass_state
@handle_errors
def scaffold_component_command(state: CliState, name: str, path: Path | None) -> None:
    """Write a state-backed component class NAME (a working skeleton to fill in)."""
    from defstate.loader.project import load_project_config
    from defstate.loader.scaffold import scaffold_component

    target, type_name = scaffold_component(name, state.project, path)
    root = load_project_config(state.project).root
    click.echo(f"created {_shown(target, root)}")
    click.echo(f"next: defstate scaffold defs {type_name} PATH")


@scaffold_group.command("defs")
@click.argument("type_name", metavar="TYPE")
@click.argument("path")
@pass_state
@handle_errors
def scaffold_defs_command(state: CliState, type_name: str, path: str) -> None:
    """Write <defs folder>/PATH/defs.yaml for component TYPE, listing its attributes."""
    from defstate.loader.project import load_project_config
    from defstate.loader.scaffold import scaffold_defs

    target, info = scaffold_defs(type_name, path, state.project)
    root = load_project_config(state.project).root
    click.echo(f"created {_shown(target, root)}")
    if any(a.required for a in info.attributes):
        click.echo("next: fill in the required attributes, then `defstate check`")


@list_group.command("component-types")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (attributes, docstrings).")
@pass_state
@handle_errors
def list_component_types_command(state: CliState, as_json: bool) -> None:
    """List the component types: defstate's contrib ones and the project's own."""
    from defstate.loader.component_types import list_component_types

    found = list_component_types(state.project)
    if as_json:
        click.echo(
            json_dumps(
                {
                    "component_types": [t.to_json_dict() for t in found.types],
                    "problems": list(found.problems),
                }
            )
        )
        return
    for info in found.types:
        kind = "state-backed" if info.state_backed else "plain"
        click.echo(f"{info.name}  ({kind})")
        if info.summary:
            click.echo(f"  {info.summary}")
        for attribute in info.attributes:
            default = "required" if attribute.required else f"default {attribute.default!r}"
            if len(default) > 40:  # a nested mapping such as defs_state: see --json
                default = "optional mapping"
            click.echo(f"    {attribute.name}: {attribute.type}  ({default})")
    for problem in found.problems:
        click.echo(f"warning: {problem}", err=True)


@utils_group.command("defs-yaml-json-schema")
@pass_state
@handle_errors
def defs_yaml_json_schema_command(state: CliState) -> None:
    """Print a JSON Schema of defs.yaml covering every component type's attributes.

    For editor completion, e.g. with the YAML language server: save it as
    defs.schema.json and add `# yaml-language-server: $schema=defs.schema.json` to a
    defs.yaml, or map it to **/defs.yaml in your editor's settings.
    """
    import json

    from defstate.loader.component_types import defs_yaml_json_schema, list_component_types

    click.echo(json.dumps(defs_yaml_json_schema(list_component_types(state.project)), indent=2))
