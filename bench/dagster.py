"""`dg list defs --json` of the bench project: through defstate's adapter vs Dagster's own.

    python -m bench.dagster [--sizes 100,1000] [--repeat 3] [--workdir DIR]

For each N it generates the bench project (``bench.generate``: N components x 20 assets) and
refreshes its state; wraps it in a dg project whose one ``defs.yaml`` is a
``defstate.contrib.dagster.DefstateProjectComponent``; generates the same project as Dagster
``StateBackedComponent``s (``bench.dagster_native``) and refreshes it with
``dg utils refresh-defs-state``. Then it times whole ``dg list defs --json`` processes of both
(medians; the first run of each is a discarded warm-up) and checks both list N x 20 assets.
Refreshes are off in both (``DEFSTATE_DEPLOY=1``; ``refresh_if_dev: false``): only loading is
timed. Results go to ``bench/results/dagster-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dagster_native, generate

BIN = Path(sys.executable).parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ADAPTER_PACKAGE = "dgadapter"
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def adapter_project(root: Path, defstate_project: Path) -> Path:
    """A dg project that includes ``defstate_project`` through the component."""
    defs = dagster_native.write_dg_package(root, ADAPTER_PACKAGE)
    (defs / "bench").mkdir()
    (defs / "bench" / "defs.yaml").write_text(
        "type: defstate.contrib.dagster.DefstateProjectComponent\n"
        f"attributes:\n  project: {defstate_project}\n"
    )
    return root


def environment(workdir: Path) -> dict[str, str]:
    home = workdir / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFSTATE_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(home)
    # Bytecode cached as after a normal install (this sandbox sets PYTHONDONTWRITEBYTECODE).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "defstate-bench-pycache")
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def time_list_defs(
    project: Path, env: dict[str, str], expected_assets: int, repeat: int
) -> list[float]:
    samples = []
    for attempt in range(repeat + 1):
        seconds, stdout = run([str(BIN / "dg"), "list", "defs", "--json"], project, env)
        listed = len(json.loads(stdout)["assets"])
        if listed != expected_assets:
            raise RuntimeError(f"{project}: dg listed {listed} assets, not {expected_assets}")
        if attempt:  # the first run is a warm-up
            samples.append(seconds)
    return samples


def measure(n: int, k: int, repeat: int, workdir: Path) -> dict[str, Any]:
    env = environment(workdir)
    defstate_project = generate.generate(workdir / f"defstate-{n}", n, k=k)
    run([str(BIN / "defstate"), "state", "refresh"], defstate_project, env)
    adapter = adapter_project(workdir / f"dg-adapter-{n}", defstate_project)
    native = dagster_native.generate(workdir / f"dg-native-{n}", n, k=k)
    # the generated dg packages are not installed: importable from their folders
    native_env = {**env, "PYTHONPATH": str(native)}
    run([str(BIN / "dg"), "utils", "refresh-defs-state"], native, native_env)
    adapter_env = {**env, "PYTHONPATH": str(adapter), "DEFSTATE_DEPLOY": "1"}  # load, no refresh
    adapter_samples = time_list_defs(adapter, adapter_env, n * k, repeat)
    native_samples = time_list_defs(native, native_env, n * k, repeat)
    adapter_median = statistics.median(adapter_samples)
    native_median = statistics.median(native_samples)
    return {
        "n": n,
        "assets": n * k,
        "adapter_seconds": adapter_samples,
        "native_seconds": native_samples,
        "adapter_median": adapter_median,
        "native_median": native_median,
        "ratio": adapter_median / native_median,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N")
    parser.add_argument("--k", type=int, default=20, help="assets per component")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--workdir", type=Path, help="keep the generated projects here")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="defstate-bench-dagster-") as scratch:
        workdir = args.workdir or Path(scratch)
        load_before = os.getloadavg()
        rows = [measure(n, args.k, args.repeat, workdir) for n in sizes]
    document = {
        "benchmark": "dg list defs --json: defstate adapter vs Dagster StateBackedComponents",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "repeat": args.repeat,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out_dir / f"dagster-{stamp}.json"
    out.write_text(json.dumps(document, indent=2))
    print("| N | assets | adapter (median) | Dagster components (median) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['n']} | {row['assets']} | {row['adapter_median']:.2f} s "
            f"| {row['native_median']:.2f} s | {row['ratio']:.2f} |"
        )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
