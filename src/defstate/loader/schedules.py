"""Scheduled refreshes, their one home: ``[tool.defstate.schedules.NAME]`` in ``pyproject.toml``.

A schedule names keys (exact or glob patterns), a 5-field cron expression, and optionally a
retry policy, a timeout and a guard for its refreshes. ``defstate schedule run NAME`` runs one
once, for any external scheduler; ``defstate serve`` runs them all with a :class:`Scheduler`
ticked by :func:`run_scheduler`, each run in a worker process (:func:`schedule_runner`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from defstate.components.attributes import construct
from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.errors import AttributeValueError, DefstateError, ProjectConfigError, SourceLocation
from defstate.loader.load import RefreshReport, refresh_state
from defstate.loader.project import ProjectConfig, load_project_config
from defstate.loader.refresh import RefreshOptions
from defstate.loader.refresh.results import RefreshStatus

log = logging.getLogger("defstate.server")  # scheduled runs are the server's events


@attrs.frozen(kw_only=True)
class ScheduleSettings:
    """The fields of one ``[tool.defstate.schedules.NAME]`` table."""

    cron: str
    keys: list[str] = attrs.field(factory=lambda: ["*"])
    retry: RetryPolicy | None = None
    timeout: float | None = None
    guard: RefreshGuard | None = None


@attrs.frozen
class Schedule:
    """A named schedule of refreshes."""

    name: str
    settings: ScheduleSettings

    def next_run(self, after: datetime) -> datetime:
        """The first run time strictly after ``after`` (timezone-aware in, aware out)."""
        from croniter import croniter

        value: datetime = croniter(self.settings.cron, after).get_next(datetime)
        return value

    def to_json_dict(self, now: datetime) -> dict[str, Any]:
        """``name``, ``cron``, ``keys`` and the ISO 8601 ``next_run`` after ``now``."""
        return {
            "name": self.name,
            "cron": self.settings.cron,
            "keys": self.settings.keys,
            "next_run": self.next_run(now).isoformat(),
        }

    @property
    def options(self) -> RefreshOptions:
        return RefreshOptions(
            trigger="schedule",
            retry=self.settings.retry,
            timeout=self.settings.timeout,
            guard=self.settings.guard,
        )


def load_schedules(config: ProjectConfig) -> dict[str, Schedule]:
    """Parse and validate every schedule of the project."""
    from croniter import croniter

    tables = config.schedules
    where = SourceLocation(config.pyproject)
    if not isinstance(tables, Mapping):
        raise ProjectConfigError("[tool.defstate.schedules] must be a table of tables", where)
    schedules = {}
    for name, table in tables.items():
        section = f"[tool.defstate.schedules.{name}]"
        if not isinstance(table, Mapping):
            raise ProjectConfigError(f"{section} must be a table", where)
        try:
            settings = construct(ScheduleSettings, table)
        except AttributeValueError as exc:
            raise ProjectConfigError(f"{section}: {exc.message}", where) from None
        if len(settings.cron.split()) != 5 or not croniter.is_valid(settings.cron):
            raise ProjectConfigError(
                f"{section}: cron {settings.cron!r} is not a valid 5-field cron expression", where
            )
        schedules[name] = Schedule(name, settings)
    return schedules


def get_schedule(project_root: Path | str | None, name: str) -> Schedule:
    schedules = load_schedules(load_project_config(project_root))
    if name not in schedules:
        known = ", ".join(sorted(schedules)) or "none"
        raise ProjectConfigError(f"no schedule named {name!r} (known schedules: {known})")
    return schedules[name]


def run_schedule(project_root: Path | str | None, name: str, *, wait: bool = True) -> RefreshReport:
    """Run one schedule once: refresh its keys with its policies (trigger ``schedule``)."""
    schedule = get_schedule(project_root, name)
    return refresh_state(
        project_root,
        keys=schedule.settings.keys,
        options=attrs.evolve(schedule.options, wait=wait),
    )


@attrs.define
class Scheduler:
    """Decides when schedules are due; the clock is injected so tests need not wait.

    ``tick(now)`` runs every schedule whose next run time has passed (once, however late) and
    plans its next run. ``run`` does the work and returns whether new versions were published.
    """

    schedules: Sequence[Schedule]
    run: Callable[[Schedule], Any]
    started_at: datetime
    _next: dict[str, datetime] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        for schedule in self.schedules:
            self._next[schedule.name] = schedule.next_run(self.started_at)

    def next_runs(self) -> dict[str, datetime]:
        return dict(self._next)

    def tick(self, now: datetime) -> list[str]:
        """Run the due schedules; returns their names."""
        ran = []
        for schedule in self.schedules:
            if self._next[schedule.name] <= now:
                self._next[schedule.name] = schedule.next_run(now)
                self.run(schedule)
                ran.append(schedule.name)
        return ran


def schedule_runner(
    run_in_worker: Callable[[str], Mapping[str, Any]], reload: Callable[[], object]
) -> Callable[[Schedule], bool]:
    """Run a schedule with ``run_in_worker(name)`` (a worker process's ``schedule run
    --json`` report); ``reload()`` the code location when it published anything."""

    def run(schedule: Schedule) -> bool:
        log.info("schedule %s: refreshing %s", schedule.name, ", ".join(schedule.settings.keys))
        try:
            report = run_in_worker(schedule.name)
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
            reload()
        return bool(published)

    return run


def run_scheduler(scheduler: Scheduler, stop: threading.Event, interval: float = 1.0) -> None:
    """Tick ``scheduler`` with the wall clock until ``stop``."""
    while not stop.wait(interval):
        try:
            scheduler.tick(datetime.now(UTC))
        except Exception:  # one bad run must not stop the schedules of a long-lived server
            log.exception("scheduler tick failed; schedules keep running")


def describe_schedules(project_root: Path, *, running: bool) -> dict[str, Any]:
    """The project's schedules with their next run (from ``pyproject.toml``, read now);
    ``running`` says whether this process runs them (a dev server lists them only)."""
    try:
        schedules = load_schedules(load_project_config(project_root))
    except DefstateError as exc:
        return {"running": running, "error": str(exc), "schedules": []}
    now = datetime.now(UTC)
    rows = [s.to_json_dict(now) for s in schedules.values()]
    return {"running": running, "error": None, "schedules": rows}
