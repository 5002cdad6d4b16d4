"""Loads in worker processes, and the worker's entry point.

The server writes a :class:`~defstate.server.protocol.LoadRequest` and starts
``python -m defstate.server.worker REQUEST OUTPUT``; the worker runs ``load_defs`` and writes
one :class:`~defstate.server.protocol.LoadDocument` to OUTPUT. A worker that exits non-zero
or writes no document is a failed load; a load with component errors is a successful load
with errors.
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

from defstate.errors import DefstateError, WorkerError
from defstate.loader.gc_pause import freeze_before_exit, paused_gc
from defstate.loader.load import LoadResult, load_defs
from defstate.redaction import redact_data, redact_standard_streams
from defstate.server.protocol import LoadDocument, LoadRequest
from defstate.state_storage.atomic import write_atomic
from defstate.state_storage.state_info import StateInfo
from defstate.user_code import describe_exception


def load_document(request: LoadRequest) -> LoadDocument:
    """Run a load in this process and return its document (called in the worker)."""
    start = time.perf_counter()
    result: LoadResult = load_defs(
        request.project_root,
        dev=request.dev,
        state_info=request.state_info,
        unchanged_since=request.unchanged_since,
        trigger="dev" if request.dev else "serve",
    )
    with paused_gc:
        document = result.to_json_dict()
        document["components"] = result.project.components_json()
        document["fingerprints"] = dict(result.fingerprints)
        document["refreshes"] = [r.to_json_dict() for r in result.refreshes]
    document["seconds"] = round(time.perf_counter() - start, 3)
    # this process expanded the templates, so it knows the secrets the server never sees
    return LoadDocument.from_json_dict(redact_data(document))


def run_request(request_path: Path, output: Path) -> None:
    """Load what the request file asks and write the document to ``output`` atomically."""
    document = load_document(LoadRequest.from_json(request_path.read_text()))
    with paused_gc:
        text = document.to_json()
    write_atomic(output, text.encode())


def _as_load_document(value: LoadDocument | Mapping[str, Any]) -> LoadDocument:
    return LoadDocument.coerce(value)


@attrs.frozen
class WorkerLoad:
    """One load, as produced by a worker process."""

    document: LoadDocument = attrs.field(converter=_as_load_document)
    generation: int = 0
    loaded_at: float = 0.0

    @property
    def state_info(self) -> StateInfo:
        return self.document.state_info

    @property
    def fingerprints(self) -> dict[str, str]:
        return dict(self.document.fingerprints)


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
    ) -> LoadDocument:
        """Run one load in a fresh worker process and return its document."""
        request = LoadRequest(self.project_root, dev, state_info, unchanged_since)
        with tempfile.TemporaryDirectory(prefix="defstate-worker-") as tmp:
            request_path, output = Path(tmp) / "request.json", Path(tmp) / "load.json"
            request_path.write_text(request.to_json())
            args = [sys.executable, "-m", __name__, str(request_path), str(output)]
            returncode, _, stderr = self.run_command(args)
            if returncode != 0 or not output.exists():
                raise WorkerError(
                    f"load failed in worker process: {_last_line(stderr, returncode)}"
                )
            return LoadDocument.from_json(output.read_text())

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


def main(argv: list[str] | None = None) -> int:
    """``python -m defstate.server.worker REQUEST OUTPUT``: one load, written to OUTPUT."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2:
        print("usage: python -m defstate.server.worker REQUEST OUTPUT", file=sys.stderr)
        return 2
    redact_standard_streams()  # what user code prints here may hold expanded secrets
    try:
        run_request(Path(arguments[0]), Path(arguments[1]))
    except DefstateError as exc:
        # the server reports the last stderr line as the reason the load failed
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        print(f"error: {describe_exception(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    freeze_before_exit()  # the worker exits now: no collection over the load's objects
    sys.exit(code)
