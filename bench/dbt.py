"""dbt benchmarks: ``python -m bench.dbt [--models 800] [--repeat 3] [--workdir DIR]``.

Generates a dbt project of N models (sources -> staging -> intermediate -> marts, marts with
a custom schema, every model documented with two generic tests, every third with a
relationships test), wrapped in a defstate project with one ``DbtProjectComponent``, and
measures in fresh child processes:

* ``refresh full``: ``defstate state refresh`` with an empty partial-parse cache;
* ``refresh partial``: the same with the cache of the previous refresh, nothing changed;
  target: at most 60 % of the full refresh (the ratio of the medians);
* ``list defs``: ``defstate list defs --json --no-refresh`` (every asset and check);
  target: at most 0.5 s, next to the ``python -c pass`` start-up baseline.

Results are printed and saved to ``bench/results/dbt-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
SOURCES = 20
TABLES_PER_SOURCE = 10


def generate_dbt_project(root: Path, models: int) -> Path:
    """A defstate project at ``root`` holding a dbt project of ``models`` models."""
    dbt = root / "dbt" / "bench"
    (dbt / "models" / "staging").mkdir(parents=True)
    (dbt / "models" / "intermediate").mkdir()
    (dbt / "models" / "marts").mkdir()
    (dbt / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0.0'\nconfig-version: 2\nprofile: bench\n"
        "models:\n  bench:\n    staging: {+materialized: view}\n"
        "    marts: {+schema: marts, +materialized: table}\n"
    )
    (dbt / "profiles.yml").write_text(
        "bench:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: bench.duckdb}\n"
    )
    sources = ["version: 2", "sources:"]
    for s in range(SOURCES):
        sources += [f"  - name: src{s}", "    tables:"]
        sources += [f"      - name: t{t}" for t in range(TABLES_PER_SOURCE)]
    (dbt / "models" / "staging" / "sources.yml").write_text("\n".join(sources) + "\n")
    layers = [("staging", models // 4), ("intermediate", models * 3 // 8)]
    layers.append(("marts", models - sum(n for _, n in layers)))
    names: list[str] = []
    for layer, count in layers:
        docs = ["version: 2", "models:"]
        for _ in range(count):
            index = len(names)
            name = f"{layer[:3]}_{index:05d}"
            if layer == "staging":
                s, t = index % SOURCES, index % TABLES_PER_SOURCE
                body = f"select id, id as parent_id, 1 as v from {{{{ source('src{s}', 't{t}') }}}}"
            else:
                parents = [names[(index * 7 + k * 13) % len(names)] for k in range(1 + index % 3)]
                joins = " ".join(
                    f"cross join {{{{ ref('{p}') }}}} r{i}" for i, p in enumerate(parents)
                )
                body = f"select r0.id, r0.id as parent_id, 1 as v from (select 1) x {joins}"
            (dbt / "models" / layer / f"{name}.sql").write_text(body + "\n")
            docs += [
                f"  - name: {name}",
                f"    description: Model {index} of the {layer} layer.",
                "    columns:",
                "      - name: id",
                "        data_type: integer",
                "        data_tests: [unique, not_null]",
            ]
            if names and index % 3 == 0:
                docs += [
                    "      - name: parent_id",
                    "        data_tests:",
                    "          - relationships:",
                    f"              arguments: {{to: \"ref('{names[index // 2]}')\", field: id}}",
                ]
            names.append(name)
        (dbt / "models" / layer / f"_{layer}.yml").write_text("\n".join(docs) + "\n")
    (root / "pyproject.toml").write_text('[project]\nname = "dbtbench"\n\n[tool.defstate]\n')
    (root / "defs" / "dbt").mkdir(parents=True)
    (root / "defs" / "dbt" / "defs.yaml").write_text(
        "type: defstate.contrib.dbt.DbtProjectComponent\nattributes:\n  project_dir: dbt/bench\n"
        "  defs_state: {retry: {type: none}, timeout: 3600}\n"
    )
    return root


_CPU_SECONDS: list[float] = []  # user+sys of each timed child, in order


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one child; its CPU seconds go to ``_CPU_SECONDS`` (on a loaded
    machine the wall time is mostly waiting for a core, the CPU time is not)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU_SECONDS.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return seconds


def run(models: int, repeat: int, workdir: Path) -> dict[str, Any]:
    project = generate_dbt_project(workdir / "project", models)
    cache = workdir / "cache"
    env = {
        **os.environ,
        "DEFSTATE_CACHE_DIR": str(cache),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    defstate = [sys.executable, "-m", "defstate"]
    full: list[float] = []
    partial: list[float] = []
    for _ in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        full.append(_timed([*defstate, "state", "refresh"], project, env))
        partial.append(_timed([*defstate, "state", "refresh"], project, env))
    listed = subprocess.run(
        [*defstate, "list", "defs", "--json", "--no-refresh"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(listed.stdout)
    list_defs = [
        _timed([*defstate, "list", "defs", "--json", "--no-refresh"], project, env)
        for _ in range(max(5, repeat))
    ]
    list_defs_cpu = _CPU_SECONDS[-len(list_defs) :]
    startup = [_timed([sys.executable, "-c", "pass"], project, env) for _ in range(5)]
    ratio = statistics.median(partial) / statistics.median(full)
    return {
        "models": models,
        "assets": len(document["assets"]),
        "asset_checks": len(document["asset_checks"]),
        "rows": [
            {"op": "refresh full", "samples": full, "median": statistics.median(full)},
            {
                "op": "refresh partial",
                "samples": partial,
                "median": statistics.median(partial),
                "ratio_to_full": ratio,
                "target": "<= 0.60 of full",
                "passed": ratio <= 0.60,
            },
            {
                "op": "list defs",
                "samples": list_defs,
                "median": statistics.median(list_defs),
                "cpu_median": statistics.median(list_defs_cpu),
                "baseline_python_startup": statistics.median(startup),
                "target": "<= 0.5 s",
                "passed": statistics.median(list_defs) <= 0.5,
            },
        ],
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load": os.getloadavg(),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=800)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the generated project here")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="defstate-dbt-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.models, args.repeat, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{result['models']} models: {result['assets']} assets, {result['asset_checks']} checks")
    for row in result["rows"]:
        extra = ""
        if "ratio_to_full" in row:
            extra = f"  ratio {row['ratio_to_full']:.2f} (target {row['target']})"
        if "baseline_python_startup" in row:
            startup = row["baseline_python_startup"]
            cpu = row["cpu_median"]
            extra = f"  (cpu {cpu:.3f} s, python start-up {startup:.3f} s; target {row['target']})"
        status = "" if "passed" not in row else ("  ok" if row["passed"] else "  MISSED")
        print(f"{row['op']:<16} median {row['median']:.3f} s{extra}{status}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out_dir / f"dbt-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
