"""Run the defstate benchmarks: ``python -m bench.run [--sizes 1,100,1000] [--repeat 5] [--quick]``.

Every figure is the median of repeated runs in fresh child processes, shown next to a baseline
measured in the same run (``python -c pass`` for start-up, plain ``json.load`` of the state
files for loads, ideal thread/process pools for refreshes) and the peak RSS of the child.
Results are printed as a table and saved to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import s3
from bench.generate import generate
from bench.plain import burn

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
PLAIN = REPO / "bench" / "plain.py"
PYCACHE = Path(tempfile.gettempdir()) / "defstate-bench-pycache"


@dataclass
class Settings:
    sizes: list[int]
    repeat: int = 5
    k: int = 20
    io_seconds: float = 0.2
    cpu_iterations: int = 200_000
    op_budget: float = 20.0  # stop repeating an operation after this many seconds
    max_refresh_seconds: float = 30.0  # skip a refresh size estimated to take longer
    s3: bool = True
    s3_sizes: list[int] | None = None  # the sizes with S3 benchmarks (default: every size)
    pyc: bool = True  # children write bytecode (to a private prefix), like a normal install
    warmup: bool = True  # one discarded run before the first samples of each operation


@dataclass
class Sample:
    seconds: float
    rss_kb: int
    data: dict[str, Any] = field(default_factory=dict)
    cpu: float | None = None  # the child's user + system time (whole processes only)


@dataclass
class Row:
    op: str
    n: int | None
    samples: list[float]
    rss_mb: float | None
    baseline: str = ""
    baseline_seconds: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    value: float | None = None  # the figure a target is checked against, when not the median
    checks: dict[str, Any] = field(default_factory=dict)
    cpu_samples: list[float] = field(default_factory=list)  # user + system s, whole processes
    baseline_cpu: float | None = None

    @property
    def cpu(self) -> float | None:
        return statistics.median(self.cpu_samples) if self.cpu_samples else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def ratio(self) -> float | None:
        median = self.median
        if median is None or not self.baseline_seconds:
            return None
        return median / self.baseline_seconds

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.median, "ratio": self.ratio, "cpu": self.cpu}


class ChildError(RuntimeError):
    pass


# Linux carries a process's peak RSS across exec, so a child forked from this (large) runner
# would report at least the runner's peak. A fresh, tiny launcher starts the measured process
# instead and reports its wall time, peak RSS (KiB), exit code and CPU time (user + system:
# the load of a shared machine moves it much less than the wall time).
_LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
cpu = usage.ru_utime + usage.ru_stime
with open(report, "w") as handle:
    handle.write(f"{wall} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {cpu}")
"""


