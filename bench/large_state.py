"""Peak memory of publishing and downloading a large state (guarantee 6 of docs/reliability.md).

``python -m bench.large_state [--mb 200] [--backends file,s3]`` publishes a file state and a
directory state of ``--mb`` megabytes, then downloads each in a fresh process with an empty
cache and verifies each (``state verify``'s streamed sha256), and reports the peak RSS above
the process's baseline (its RSS once defstate and the storage client are imported and the
storage is opened, before the state is touched). The baseline row is that process's own RSS.
``child`` is the measured process (internal).

The state bytes are pseudo-random (incompressible), generated 1 MiB at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = "Big[state]"
MIB = 1024 * 1024


def _rss_kb() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` (getrusage's ``ru_maxrss`` survives exec on
    Linux, so a child of a large parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _fill(path: Path, mb: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as handle:
        for i in range(mb):
            handle.write(block[i % 251 :] + block[: i % 251])  # every MiB different


def make_state(workdir: Path, kind: str, mb: int) -> Path:
    """A file of ``mb`` MiB, or a directory of four files of ``mb / 4`` MiB each."""
    state = Path(tempfile.mkdtemp(dir=workdir)) / "state"
    if kind == "file":
        _fill(state, mb)
    else:
        state.mkdir()
        for i in range(4):
            _fill(state / f"part-{i}.bin", max(1, mb // 4))
    return state


def child(operation: str, url: str, kind: str, mb: int, workdir: Path, version: str) -> None:
    from defstate.state_storage.cache import DownloadCache
    from defstate.state_storage.versioned import VersionedStateStorage

    storage = VersionedStateStorage(url)
    storage.latest(KEY)  # opens the file system: its client is part of the baseline
    storage._cache = DownloadCache(Path(tempfile.mkdtemp(dir=workdir)))
    result: dict[str, Any] = {}
    if operation == "publish":
        state = make_state(workdir, kind, mb)
        baseline = _rss_kb()
        start = time.perf_counter()
        published = storage.publish(KEY, state, {}, Path(tempfile.mkdtemp(dir=workdir)))
        result["version"] = published.version.to_json_dict()
    else:
        from defstate.state_storage.state_info import StateVersion

        stored = StateVersion.from_json_dict(KEY, json.loads(version))
        baseline = _rss_kb()
        start = time.perf_counter()
        if operation == "verify":  # what `state verify` does for each version
            if storage.stored_digest(stored) != (stored.size, stored.sha256):
                raise SystemExit(f"verify found other bytes than {version}")
        else:
            storage.state_path(stored)
    result.update(
        seconds=time.perf_counter() - start,
        baseline_kb=baseline,
        peak_kb=_rss_kb(),
        delta_mb=(_rss_kb() - baseline) / 1024,
    )
    print(json.dumps(result))


def run_child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.large_state", "child", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench child failed: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(url: str, kind: str, mb: int, workdir: Path) -> dict[str, Any]:
    """Publish one state, then download it and verify it (``state verify``); the three
    children's results."""
    published = run_child("publish", url, kind, str(mb), str(workdir), "")
    version = json.dumps(published["version"])
    results = {"publish": published}
    for operation in ("download", "verify"):
        results[operation] = run_child(operation, url, kind, str(mb), str(workdir), version)
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        operation, url, kind, mb, workdir, version = argv[1:7]
        child(operation, url, kind, int(mb), Path(workdir), version)
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--backends", default="file,s3")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "s3":
                from bench import s3

                with s3.moto_server() as endpoint:
                    os.environ.update(s3.s3_env(endpoint))
                    s3.create_bucket(endpoint, "large-state")
                    rows += _rows(backend, "s3://large-state/big", args.mb, workdir)
            else:
                rows += _rows(backend, f"file://{workdir}/store", args.mb, workdir)
    print(
        f"{'backend':8} {'state':10} {'operation':9} {'MiB':>5} {'seconds':>8} "
        f"{'baseline MiB':>12} {'peak +MiB':>9}"
    )
    for row in rows:
        print(
            f"{row['backend']:8} {row['kind']:10} {row['operation']:9} {row['mb']:5} "
            f"{row['seconds']:8.2f} {row['baseline_kb'] / 1024:12.1f} {row['delta_mb']:9.1f}"
        )
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (results / f"large-state-{stamp}.json").write_text(json.dumps(rows, indent=1))


def _rows(backend: str, url: str, mb: int, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for kind in ("file", "directory"):
        measured = measure(url, kind, mb, workdir)
        for operation, result in measured.items():
            rows.append(
                {
                    "backend": backend,
                    "kind": kind,
                    "operation": operation,
                    "mb": mb,
                    **{k: v for k, v in result.items() if k != "version"},
                }
            )
    return rows


if __name__ == "__main__":
    main()
