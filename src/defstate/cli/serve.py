"""``defstate serve``, ``defstate dev`` and the hidden ``defstate worker load``."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import click

from defstate.cli.app import CliState, cli, handle_errors, pass_state
from defstate.errors import DefstateError
from defstate.loader.gc_pause import paused_gc
from defstate.loader.project import load_project_config
from defstate.state_storage.state_info import StateInfo


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    import signal

    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(0.5):
        pass


def _run_location(
    state: CliState,
    *,
    host: str,
    port: int,
    dev: bool,
    refresh_always: bool = False,
    reload_on_new_state: float | None = None,
) -> None:
    import logging  # here, like the server modules: other commands never pay for them

    from defstate.loader.schedules import load_schedules
    from defstate.server.dev import summarize_reload, watch_and_reload
    from defstate.server.http import start_http_server
    from defstate.server.location import CodeLocation
    from defstate.server.poller import poll_for_new_state

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_project_config(state.project)
    root = config.root

    def report(previous: object, new: object, error: str | None) -> None:
        for line in summarize_reload(previous, new, error):  # type: ignore[arg-type]
            _echo(line)

    location = CodeLocation(root, dev=dev, refresh_always=refresh_always, listener=report)
    if location.reload() is None:
        location.close()
        raise DefstateError(f"the first load failed: {location.last_error}")
    server = start_http_server(location, host, port)
    stop = threading.Event()
    watching = threading.Event()
    threads: list[threading.Thread] = []
    if reload_on_new_state:
        threads.append(
            threading.Thread(
                target=poll_for_new_state,
                args=(location, reload_on_new_state, stop),
                name="defstate-poller",
                daemon=True,
            )
        )
    schedules = [] if dev else list(load_schedules(config).values())
    if schedules:
        from datetime import UTC, datetime

        from defstate.loader.schedules import Scheduler
        from defstate.server.scheduling import run_scheduler, schedule_runner

        scheduler = Scheduler(schedules, schedule_runner(location), datetime.now(UTC))
        for name, when in scheduler.next_runs().items():
            _echo(f"schedule {name}: next run {when.isoformat()}")
        threads.append(
            threading.Thread(
                target=run_scheduler, args=(scheduler, stop), name="defstate-scheduler", daemon=True
            )
        )
    if dev:
        threads.append(
            threading.Thread(
                target=watch_and_reload,
                args=(config, location.reload, stop, watching),
                name="defstate-watch",
                daemon=True,
            )
        )
    for thread in threads:
        thread.start()
    if dev:
        watching.wait(timeout=10)
    bound_port = server.server_address[1]
    _echo(f"serving {root} at http://{host}:{bound_port} (dev={str(dev).lower()})")
    try:
        _wait_for_signal()
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        location.close()
        for thread in threads:
            thread.join(timeout=5)
        _echo("stopped")


_HOST = click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
_PORT = click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=3030,
    show_default=True,
    help="Port (0: any free port; the URL is printed).",
)


@cli.command("serve")
@_HOST
@_PORT
@click.option(
    "--reload-on-new-state",
    type=click.FloatRange(min=0.1),
    help="Every SECONDS, reload when a versioned key's latest version moved.",
)
@pass_state
@handle_errors
def serve(state: CliState, host: str, port: int, reload_on_new_state: float | None) -> None:
    """Serve the project's definitions as JSON over HTTP (a code location).

    GET /health, /defs, /components, /state, /worker/defs; POST /reload[?wait=1].
    Runs the project's schedules; a schedule that publishes new state triggers a reload.
    """
    _run_location(state, host=host, port=port, dev=False, reload_on_new_state=reload_on_new_state)


@cli.command("dev")
@_HOST
@_PORT
@click.option(
    "--refresh-always",
    is_flag=True,
    help="Refresh every refresh_if_dev component on every reload, not only changed ones.",
)
@pass_state
@handle_errors
def dev(state: CliState, host: str, port: int, refresh_always: bool) -> None:
    """Serve in dev mode: watch files, reload on change, refresh what changed."""
    _run_location(state, host=host, port=port, dev=True, refresh_always=refresh_always)


@cli.group("worker", hidden=True)
def worker_group() -> None:
    """Internal: work done in worker processes of a code location."""


@worker_group.command("load")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--dev", is_flag=True)
@click.option("--state-info", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--unchanged-since", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
@handle_errors
def worker_load(
    state: CliState,
    output: Path,
    dev: bool,
    state_info: Path | None,
    unchanged_since: Path | None,
) -> None:
    """Run one load and write its document to OUTPUT."""
    from defstate.server.worker import load_document

    document = load_document(
        state.project,
        dev=dev,
        state_info=StateInfo.from_json(state_info.read_text()) if state_info else None,
        unchanged_since=json.loads(unchanged_since.read_text()) if unchanged_since else None,
    )
    with paused_gc:
        text = json.dumps(document)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, output)