def run_child(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str, float]:
    """Run ``argv`` (absolute executable) to completion: (wall s, peak RSS KiB, stdout,
    user + system CPU s)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, report.name, *argv]
        subprocess.run(launcher, cwd=cwd, env=env, stdout=out, stderr=err, check=True)
        wall, rss, code, cpu = report.read().split()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode()
        if code != "0":
            raise ChildError(f"{' '.join(argv)} exited {code}: {err.read().decode()[-2000:]}")
    return float(wall), int(rss), stdout, float(cpu)


def last_json(stdout: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return data


class Bench:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.rows: list[Row] = []
        self.setup: dict[str, float] = {}
        self._warmed: set[str] = set()
        self.started = time.perf_counter()
        self.loadavg_start = os.getloadavg()  # other work on the machine skews the figures
        defstate_bin = Path(sys.executable).with_name("defstate")
        self.defstate = (
            [str(defstate_bin)] if defstate_bin.exists() else [sys.executable, "-m", "defstate"]
        )

    # -- plumbing -------------------------------------------------------------------------

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEFSTATE_")}
        env["PYTHONPATH"] = str(REPO)
        if self.settings.pyc:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        env.update(extra or {})
        return env

    def worker(self, args: list[str], cwd: Path, env: dict[str, str]) -> Sample:
        """A worker operation: the time it measured inside, the child's peak RSS."""
        _, rss, stdout, _ = run_child([sys.executable, "-m", "bench.worker", *args], cwd, env)
        data = last_json(stdout)
        return Sample(float(data["seconds"]), rss, data)

    def process(self, argv: list[str], cwd: Path, env: dict[str, str]) -> Sample:
        """A whole process: wall time and peak RSS."""
        wall, rss, stdout, cpu = run_child(argv, cwd, env)
        return Sample(wall, rss, {"stdout": stdout}, cpu)

    def repeat(self, op: str, run: Callable[[], Sample], repeat: int | None = None) -> list[Sample]:
        """Run ``repeat`` samples (the first run of each op is a discarded warm-up), stopping
        early when the op's time budget is spent."""
        if self.settings.warmup and op not in self._warmed:
            self._warmed.add(op)
            run()
        samples: list[Sample] = []
        spent = 0.0
        for _ in range(repeat or self.settings.repeat):
            sample = run()
            samples.append(sample)
            spent += sample.seconds
            if spent + sample.seconds > self.settings.op_budget:
                break
        return samples

    def add(self, op: str, n: int | None, samples: list[Sample], **extra: Any) -> Row:
        rss = max(s.rss_kb for s in samples) / 1024 if samples else None
        row = Row(op, n, [s.seconds for s in samples], rss, **extra)
        row.cpu_samples = [s.cpu for s in samples if s.cpu is not None]
        self.rows.append(row)
        clock = time.perf_counter() - self.started
        print(f"  [{clock:5.0f} s] {op:<22} N={n!s:<5} median {row.median or 0:8.3f} s", flush=True)
        return row

    def project(self, name: str, n: int, **options: Any) -> Path:
        return generate(self.workdir / name, n, k=self.settings.k, **options)

    def refresh(self, project: Path, env: dict[str, str], *extra: str) -> Sample:
        """``defstate state refresh --json`` as a whole process; every key must succeed."""
        sample = self.process([*self.defstate, "state", "refresh", "--json", *extra], project, env)
        report = json.loads(sample.data.pop("stdout"))
        failed = [r for r in report["results"] if not r["ok"]] + report["errors"]
        if failed:
            raise ChildError(f"refresh in {project} failed: {failed[:3]}")
        sample.data["keys"] = len(report["results"])
        return sample

    def check_load(self, sample: Sample, n: int, what: str) -> Sample:
        if sample.data["errors"] or sample.data["assets"] != n * self.settings.k:
            raise ChildError(f"{what}: {sample.data}")
        return sample

    # -- operations -----------------------------------------------------------------------

    def measure_import(self) -> None:
        """Start-up: ``python -c pass`` vs ``import defstate`` vs the names a component module
        imports, interleaved (5x the usual repeats: they are quick and noisy). Two floors are
        measured too, not as targets: ``import attrs`` (a required dependency) and "import
        dependencies", every module ``import defstate`` needs before its own code runs."""
        env, cwd = self.env(), self.workdir
        codes = {
            "python -c pass": "pass",
            "import attrs": "import attrs",
            "import dependencies": "import attrs, pathlib, json, datetime, enum",
            "import defstate": "import defstate",
            "import component API": "from defstate import StateBackedComponent, AssetSpec, "
            "Definitions, ComponentLoadContext",
        }
        samples: dict[str, list[Sample]] = {op: [] for op in codes}
        for index in range(5 * self.settings.repeat + int(self.settings.warmup)):
            for op, code in codes.items():
                sample = self.process([sys.executable, "-c", code], cwd, env)
                if index or not self.settings.warmup:
                    samples[op].append(sample)
        base = _median(samples["python -c pass"])
        for op in (
            "import attrs",
            "import dependencies",
            "import defstate",
            "import component API",
        ):
            row = self.add(op, None, samples[op], baseline="python -c pass", baseline_seconds=base)
            assert row.median is not None
            row.value = row.median - base
            row.note = f"+{row.value * 1000:.0f} ms"
            if op == "import attrs":
                row.note += " (a required dependency)"
            if op == "import dependencies":
                row.note += " (attrs, pathlib, json, datetime, enum: the floor under defstate)"
            if op == "import defstate":
                row.target = "adds < 60 ms"
                row.passed = row.value < 0.060

    def measure_heavy_imports(self, project: Path) -> None:
        env = self.env()
        on_import = self.worker(["heavy-modules"], project, env)
        on_list = self.worker(
            ["heavy-modules", "--", "list", "defs", "--no-refresh", "--json"], project, env
        )
        heavy = sorted(set(on_import.data["heavy"]) | set(on_list.data["heavy"]))
        self.add(
            "heavy imports",
            None,
            [],
            target="none on import / list defs",
            passed=not heavy,
            note=", ".join(heavy) or "none",
        )

    def measure_loads(self, n: int, endpoint: str | None) -> None:
        env = self.env()
        local = self.project(f"local-{n}", n)
        self.measure_refresh_instant(local, n, env)
        if n == min(self.settings.sizes):
            self.measure_heavy_imports(local)

        base_cli = self.repeat(
            "baseline cli",
            lambda: self.process([sys.executable, str(PLAIN), "list", str(local)], local, env),
        )
        cli = self.repeat(
            "list defs",
            lambda: self.process(
                [*self.defstate, "list", "defs", "--no-refresh", "--json"], local, env
            ),
        )
        self.add(
            "list defs (process)",
            n,
            cli,
            baseline="json.load script",
            baseline_seconds=_median(base_cli),
            baseline_cpu=_median_cpu(base_cli),
        )
        base = _median(
            self.repeat(
                "baseline load", lambda: self.worker(["baseline-load", str(local)], local, env)
            )
        )
        loaded = self.repeat(
            "load local",
            lambda: self.check_load(self.worker(["load", str(local)], local, env), n, "load local"),
        )
        json_base = {"baseline": "json.load", "baseline_seconds": base}
        self.add("load local", n, loaded, **json_base)

        storage = self.workdir / f"storage-file-{n}"
        shutil.rmtree(storage, ignore_errors=True)
        self.measure_versioned(n, "file://", storage.as_uri(), env, json_base, storage=storage)
        if endpoint is not None and n in (self.settings.s3_sizes or [n]):
            s3.create_bucket(endpoint, f"bench-{n}")
            s3_env = self.env(s3.s3_env(endpoint))
            self.measure_versioned(n, "s3", f"s3://bench-{n}/state", s3_env, json_base, endpoint)

    def measure_refresh_instant(self, project: Path, n: int, env: dict[str, str]) -> None:
        """``defstate state refresh`` of N components that return at once, local state, cold
        (the state folder removed before each run), against ``plain.py refresh-instant``
        writing the same N states atomically; the project keeps the last run's state."""
        state = project / "defs" / ".local_defs_state"
        plain_out = self.workdir / f"plain-refresh-instant-{n}"
        plain = [sys.executable, str(PLAIN), "refresh-instant", str(n), str(self.settings.k)]
        trash = self.workdir / f"trash-refresh-instant-{n}"

        def baseline() -> Sample:
            move_aside(plain_out, trash)
            return self.process([*plain, str(plain_out)], project, env)

        def cold() -> Sample:
            move_aside(state, trash)
            return self.refresh(project, env)

        base = self.repeat("baseline refresh instant", baseline)
        samples = self.repeat("refresh instant", cold)
        shutil.rmtree(trash, ignore_errors=True)
        self.add(
            "refresh instant",
            n,
            samples,
            baseline="atomic-write script",
            baseline_seconds=_median(base),
            baseline_cpu=_median_cpu(base),
            note="local state, cold",
        )

    def measure_versioned(
        self,
        n: int,
        label: str,
        url: str,
        env: dict[str, str],
        json_base: dict[str, Any],
        endpoint: str | None = None,
        storage: Path | None = None,
    ) -> None:
        name = "s3" if endpoint else "file"
        project = self.project(
            f"versioned-{name}-{n}", n, management="VERSIONED_STATE_STORAGE", storage_url=url
        )
        env = {**env, "DEFSTATE_CACHE_DIR": str(self.workdir / f"cache-{name}-{n}")}
        shutil.rmtree(env["DEFSTATE_CACHE_DIR"], ignore_errors=True)
        start = time.perf_counter()
        self.refresh(project, env, "--concurrency", "16")
        self.setup[f"refresh instant {label} N={n} (concurrency 16)"] = time.perf_counter() - start
        pin = project / "pin.json"  # written by the first unpinned load
        unpinned = ["load", str(project), "--pin-out", str(pin)]
        fresh = self.workdir / f"cold-caches-{n}"
        if endpoint:
            cold = self.repeat(
                "load cold s3",
                lambda: self.check_load(
                    self.worker([*unpinned, "--fresh-cache", str(fresh)], project, env), n, "cold"
                ),
            )
            self.add("load cold s3", n, cold, note="latest pointers + downloads", **json_base)
            self.measure_warm_init(n, project, unpinned, env, json_base)
        else:
            self.check_load(self.worker(unpinned, project, env), n, "unpinned load")

        op = f"load warm {label}"
        warm = self.repeat(
            op,
            lambda: self.check_load(
                self.worker(["load", str(project), "--pin", str(pin)], project, env), n, op
            ),
        )
        row = self.add(op, n, warm, note="pinned", **json_base)
        # Reads no state bytes from storage: the same pinned load works with storage gone.
        with _storage_removed(storage, endpoint):
            sample = self.worker(["load", str(project), "--pin", str(pin)], project, env)
        offline = not sample.data["errors"] and sample.data["assets"] == n * self.settings.k
        row.checks["no_storage_reads"] = offline
        row.note = "pinned; " + ("no storage reads" if offline else "READS STORAGE")
        if not offline:
            row.passed = False

    def measure_warm_init(
        self,
        n: int,
        project: Path,
        unpinned: list[str],
        env: dict[str, str],
        json_base: dict[str, Any],
    ) -> None:
        """An unchanged project's initialization load (no pin, every version in the download
        cache): time, and the storage requests moto answered (issue 18: a few, not N)."""

        def load() -> Sample:
            with s3.counted_requests() as log:
                sample = self.check_load(self.worker(unpinned, project, env), n, "warm init")
            sample.data["requests"] = len(log.lines)
            return sample

        # Warm means this cache has seen this project's pointers too: the cold loads above
        # used caches of their own, and repeat() discards a warm-up only at the first size.
        self.check_load(self.worker(unpinned, project, env), n, "warm init")
        samples = self.repeat("warm init load s3", load)
        requests = max(s.data["requests"] for s in samples)
        row = self.add(
            "warm init load s3",
            n,
            samples,
            note=f"no pin, warm cache: {requests} storage requests",
            target="<= 5 requests",
            passed=requests <= 5,
            **json_base,
        )
        row.checks["requests"] = requests

    def measure_refreshes(self) -> None:
        burn_seconds = min(_timed(burn, self.settings.cpu_iterations) for _ in range(3))
        previous: dict[str, tuple[int, float]] = {}
        for n in self.settings.sizes:
            for mode in ("io", "cpu"):
                # 8 keys at once (the default concurrency) unless a measured size >= 10 says
                # otherwise; smaller sizes are all start-up and would overestimate
                estimate = n * (self.settings.io_seconds / 8 if mode == "io" else burn_seconds)
                if previous.get(mode, (0, 0.0))[0] >= 10:
                    estimate = previous[mode][1] * n / previous[mode][0]
                if estimate > self.settings.max_refresh_seconds:
                    self.add(f"refresh {mode}", n, [], note=f"skipped: estimated {estimate:.0f} s")
                    continue
                row = self.measure_refresh(n, mode)
                previous[mode] = (n, row.median or 0.0)
                if mode == "cpu":
                    row.note = f"{burn_seconds * 1000:.0f} ms CPU per key"

    def measure_refresh(self, n: int, mode: str) -> Row:
        """``defstate state refresh`` of N io- or cpu-bound components, default concurrency."""
        settings, env = self.settings, self.env()
        project = self.project(
            f"refresh-{mode}-{n}",
            n,
            mode=mode,
            io_seconds=settings.io_seconds,
            cpu_iterations=settings.cpu_iterations,
        )
        args = [sys.executable, str(PLAIN), "refresh", mode, str(n)]
        args += [str(settings.io_seconds), str(settings.cpu_iterations)]
        args += [str(self.workdir / f"plain-refresh-{mode}-{n}")]
        base = self.repeat(f"baseline refresh {mode}", lambda: self.process(args, project, env))
        samples = self.repeat(f"refresh {mode}", lambda: self.refresh(project, env))
        baseline = "all at once" if mode == "io" else f"{os.cpu_count()} processes"
        return self.add(
            f"refresh {mode}",
            n,
            samples,
            baseline=baseline,
            baseline_seconds=_median(base),
            baseline_cpu=_median_cpu(base),
        )

    # -- targets (issue 7) ----------------------------------------------------------------

    def apply_targets(self) -> None:
        rows = {(r.op, r.n): r for r in self.rows}
        big = max(self.settings.sizes)
        cli = rows.get(("list defs (process)", 1000))
        if cli and cli.median is not None and cli.rss_mb is not None:
            cli.target = "< 1.5 s, < 200 MB"
            cli.passed = cli.median < 1.5 and cli.rss_mb < 200
        sizes = sorted(self.settings.sizes)
        if len(sizes) >= 2:
            small, large = sizes[-2], sizes[-1]
            a, b = (
                rows.get(("list defs (process)", small)),
                rows.get(("list defs (process)", large)),
            )
            if a and b and a.median and b.median:
                limit = 1.2 * large / small
                scaling = b.median / a.median
                self.rows.append(
                    Row(
                        f"list defs N={large}/N={small}",
                        None,
                        [],
                        None,
                        target=f"<= {limit:.0f}x",
                        passed=scaling <= limit,
                        note=f"{scaling:.1f}x",
                        value=scaling,
                    )
                )
        local = rows.get(("load local", big))
        for op in ("load warm file://", "load warm s3"):
            warm = rows.get((op, big))
            if warm and local and warm.median and local.median:
                warm.value = warm.median / local.median
                warm.target = "<= 1.3x local, no reads"
                warm.passed = bool(warm.checks.get("no_storage_reads")) and warm.value <= 1.3
                warm.note = f"{warm.value:.2f}x local; {warm.note}"
        instant = rows.get(("refresh instant", 1000))
        if instant and instant.median is not None and instant.ratio is not None:
            instant.target = "<= 3x baseline, <= 1.0 s"
            instant.passed = instant.ratio <= 3.0 and instant.median <= 1.0
        refresh = rows.get(("refresh io", 100))
        if refresh and refresh.median is not None:
            refresh.target = "< 2 s"
            refresh.passed = refresh.median < 2.0

    # -- output ---------------------------------------------------------------------------

    def print_table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="defstate benchmarks (medians)", title_justify="left")
        columns = ("operation", "N", "median", "baseline", "ratio", "CPU", "peak RSS", "target")
        for column in columns:
            table.add_column(column, justify="left" if column == "operation" else "right")
        table.add_column("status")
        table.add_column("note")
        for row in self.rows:
            status = {True: "pass", False: "FAIL", None: ""}[row.passed]
            table.add_row(
                row.op,
                "" if row.n is None else str(row.n),
                _fmt_s(row.median),
                f"{_fmt_s(row.baseline_seconds)} {row.baseline}".strip(),
                f"{row.ratio:.1f}x" if row.ratio is not None else "",
                _cpu_cell(row.cpu, row.baseline_cpu),
                f"{row.rss_mb:.0f} MB" if row.rss_mb is not None else "",
                row.target,
                status,
                row.note,
            )
        Console(width=200).print(table)

    def save(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = out_dir / f"{stamp}.json"
        document = {
            "created_at": datetime.now(UTC).isoformat(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "loadavg_start": self.loadavg_start,
                "loadavg_end": os.getloadavg(),
            },
            "settings": asdict(self.settings),
            "rows": [r.to_json() for r in self.rows],
            "setup_seconds": self.setup,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def move_aside(path: Path, trash: Path) -> None:
    """Make a cold start by renaming ``path`` into ``trash`` (deleted after the samples).

    Deleting it right before the run would make the run slower for a reason of the file
    system, not of the code: ext4 without a journal (this VM's disk) skips inodes freed in
    the last 60-360 s when it allocates new ones, checking each, so a run that creates
    thousands of files just after thousands were deleted nearby pays for every one of them.
    """
    if path.exists():
        trash.mkdir(parents=True, exist_ok=True)
        path.rename(trash / f"{path.name}-{time.time_ns()}")


def _timed(func: Callable[[int], object], arg: int) -> float:
    start = time.perf_counter()
    func(arg)
    return time.perf_counter() - start


def markdown(document: dict[str, Any]) -> str:
    """The rows of a results document as a Markdown table (for bench/README.md)."""
    lines = [
        "| operation | N | median | baseline | ratio | CPU | peak RSS | target | status | note |",
        "| --- | --: | --: | --- | --: | --: | --: | --- | --- | --- |",
    ]
    for row in document["rows"]:
        base = f"{_fmt_s(row['baseline_seconds'])} {row['baseline']}" if row["baseline"] else ""
        cells = [
            row["op"],
            "" if row["n"] is None else str(row["n"]),
            _fmt_s(row["median"]) if row["samples"] else "-",
            base,
            f"{row['ratio']:.1f}x" if row["ratio"] is not None else "",
            _cpu_cell(row.get("cpu"), row.get("baseline_cpu")),
            f"{row['rss_mb']:.0f} MB" if row["rss_mb"] is not None else "",
            row["target"],
            {True: "pass", False: "**FAIL**", None: ""}[row["passed"]],
            row["note"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def _median_cpu(samples: list[Sample]) -> float | None:
    cpu = [s.cpu for s in samples if s.cpu is not None]
    return statistics.median(cpu) if cpu else None


def _cpu_cell(cpu: float | None, baseline_cpu: float | None) -> str:
    """``CPU (ratio to the baseline's CPU)``, e.g. ``1.20 s (2.4x)``."""
    if cpu is None:
        return ""
    ratio = f" ({cpu / baseline_cpu:.1f}x)" if baseline_cpu else ""
    return f"{_fmt_s(cpu)}{ratio}"


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@contextlib.contextmanager
def _storage_removed(storage: Path | None, endpoint: str | None) -> Iterator[None]:
    """Make the stored state unreachable for the duration (moto is emptied for good)."""
    if endpoint is not None:
        s3.reset(endpoint)
        yield
        return
    assert storage is not None
    aside = storage.with_name(storage.name + ".aside")
    storage.rename(aside)
    try:
        yield
    finally:
        aside.rename(storage)


def run(settings: Settings, out_dir: Path = RESULTS_DIR, workdir: Path | None = None) -> Path:
    """Run every benchmark, print the table, save and return the results file."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="defstate-bench-"))
            )
        bench = Bench(settings, workdir)
        started = time.perf_counter()
        print(f"benchmarks in {workdir}: sizes {settings.sizes}, repeat {settings.repeat}")
        bench.measure_import()
        endpoint = stack.enter_context(s3.moto_server()) if settings.s3 else None
        for n in settings.sizes:
            bench.measure_loads(n, endpoint)
        bench.measure_refreshes()
        bench.apply_targets()
        bench.print_table()
        path = bench.save(out_dir)
        print(f"total {time.perf_counter() - started:.0f} s; results: {path}")
        return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated N (default 1,100,1000)")
    parser.add_argument("--repeat", type=int, help="runs per figure (default 5)")
    parser.add_argument("--quick", action="store_true", help="sizes 1,100, repeat 3")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the harness: sizes 1,5, repeat 1, short work, S3 at the largest size only",
    )
    parser.add_argument("--k", type=int, default=20, help="assets per component")
    parser.add_argument("--io-seconds", type=float, help="sleep of io refreshes (default 0.2)")
    parser.add_argument("--cpu-iterations", type=int, help="loop of cpu refreshes (200000)")
    parser.add_argument("--no-s3", action="store_true", help="skip the moto S3 benchmarks")
    parser.add_argument("--no-pyc", action="store_true", help="children write no bytecode")
    parser.add_argument("--no-warmup", action="store_true", help="no discarded first runs")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, help="keep generated projects here")
    parser.add_argument("--markdown", type=Path, help="print a results file as Markdown, exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    quick, smoke = args.quick, args.smoke
    sizes = args.sizes or ("1,5" if smoke else "1,100" if quick else "1,100,1000")
    sizes_list = sorted(int(s) for s in sizes.split(","))
    settings = Settings(
        sizes=sizes_list,
        repeat=args.repeat or (1 if smoke else 3 if quick else 5),
        k=args.k,
        io_seconds=args.io_seconds or (0.01 if smoke else 0.2),
        cpu_iterations=args.cpu_iterations or (1000 if smoke else 200_000),
        s3=not args.no_s3,
        pyc=not args.no_pyc,
        warmup=not (args.no_warmup or smoke),
        s3_sizes=[max(sizes_list)] if smoke else None,
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    run(settings, args.out_dir, args.workdir)


if __name__ == "__main__":
    main()
