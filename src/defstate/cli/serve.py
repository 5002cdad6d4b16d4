"""``defstate serve``, ``defstate dev`` and the hidden ``defstate worker load``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from defstate.cli.app import CliState, cli, handle_errors, pass_state
from defstate.errors import DefstateError, UsageError
from defstate.loader.gc_pause import paused_gc
from defstate.loader.project import ProjectConfig, load_project_config
from defstate.redaction import install_log_redaction
from defstate.state_storage.atomic import write_atomic
from defstate.state_storage.state_info import StateInfo

if TYPE_CHECKING:
    from defstate.server.location import CodeLocation


def _stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM (installed before the server says it is ready, so
    a signal sent after that line always stops it cleanly)."""
    import signal

    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _run_location(
    state: CliState,
    *,
    host: str,
    port: int,
    dev: bool,
    refresh_always: bool = False,
    reload_on_new_state: float | None = None,
    log_level: str = "info",
    log_format: str = "text",
) -> None:
    # here, like the server modules: other commands never pay for logging
    from defstate.server.dev import summarize_reload
    from defstate.server.http import start_http_server
    from defstate.server.location import CodeLocation
    from defstate.server.logs import configure_logging, event

    configure_logging(log_level, log_format)
    install_log_redaction()
    config = load_project_config(state.project)
    root = config.root
    _check_port(host, port)  # a busy port fails now, not after the first load

    def report(previous: object, new: object, error: str | None) -> None:
        records = summarize_reload(previous, new, error, root)  # type: ignore[arg-type]
        for level, message, fields in records:
            event(message, level=level, **fields)

    location = CodeLocation(root, dev=dev, refresh_always=refresh_always, listener=report)
    if location.reload() is None:
        location.close()
        raise DefstateError(f"the first load failed: {location.last_error}")
    signalled = _stop_on_signal()  # before the server answers: whoever sees it may stop it
    server = start_http_server(location, host, port)
    stop = threading.Event()
    watching = threading.Event()
    threads = _background_threads(location, config, dev, reload_on_new_state, stop, watching)
    for thread in threads:
        thread.start()
    if dev:
        watching.wait(timeout=10)
    bound_port = server.server_address[1]
    url = f"http://{host}:{bound_port}"
    event(f"serving {root} at {url} (dev={str(dev).lower()})", url=url, root=str(root), dev=dev)
    try:
        while not signalled.wait(0.5):
            pass
    finally:
        from defstate.state_storage.leases import release_held_leases

        stop.set()
        release_held_leases()  # a scheduled refresh may be running: let others take over
        server.shutdown()
        server.server_close()
        location.close()
        for thread in threads:
            thread.join(timeout=5)
        event("stopped")


def _background_threads(
    location: CodeLocation,
    config: ProjectConfig,
    dev: bool,
    reload_on_new_state: float | None,
    stop: threading.Event,
    watching: threading.Event,
) -> list[threading.Thread]:
    """The code location's helpers, not started: the state poller, the scheduler (not in
    dev mode) and the file watcher (dev mode)."""
    from defstate.server.dev import watch_and_reload
    from defstate.server.poller import poll_for_new_state

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
    scheduler = None if dev else _scheduler_thread(location, config, stop)
    if scheduler is not None:
        threads.append(scheduler)
    if dev:
        threads.append(
            threading.Thread(
                target=watch_and_reload,
                args=(config, location.reload, stop, watching),
                name="defstate-watch",
                daemon=True,
            )
        )
    return threads


def _scheduler_thread(
    location: CodeLocation, config: ProjectConfig, stop: threading.Event
) -> threading.Thread | None:
    """A thread running the project's schedules, or ``None`` when it has none."""
    from defstate.loader.schedules import load_schedules

    schedules = list(load_schedules(config).values())
    if not schedules:
        return None
    from datetime import UTC, datetime

    from defstate.loader.schedules import Scheduler, run_scheduler, schedule_runner
    from defstate.server.logs import event

    runner = schedule_runner(location.pool.run_schedule, location.reload)
    scheduler = Scheduler(schedules, runner, datetime.now(UTC))
    for name, when in scheduler.next_runs().items():
        event(
            f"schedule {name}: next run {when.isoformat()}",
            schedule=name,
            next_run=when.isoformat(),
        )
    return threading.Thread(
        target=run_scheduler, args=(scheduler, stop), name="defstate-scheduler", daemon=True
    )


def _check_port(host: str, port: int) -> None:
    """Fail at once, naming the address, when ``host:port`` cannot be listened on."""
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"cannot listen on {host}:{port}: {reason} (another `defstate serve`? pick "
            "another --port, or --port 0 for any free one)"
        ) from None


def _log_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text: TIME LEVEL message; json: one object per line (time, level, message, fields).",
    )(func)
    return click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default="info",
        show_default=True,
        help="Least severe level shown.",
    )(func)


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
@_log_options
@pass_state
@handle_errors
def serve(
    state: CliState,
    host: str,
    port: int,
    reload_on_new_state: float | None,
    log_level: str,
    log_format: str,
) -> None:
    """Serve the project's definitions over HTTP (a code location), with a web UI at /.

    GET /health, /defs, /components, /state, /worker/defs; POST /reload[?wait=1].
    Runs the project's schedules; a schedule that publishes new state triggers a reload.
    Needs the serve extra: pip install 'defstate[serve]'.
    """
    _run_location(
        state,
        host=host,
        port=port,
        dev=False,
        reload_on_new_state=reload_on_new_state,
        log_level=log_level,
        log_format=log_format,
    )


@cli.command("dev")
@_HOST
@_PORT
@click.option(
    "--refresh-always",
    is_flag=True,
    help="Refresh every refresh_if_dev component on every reload, not only changed ones.",
)
@_log_options
@pass_state
@handle_errors
def dev(
    state: CliState, host: str, port: int, refresh_always: bool, log_level: str, log_format: str
) -> None:
    """Serve in dev mode: watch files, reload on change, refresh what changed."""
    _run_location(
        state,
        host=host,
        port=port,
        dev=True,
        refresh_always=refresh_always,
        log_level=log_level,
        log_format=log_format,
    )


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
    """Run one load and write its document to OUTPUT (an alias of
    ``python -m defstate.server.worker``, which code locations start)."""
    from defstate.server.protocol import LoadRequest
    from defstate.server.worker import load_document

    request = LoadRequest(
        project_root=state.project,
        dev=dev,
        state_info=StateInfo.from_json(state_info.read_text()) if state_info else None,
        unchanged_since=json.loads(unchanged_since.read_text()) if unchanged_since else None,
    )
    document = load_document(request)
    with paused_gc:
        text = document.to_json()
    write_atomic(output, text.encode())
