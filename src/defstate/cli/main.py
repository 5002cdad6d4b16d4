"""Entry point of the ``defstate`` console script."""

from __future__ import annotations

from defstate.cli import (  # noqa: F401  (registers the sub-commands)
    commands,
    scaffold,
    serve,
    state_commands,
)
from defstate.cli.app import cli
from defstate.loader.gc_pause import freeze_before_exit


def main() -> None:
    """Run the command line (the process ends with it: see ``freeze_before_exit``)."""
    try:
        cli(prog_name="defstate")
    finally:
        freeze_before_exit()
