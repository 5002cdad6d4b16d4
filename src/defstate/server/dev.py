"""Dev mode: watch the project, reload on change, print one summary line per reload."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from defstate.keyed_diff import diff_by_key
from defstate.loader.folders import NOT_PROJECT_SOURCES
from defstate.loader.project import ProjectConfig
from defstate.server.worker import WorkerLoad
from defstate.text import plural

log = logging.getLogger("defstate.server")


def is_watched(config: ProjectConfig, path: Path) -> bool:
    """Python sources, ``pyproject.toml`` and anything in the defs folder; not state,
    caches, VCS folders or virtual environments."""
    try:
        relative = path.relative_to(config.root)
    except ValueError:
        return False
    folders = relative.parts[:-1]
    if any(part in NOT_PROJECT_SOURCES or part.endswith(".egg-info") for part in folders):
        return False
    if path.name == "pyproject.toml" and len(relative.parts) == 1:
        return True
    if path.name.startswith(".") or path.name.endswith(("~", ".swp", ".tmp")):
        return False  # editor and atomic-save temporaries
    if path.suffix == ".py":
        return True
    return path.is_relative_to(config.defs_dir)


def watch_and_reload(
    config: ProjectConfig,
    reload: Callable[[], Any],
    stop: threading.Event,
    ready: threading.Event | None = None,
    quiet_ms: int = 300,
) -> None:
    """Block, calling ``reload()`` after each burst of relevant changes, until ``stop``.

    ``ready`` is set once the watcher is running, so no edit made after it is missed.
    """
    import watchfiles  # only dev mode needs it

    def accept(change: watchfiles.Change, path: str) -> bool:
        return is_watched(config, Path(path))

    for changes in watchfiles.watch(
        config.root,
        watch_filter=accept,
        # A burst of saves is one reload: changes are collected until none arrive for
        # quiet_ms (at most 3 s of collecting, so a busy editor still gets reloads).
        step=quiet_ms,
        debounce=3000,
        stop_event=stop,
        raise_interrupt=False,
        rust_timeout=200,
        yield_on_timeout=True,  # an empty batch: the watcher is up
    ):
        if ready is not None:
            ready.set()
        if changes:
            try:
                reload()
            except Exception:  # keep watching: the next edit may fix it
                log.exception("reload failed; still watching for changes")


def _asset_map(load: WorkerLoad | None) -> dict[str, Any]:
    return {a["key"]: a for a in load.document.assets} if load else {}


def _relative(path: str, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return path


def summarize_reload(
    previous: WorkerLoad | None,
    new: WorkerLoad | None,
    error: str | None,
    root: Path | None = None,
) -> list[tuple[int, str, dict[str, Any]]]:
    """One summary record, then one per problem (with file and line where known, relative
    to ``root``): ``(level, message, fields)`` for :func:`defstate.server.logs.event`."""
    if new is None:
        return [
            (
                logging.ERROR,
                f"reload failed, still serving the previous load: {error}",
                {"event": "reload_failed", "error": error},
            )
        ]
    before, after = _asset_map(previous), _asset_map(new)
    added, removed, changed = diff_by_key(before, after)
    refreshed = [r["key"] for r in new.document.refreshes if r["ok"]]
    problems = new.document.errors
    seconds = new.document.seconds
    records: list[tuple[int, str, dict[str, Any]]] = [
        (
            logging.INFO,
            f"reloaded in {seconds:.2f}s: {plural(len(after), 'asset')} "
            f"(+{len(added)} -{len(removed)} ~{len(changed)}), "
            f"refreshed {plural(len(refreshed), 'key')}"
            f"{': ' + ', '.join(refreshed) if refreshed else ''}, "
            f"{plural(len(problems), 'problem')}",
            {
                "event": "reloaded",
                "seconds": seconds,
                "assets": len(after),
                "added": len(added),
                "removed": len(removed),
                "changed": len(changed),
                "refreshed": refreshed,
                "problems": len(problems),
            },
        )
    ]
    for problem in problems:
        where = (
            f"{_relative(problem['file'], root)}:{problem['line']}"
            if problem.get("file")
            else problem.get("component")
        )
        key = f"[{problem['key']}] " if problem.get("key") else ""
        level = logging.WARNING if problem.get("kind") == "refresh" else logging.ERROR
        records.append(
            (
                level,
                f"{where + ': ' if where else ''}{key}{problem['message']}",
                {"event": "problem", "key": problem.get("key"), "file": problem.get("file")},
            )
        )
    return records
