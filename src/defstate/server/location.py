"""A code location: one current load, swapped atomically on reload."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from defstate.errors import DefstateError
from defstate.server.protocol import HealthStatus, LoadDocument
from defstate.server.worker import WorkerLoad, WorkerPool
from defstate.state_storage.management import ManagementType
from defstate.state_storage.state_info import utc_iso

if TYPE_CHECKING:
    from defstate.state_storage.pins import LivePins

log = logging.getLogger("defstate.server")

ReloadListener = Callable[[WorkerLoad | None, WorkerLoad | None, str | None], None]
"""Called after each reload with ``(previous, new, error)``; ``new`` is None on failure."""


@attrs.define
class CodeLocation:
    """Holds the current load of a project and replaces it as a whole.

    Readers take ``current`` once per request: a single reference read, so every answer comes
    from one load, never a mix. Reloads run one at a time in worker processes; a failed reload
    keeps the previous load and records the error for ``health()``.

    Outside dev mode a reload whose load has errors the serving load did not have is not
    swapped in either: the location keeps serving what works and ``health()`` says
    ``degraded`` with those errors. In dev mode the new load is shown (the developer is
    fixing it), and ``health()`` says ``degraded`` while it has load errors.

    The versions of the served load are recorded as live pin records in the state storage
    (renewed while the location runs), so ``state gc`` never deletes them.
    """

    project_root: Path
    dev: bool = False
    refresh_always: bool = False
    listener: ReloadListener | None = None
    pool: WorkerPool = attrs.field(init=False)
    current: WorkerLoad | None = attrs.field(default=None, init=False)
    last_error: str | None = attrs.field(default=None, init=False)
    last_reload_at: float | None = attrs.field(default=None, init=False)
    rejected_errors: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    live_pins: LivePins | None = attrs.field(default=None, init=False)
    _generation: int = attrs.field(default=0, init=False)
    _reload_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _pending: threading.Event = attrs.field(factory=threading.Event, init=False)

    def __attrs_post_init__(self) -> None:
        self.pool = WorkerPool(self.project_root)

    def reload(self) -> WorkerLoad | None:
        """Build a new load in a worker and swap it in; returns it, or None on failure."""
        with self._reload_lock:
            previous = self.current
            unchanged_since = None
            if self.dev and previous is not None and not self.refresh_always:
                unchanged_since = previous.fingerprints
            started = time.perf_counter()
            try:
                document = self.pool.run_load(dev=self.dev, unchanged_since=unchanged_since)
            except DefstateError as exc:
                self.last_error = str(exc)
                self.last_reload_at = time.time()
                if self.listener:
                    self.listener(previous, None, self.last_error)
                else:
                    log.error("reload failed, still serving the previous load: %s", exc)
                return None
            # what a user waits for: starting the worker, the load, reading its document
            document = attrs.evolve(
                document,
                load_seconds=document.seconds,
                seconds=round(time.perf_counter() - started, 3),
            )
            new_errors = _new_errors(previous, document)
            if new_errors and previous is not None and not self.dev:
                return self._keep_serving(previous, new_errors)
            self._generation += 1
            load = WorkerLoad(document, self._generation, time.time())
            self.current = load  # the atomic swap
            self.last_error = None
            self.rejected_errors = []
            self.last_reload_at = load.loaded_at
            self._pin(load)
            if self.listener:
                self.listener(previous, load, None)
            return load

    def _keep_serving(
        self, previous: WorkerLoad, new_errors: list[dict[str, Any]]
    ) -> WorkerLoad | None:
        """A reload that broke something the serving load had: keep serving that one."""
        self.rejected_errors = new_errors
        self.last_error = (
            f"the reloaded definitions have {len(new_errors)} new error(s); still serving "
            f"generation {previous.generation}: "
            + "; ".join(_describe_error(e) for e in new_errors)
        )
        self.last_reload_at = time.time()
        if self.listener:
            self.listener(previous, None, self.last_error)
        else:
            log.error("%s", self.last_error)
        return None

    def _pin(self, load: WorkerLoad) -> None:
        """Record the served versions as live pins (never fails a reload)."""
        from defstate.state_storage.registry import storage_class

        kept = [
            v
            for v in load.state_info.versions.values()
            if storage_class(v.management_type).keeps_versions
        ]
        if not kept and self.live_pins is None:
            return
        try:
            if self.live_pins is None:
                from defstate.loader.project import load_project_config
                from defstate.loader.storage import StateStorages
                from defstate.state_storage.base import version_store
                from defstate.state_storage.pins import LivePins

                config = load_project_config(self.project_root)
                storage = version_store(
                    StateStorages(config).get(kept[0].management_type, "the code location")
                )
                if storage is None:
                    return
                self.live_pins = LivePins(storage)
            self.live_pins.hold(
                {v.key: [v.version] for v in kept}, purpose="dev" if self.dev else "serve"
            )
        except Exception as exc:  # gc's grace period still protects recent versions
            log.warning("could not record the live pins of the served load: %s", exc)

    def request_reload(self) -> None:
        """Reload in the background; requests arriving during a reload coalesce into one."""
        if self._pending.is_set():
            return
        self._pending.set()

        def run() -> None:
            with self._reload_lock:
                self._pending.clear()
            self.reload()

        threading.Thread(target=run, name="defstate-reload", daemon=True).start()

    def reconstruct(self) -> LoadDocument:
        """Load in a fresh worker from the current load's pin (what a run worker would see)."""
        load = self.current
        if load is None:
            raise DefstateError("no load yet")
        return self.pool.run_load(state_info=load.state_info)

    def health(self) -> dict[str, Any]:
        load = self.current
        errors = list(load.document.errors) if load else []
        # a failed refresh that kept the previous state is a warning, not a broken load
        broken = [e for e in errors if e.get("kind") != "refresh"]
        healthy = load is not None and self.last_error is None and not broken
        return {
            "status": HealthStatus.OK if healthy else HealthStatus.DEGRADED,
            "generation": load.generation if load else None,
            "loaded_at": utc_iso(load.loaded_at) if load else None,
            "assets": len(load.document.assets) if load else 0,
            "load_errors": len(errors),
            "errors": errors,
            "rejected_reload_errors": self.rejected_errors,
            "last_reload_error": self.last_error,
            "last_reload_at": utc_iso(self.last_reload_at) if self.last_reload_at else None,
            "dev": self.dev,
        }

    def pins(self) -> dict[str, str]:
        """``{key: pinned version}`` of the current load."""
        load = self.current
        if load is None:
            return {}
        return {key: version.version for key, version in load.state_info.versions.items()}

    def key_management_types(self) -> dict[str, ManagementType]:
        """The management type of each state key of the current load."""
        load = self.current
        if load is None:
            return {}
        return {
            row["key"]: ManagementType(row["management_type"])
            for row in load.document.components
            if row["key"] is not None and row["management_type"] is not None
        }

    def close(self) -> None:
        if self.live_pins is not None:
            self.live_pins.close()
        self.pool.close()


def _error_identity(error: dict[str, Any]) -> tuple[Any, ...]:
    return (error.get("file"), error.get("component"), error.get("key"), error.get("message"))


def _new_errors(previous: WorkerLoad | None, document: LoadDocument) -> list[dict[str, Any]]:
    """Errors of ``document`` that the ``previous`` load did not have."""
    known = {_error_identity(e) for e in previous.document.errors} if previous else set()
    return [e for e in document.errors if _error_identity(e) not in known]


def _describe_error(error: dict[str, Any]) -> str:
    where = f"{error['file']}:{error['line']}" if error.get("file") else error.get("component")
    key = f"[{error['key']}] " if error.get("key") else ""
    return f"{where + ': ' if where else ''}{key}{error.get('message')}"
