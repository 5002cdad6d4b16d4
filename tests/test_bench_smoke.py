"""A smoke run of the benchmark harness (bench/): it runs and records sane figures.

Behaviour only, never timing: the benchmarks themselves run with `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.slow  # dozens of child processes and a moto server

PER_SIZE_OPS = {
    "list defs (process)",
    "load local",
    "load warm file://",
    "refresh io",
    "refresh cpu",
    "refresh instant",
}
S3_OPS = {"load warm s3", "load cold s3", "warm init load s3"}  # S3: at the largest size only


def test_bench_smoke_run_writes_results(tmp_path: Path) -> None:
    out_dir = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out-dir", str(out_dir)],
        cwd=REPO_ROOT,
        env=subprocess_env({"PYTHONPATH": str(REPO_ROOT)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "defstate benchmarks" in done.stdout  # the table was printed

    (results,) = out_dir.glob("*.json")
    document = json.loads(results.read_text())
    assert document["settings"]["sizes"] == [1, 5]
    assert document["machine"]["cpus"] >= 1
    rows = {(row["op"], row["n"]): row for row in document["rows"]}
    expected = {(op, n) for op in PER_SIZE_OPS for n in (1, 5)} | {(op, 5) for op in S3_OPS}
    expected |= {
        ("import attrs", None),
        ("import dependencies", None),
        ("import defstate", None),
        ("import component API", None),
        ("heavy imports", None),
        ("list defs N=5/N=1", None),
    }
    assert set(rows) == expected

    for (op, n), row in rows.items():
        if n is None:
            continue
        assert row["samples"] and all(s > 0 for s in row["samples"]), (op, n, row)
        assert row["median"] > 0 and row["rss_mb"] > 5, (op, n, row)
        assert row["baseline_seconds"] > 0 and row["ratio"] > 0, (op, n, row)
    imported = rows[("import defstate", None)]
    assert imported["median"] > imported["baseline_seconds"] > 0
    # pinned warm loads must not touch storage, whatever the speed
    for op in ("load warm file://", "load warm s3"):
        assert rows[(op, 5)]["checks"]["no_storage_reads"] is True
    assert rows[("heavy imports", None)]["passed"] is True, rows[("heavy imports", None)]
    assert document["setup_seconds"]
