"""Baselines: the benchmarked work done with the standard library alone, no defstate.

    python bench/plain.py list PROJECT                  # like `defstate list defs --json`
    python bench/plain.py refresh io|cpu N SECONDS ITERATIONS OUT_DIR
    python bench/plain.py refresh-instant N K OUT_DIR   # like `defstate state refresh` of
                                                        # N instant components, local state

``list`` reads every local state file with plain ``json.load`` and prints the assets;
``refresh`` is the ideal refresh: every I/O wait at once (one thread per component), or the
CPU work spread over one process per core. ``refresh-instant`` is the floor under a refresh
of components that return at once: each key's state (the same JSON as the generated
component's) written atomically, a temporary file renamed into place, one folder per key.
Run as a script, so nothing else is imported.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def plain_assets(project: str) -> list[dict[str, Any]]:
    """Read every state file of a generated local project and make one row per asset."""
    state_root = os.path.join(project, "defs", ".local_defs_state")
    assets = []
    for entry in sorted(os.scandir(state_root), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        with open(os.path.join(entry.path, "state"), "rb") as handle:
            rows = json.load(handle)
        group = entry.name
        for row in rows:
            assets.append(
                {
                    "key": f"{group}/{row['name']}",
                    "deps": row["deps"],
                    "group": group,
                    "kinds": row["kinds"],
                    "metadata": {"rows": row["rows"]},
                }
            )
    return assets


def burn(iterations: int) -> int:
    """The CPU work of the generated component's ``cpu`` mode (kept identical)."""
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def refresh(mode: str, n: int, io_seconds: float, iterations: int, out: str) -> None:
    import time

    def write(index: int) -> None:
        with open(os.path.join(out, f"{index}.json"), "w") as handle:
            json.dump([index], handle)

    if mode == "io":
        import threading

        def one(index: int) -> None:
            time.sleep(io_seconds)
            write(index)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as pool:
        for index, _ in enumerate(pool.map(burn, [iterations] * n)):
            write(index)


def make_state(name: str, upstream: str | None, assets: int) -> list[dict[str, Any]]:
    """The state of a generated component (``bench.generate`` copies this source into it)."""
    rows = []
    for i in range(assets):
        deps = [f"{name}/t{j:03d}" for j in (i - 1, i - 2) if j >= 0]
        if i == 0 and upstream:
            deps.append(f"{upstream}/t000")
        rows.append({"name": f"t{i:03d}", "deps": deps, "kinds": ["table"], "rows": i * 100})
    return rows


def refresh_instant(n: int, assets: int, out: str) -> None:
    """Write N states atomically: a temporary file in the key's folder, renamed into place."""
    for index in range(n):
        name = f"c{index:05d}"
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        upstream = f"c{index - 1:05d}" if index else None
        tmp = os.path.join(folder, f".tmp-{os.getpid()}")
        with open(tmp, "w") as handle:
            json.dump(make_state(name, upstream, assets), handle)
        os.replace(tmp, os.path.join(folder, "state"))


def main(argv: list[str]) -> None:
    if argv[0] == "list":
        assets = sorted(plain_assets(argv[1]), key=lambda a: str(a["key"]))
        sys.stdout.write(json.dumps({"assets": assets}, indent=2) + "\n")
    elif argv[0] == "refresh":
        import tempfile

        os.makedirs(argv[5], exist_ok=True)
        out = tempfile.mkdtemp(dir=argv[5])
        refresh(argv[1], int(argv[2]), float(argv[3]), int(argv[4]), out)
    elif argv[0] == "refresh-instant":
        import tempfile

        os.makedirs(argv[3], exist_ok=True)
        refresh_instant(int(argv[1]), int(argv[2]), tempfile.mkdtemp(dir=argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
