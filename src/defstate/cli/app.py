"""The root ``defstate`` command group and the error handling every command shares."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs
import click

from defstate.errors import DefstateError
from defstate.json_text import COMPACT
from defstate.redaction import redact_data, redact_standard_streams
from defstate.user_code import describe_exception

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class CliState:
    """Options of the root command, passed to every sub-command."""

    project: Path | None
    debug: bool


def debug_enabled() -> bool:
    """Whether the running command got ``--debug`` (tracebacks into the user's code)."""
    ctx = click.get_current_context(silent=True)
    options = ctx.find_object(CliState) if ctx is not None else None
    return options is not None and options.debug


def fail(message: str, code: int = 1) -> None:
    """Print one ``error:`` line to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_interrupted() -> None:
    """Ctrl-C: say so and exit 130, like a shell, without waiting for refresh threads.

    A refresh cut off this way publishes nothing (the previous state stays), so the process
    ends at once instead of joining worker threads that may run for minutes.
    """
    click.echo("interrupted", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if threading.active_count() > 1:
        os._exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_INTERRUPTED)


def report_error(exc: DefstateError) -> None:
    """The one-line ``error:`` report of ``exc`` (plus the caret lines of a selection error)."""
    click.echo(f"error: {exc}", err=True)
    for line in getattr(exc, "pointer", ()):
        click.echo(f"  {line}", err=True)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn exceptions into one-line errors and their exit codes (tracebacks with --debug).

    Exit codes are the same for every command: 0 ok, 1 failure, 2 usage error or unknown key
    (``exit_code`` of the error class), 130 interrupted.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        options = ctx.find_object(CliState)
        debug = options is not None and options.debug
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            if debug:
                raise
            exit_interrupted()
        except BrokenPipeError:  # `defstate ... | head`: the reader left; say nothing more
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_FAILURE)
        except DefstateError as exc:
            if debug:
                raise
            report_error(exc)
            sys.exit(exc.exit_code)
        except Exception as exc:
            if debug:
                raise
            fail(f"{describe_exception(exc)} (run with --debug for a traceback)")
        raise AssertionError("unreachable")

    return wrapper


pass_state = click.make_pass_decorator(CliState)


class _RootGroup(click.Group):
    """The root group: ``--debug`` is accepted after the sub-command too
    (``defstate state refresh --debug``), anywhere before a ``--``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            args = ["--debug", *(a for i, a in enumerate(args) if i >= end or a != "--debug")]
        return super().parse_args(ctx, args)


@click.group(cls=_RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DEFSTATE_PROJECT",
    help="Project folder (default: walk up from the current folder to a pyproject.toml "
    "with [tool.defstate]).",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Show Python tracebacks for errors, into the components' code (before or after the "
    "sub-command).",
)
@click.version_option(package_name="defstate")
@click.pass_context
def cli(ctx: click.Context, project: Path | None, debug: bool) -> None:
    """defstate: state-backed components."""
    redact_standard_streams()  # everything this process prints is redacted
    ctx.obj = CliState(project=project, debug=debug)


def json_dumps(data: Any) -> str:
    """Indented for a terminal; compact for pipes (the indenting encoder is pure Python and
    several times slower on large projects)."""
    import json

    data = redact_data(data)  # before encoding: a secret is masked in every form JSON gives it
    # No check for reference cycles (a lookup per container: a sixth of encoding a large
    # listing): documents are built from records and definitions, and a cycle still fails,
    # with a RecursionError instead of a ValueError.
    if sys.stdout.isatty():
        return json.dumps(data, indent=2, check_circular=False)
    return COMPACT.encode(data)


@contextlib.contextmanager
def user_output_to_stderr(active: bool = True) -> Iterator[None]:
    """Send what components print (also from child processes) to stderr, so that stdout
    carries only the command's own output, e.g. a ``--json`` document."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
