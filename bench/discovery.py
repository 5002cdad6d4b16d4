"""Discovery alone (find, parse and instantiate every defs.yaml), before/after, fresh processes.

    python -m bench.discovery [--before OLD/src] [--after src] [--n 1000] [--k 20] [--repeat 5]

Each sample is a new interpreter that imports defstate, then times one `discover_components` of
the generated project (CPU and wall, the garbage collector paused as a load pauses it): the
first discovery of a process, as every CLI command makes it, component module import included.
Variants, interleaved in every round after a discarded warm-up: *after* with its parse cache
warm (the steady state), *after* with `DEFSTATE_PARSE_CACHE=0` (every file parsed: a fresh
machine or container), and *before* (``--before``, the `src` folder of an older checkout).
The parse cache lives in a temporary `DEFSTATE_CACHE_DIR`, one per tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.generate import generate
from bench.run import PYCACHE, REPO

CHILD = """
import gc, json, sys, time
from pathlib import Path
from defstate.loader.discovery import discover_components
from defstate.loader.project import load_project_config
config = load_project_config(Path(sys.argv[1]))
gc.disable()
cpu, wall = time.process_time(), time.perf_counter()
found = discover_components(config)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
assert not found.errors, found.errors[:3]
print(json.dumps({"cpu": cpu, "wall": wall, "instances": len(found.instances)}))
"""


def _sample(src: Path, project: Path, env: dict[str, str]) -> tuple[float, float, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(project)],
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout.splitlines()[-1])
    return float(data["wall"]), float(data["cpu"]), int(data["instances"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="src folder of 'before'")
    parser.add_argument("--after", type=Path, default=REPO / "src")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="defstate-discovery-"))
    project = generate(work / "project", args.n, k=args.k)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFSTATE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # like a normal install (see bench/README.md)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    # a cache folder per tree: a tree with a parse cache of another version (another stamp)
    # would replace the other's file at every sample, and neither would ever be warm
    after_env = {**env, "DEFSTATE_CACHE_DIR": str(work / "cache-after")}
    variants = {
        "after, parse cache warm": (args.after.resolve(), after_env),
        "after, parse cache off": (
            args.after.resolve(),
            {**after_env, "DEFSTATE_PARSE_CACHE": "0"},
        ),
    }
    if args.before:
        variants["before"] = (
            args.before.resolve(),
            {**env, "DEFSTATE_CACHE_DIR": str(work / "cache-before")},
        )
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    load_start = os.getloadavg()
    for round_index in range(args.repeat + 1):  # the first round is a discarded warm-up
        for name, (src, variant_env) in variants.items():
            wall, cpu, instances = _sample(src, project, variant_env)
            assert instances == args.n, (name, instances)
            if round_index:
                samples[name].append((wall, cpu))
    load_end = os.getloadavg()
    print(
        f"discover_components, N={args.n}, {args.repeat} rounds, load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end"
    )
    for name, runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:<26} wall {wall * 1000:6.1f} ms  CPU {cpu * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
