"""A live display of running refreshes (one line per key), for terminals."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from defstate.loader.refresh import RefreshListener, RefreshResult


@contextlib.contextmanager
def refresh_progress() -> Iterator[RefreshListener]:
    """Yield a listener that shows each key as running, done or failed.

    Transient: the display disappears when done, leaving room for the summary lines.
    """
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from defstate.cli.render import console

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),  # keys are text, never markup
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def listener(key: str, result: RefreshResult | None) -> None:
        if result is None:
            tasks[key] = progress.add_task(f"{key} (refreshing)", total=1)
        else:
            task = tasks[key]
            status = "done" if result.ok else "failed"
            progress.update(task, description=f"{key} ({status})", completed=1)

    with progress:
        yield listener
