"""Loads in worker processes: the protocol between a code location and its workers.

The server starts ``python -m defstate --project P worker load [options]``; the worker runs
``load_defs`` and prints one JSON document (the ``list defs --json`` document plus components,
fingerprints, refresh results and timing). A worker that exits non-zero or prints no document
is a failed load; a load with component errors is a successful load with errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.errors import WorkerError
from defstate.loader.gc_pause import paused_gc
from defstate.loader.load import LoadResult, load_defs
from defstate.redaction import redact_data
from defstate.state_storage.state_info import StateInfo


def load_document(
    project_root: Path | None,
    *,
    dev: bool,
    state_info: StateInfo | None,
    unchanged_since: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Run a load in this process and return the worker document (called in the worker)."""
    start = time.perf_counter()
    result: LoadResult = load_defs(
        project_root,
        dev=dev,
        state_info=state_info,
        unchanged_since=unchanged_since,
        trigger="dev" if dev else "serve",
    )
    with paused_gc:
        document = result.to_json_dict()
        document["components"] = result.project.components_json()
        document["fingerprints"] = dict(result.fingerprints)
        document["refreshes"] = [r.to_json_dict() for r in result.refreshes]
    document["seconds"] = round(time.perf_counter() - start, 3)
    # this process expanded the templates, so it knows the secrets the server never sees
    return redact_data(document)  # type: ignore[no-any-return]


@attrs.frozen
class WorkerLoad:
    """One load, as produced by a worker process."""

    document: Mapping[str, Any]
    generation: int
    loaded_at: float

    @property
    def state_info(self) -> StateInfo:
        return StateInfo.from_json_dict(self.document["state"])

    @property
    def fingerprints(self) -> dict[str, str]:
        return dict(self.document.get("fingerprints", {}))


@attrs.define
class WorkerPool:
    """Starts worker processes and remembers the running ones, to end them on shutdown."""

    project_root: Path
    timeout: float = 600.0
    _running: set[subprocess.Popen[bytes]] = attrs.field(factory=set, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def run_load(
        self,
        *,
        dev: bool = False,
        state_info: StateInfo | None = None,
        unchanged_since: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run one load in a fresh worker process and return its document."""
        with tempfile.TemporaryDirectory(prefix="defstate-worker-") as tmp:
            args = [sys.executable, "-m", "defstate", "--project", str(self.project_root)]
            args += ["worker", "load", "--output", str(Path(tmp) / "load.json")]
            if dev:
                args.append("--dev")
            if state_info is not None:
                pin = Path(tmp) / "pin.json"
                pin.write_text(state_info.to_json())
                args += ["--state-info", str(pin)]
            if unchanged_since is not None:
                previous = Path(tmp) / "fingerprints.json"
                previous.write_text(json.dumps(dict(unchanged_since)))
                args += ["--unchanged-since", str(previous)]
            returncode, _, stderr = self.run_command(args)
            output = Path(tmp) / "load.json"
            if returncode != 0 or not output.exists():
                raise WorkerError(
                    f"load failed in worker process: {_last_line(stderr, returncode)}"
                )
            document: dict[str, Any] = json.loads(output.read_text())
            return document

    def run_schedule(self, name: str) -> dict[str, Any]:
        """Run ``defstate schedule run NAME --json`` in a worker; returns its report."""
        return self.run_json(["schedule", "run", name, "--json"], f"schedule {name}")

    def run_json(self, command: list[str], what: str, module: str = "defstate") -> dict[str, Any]:
        """Run ``python -m MODULE --project P COMMAND`` in a worker; returns the JSON document
        it prints (also when it exits non-zero, as ``state refresh`` does for failed keys)."""
        args = [sys.executable, "-m", module, "--project", str(self.project_root), *command]
        returncode, stdout, stderr = self.run_command(args)
        try:
            report: dict[str, Any] = json.loads(stdout)
        except ValueError:
            raise WorkerError(
                f"{what} failed in worker process: {_last_line(stderr, returncode)}"
            ) from None
        return report

    def run_command(self, args: list[str]) -> tuple[int, str, str]:
        """Run a worker process to completion: ``(returncode, stdout, stderr)``."""
        with self._lock:
            if self._closed:
                raise WorkerError("the code location is shutting down")
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_worker_environment(),
            )
            self._running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise WorkerError(f"worker timed out after {self.timeout:.0f}s") from None
        finally:
            with self._lock:
                self._running.discard(process)
        return process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")

    def close(self) -> None:
        """Stop accepting work and end running workers (no orphans)."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _last_line(stderr: str, returncode: int) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {returncode}"


def _worker_environment() -> dict[str, str]:
    """The server's environment, plus its import path: a worker must import what the server
    imports, also where that is not a plain install (e.g. inside a zipapp PEX)."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = list(dict.fromkeys([*(p for p in sys.path if p), *inherited]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(paths)}
