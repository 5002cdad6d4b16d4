"""Running a project's schedules inside a code location."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from defstate.errors import DefstateError
from defstate.loader.project import load_project_config
from defstate.loader.refresh.results import RefreshStatus
from defstate.loader.schedules import Schedule, Scheduler, load_schedules
from defstate.server.location import CodeLocation

log = logging.getLogger("defstate.server")


def schedule_runner(location: CodeLocation) -> Callable[[Schedule], bool]:
    """Run a schedule in a worker process; reload the location when it published anything."""

    def run(schedule: Schedule) -> bool:
        log.info("schedule %s: refreshing %s", schedule.name, ", ".join(schedule.settings.keys))
        try:
            report = location.pool.run_schedule(schedule.name)
        except DefstateError as exc:
            log.error("schedule %s failed: %s", schedule.name, exc)
            return False
        published = [
            r["key"]
            for r in report.get("results", [])
            if RefreshStatus(r["status"]) is RefreshStatus.SUCCEEDED
        ]
        for result in report.get("results", []):
            if not result["ok"]:
                log.error("schedule %s: %s: %s", schedule.name, result["key"], result["error"])
        if published:
            log.info("schedule %s published %s: reloading", schedule.name, ", ".join(published))
            location.reload()
        return bool(published)

    return run


def run_scheduler(scheduler: Scheduler, stop: threading.Event, interval: float = 1.0) -> None:
    """Tick ``scheduler`` with the wall clock until ``stop``."""
    while not stop.wait(interval):
        try:
            scheduler.tick(datetime.now(UTC))
        except Exception:  # one bad run must not stop the schedules of a long-lived server
            log.exception("scheduler tick failed; schedules keep running")


def describe_schedules(location: CodeLocation) -> dict[str, Any]:
    """The project's schedules with their next run (from ``pyproject.toml``, read now).

    ``running`` is False in dev mode, where schedules are listed but not run.
    """
    try:
        schedules = load_schedules(load_project_config(location.project_root))
    except DefstateError as exc:
        return {"running": not location.dev, "error": str(exc), "schedules": []}
    now = datetime.now(UTC)
    rows = [s.to_json_dict(now) for s in schedules.values()]
    return {"running": not location.dev, "error": None, "schedules": rows}
