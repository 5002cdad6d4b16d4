"""Scheduled refreshes: ``[tool.defstate.schedules.NAME]`` in ``pyproject.toml``.

A schedule names keys (exact or glob patterns), a 5-field cron expression, and optionally a
retry policy, a timeout and a guard for its refreshes. ``defstate serve`` runs them in-process;
``defstate schedule run NAME`` runs one once, for any external scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from defstate.components.attributes import construct
from defstate.components.policies import RefreshGuard, RetryPolicy
from defstate.errors import AttributeValueError, ProjectConfigError, SourceLocation
from defstate.loader.load import RefreshReport, refresh_state
from defstate.loader.project import ProjectConfig, load_project_config
from defstate.loader.refresh import RefreshOptions


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
