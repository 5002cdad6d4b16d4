"""Entry point of the ``defstate`` console script."""

from __future__ import annotations

from defstate.cli import (  # noqa: F401  (registers the sub-commands)
    commands,
    scaffold,
    serve,
    state_commands,
)
from defstate.cli.app import cli


def main() -> None:
    """Run the command line."""
    cli(prog_name="defstate")
