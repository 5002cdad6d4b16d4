"""First render of the web UI in headless Chromium: ``python -m bench.ui [--n 1000] [--k 20]``.

Generates the bench project (N components x K assets, local state), refreshes it, starts
``defstate serve`` on a free loopback port and opens the UI's Assets view in headless Chromium,
each sample in a new browser context (empty cache, like a first visit). Figures are medians:

- ``first render``: navigation start to the first asset list on screen, read from the page's
  own ``performance.mark("defstate:assets-rendered")`` (HTML, script, the ``/api/assets``
  answer and the DOM, all included);
- ``until visible (wall)``: the same seen from outside, ``page.goto`` to the list's selector;
- baseline ``blank page (wall)``: ``page.goto`` of the server's ``/health`` JSON in a new
  context, the floor of any page of this server in this browser;
- ``lineage view``: wall time to the neighbourhood (3 levels up and down) of a middle asset;
- ``state view``: wall time to the table of every key (read in a worker process).

The first sample after the server started also builds the load's indexes; it is reported apart
(``cold server``). The target is a first render <= 2 s for N=1000 x 20 (20 000 assets).
Results go to ``bench/results/ui-<timestamp>.json``.
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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.browser import find_chromium, launch
from bench.generate import generate

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
TARGET_SECONDS = 2.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFSTATE_")}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "defstate-bench-pycache")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@contextmanager
def serve(project: Path) -> Iterator[str]:
    """``defstate serve --port 0`` in ``project``; yields its URL, stops it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "defstate", "serve", "--port", "0"],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "serving " in line:
                # keep reading its log, or a full pipe would block the server
                threading.Thread(target=process.stdout.read, daemon=True).start()
                yield line.split(" at ", 1)[1].split()[0]
                return
        raise RuntimeError(f"defstate serve exited ({process.wait()}) before serving")
    finally:
        process.terminate()
        process.wait(timeout=30)


def sample(browser: Any, url: str) -> dict[str, float]:
    """One first visit of the Assets view: the page's mark and the wall time (seconds)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url + "/#/assets")
        page.wait_for_selector("#summary", timeout=60_000)
        wall = time.perf_counter() - started
        mark = page.evaluate(
            "performance.getEntriesByName('defstate:assets-rendered')[0].startTime"
        )
        shown = page.locator(".asset").count()
        assert shown > 0, "no assets rendered"
        return {"first_render": mark / 1000, "wall": wall, "assets_shown": shown}
    finally:
        context.close()


def visit_seconds(browser: Any, url: str, fragment: str, selector: str, timeout_ms: int) -> float:
    """Wall time of a first visit of ``url/#/fragment`` until ``selector`` is shown."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{url}/#/{fragment}")
        page.wait_for_selector(selector, timeout=timeout_ms)
        return time.perf_counter() - started
    finally:
        context.close()


def lineage_sample(browser: Any, url: str, key: str) -> float:
    """A first visit of the Lineage view of ``key`` (3 levels up and down)."""
    return visit_seconds(
        browser, url, f"lineage?key={key}&up=3&down=3", "svg.dag g.node.focus", 60_000
    )


def state_sample(browser: Any, url: str) -> float:
    """A first visit of the State view (every key, read in a worker process)."""
    return visit_seconds(browser, url, "state", "#state-table", 120_000)


def baseline(browser: Any, url: str) -> float:
    context = browser.new_context()
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url + "/health")
        return time.perf_counter() - started
    finally:
        context.close()


def run(n: int, k: int, repeat: int, workdir: Path, out_dir: Path) -> dict[str, Any]:
    chromium, why = find_chromium(install=True)
    if chromium is None:
        raise SystemExit(f"bench.ui: no headless browser: {why}")
    project = generate(workdir / f"ui-{n}x{k}", n, k=k, mode="instant")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "defstate", "state", "refresh", "--json"],
        cwd=project,
        env=_env(),
        capture_output=True,
        check=True,
    )
    setup = {"refresh_seconds": round(time.perf_counter() - started, 2)}
    with serve(project) as url, launch(chromium) as browser:
        cold = sample(browser, url)
        samples = [sample(browser, url) for _ in range(repeat)]
        blanks = [baseline(browser, url) for _ in range(repeat)]
        middle = f"c{n // 2:05d}/t{k // 2:03d}"
        lineages = [lineage_sample(browser, url, middle) for _ in range(repeat)]
        states = [state_sample(browser, url) for _ in range(max(1, repeat // 2))]
    first = statistics.median(s["first_render"] for s in samples)
    document = {
        "benchmark": "ui first render",
        "n": n,
        "k": k,
        "assets": n * k,
        "repeat": repeat,
        "first_render_median_s": round(first, 3),
        "wall_median_s": round(statistics.median(s["wall"] for s in samples), 3),
        "baseline_blank_page_median_s": round(statistics.median(blanks), 3),
        "lineage_wall_median_s": round(statistics.median(lineages), 3),
        "state_view_wall_median_s": round(statistics.median(states), 3),
        "cold_server": cold,
        "samples": samples,
        "baseline_samples": blanks,
        "target_s": TARGET_SECONDS,
        "meets_target": first <= TARGET_SECONDS,
        "setup": setup,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
            "chromium": chromium,
        },
        "finished_at": datetime.now(UTC).isoformat(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"ui-{stamp}.json").write_text(json.dumps(document, indent=1))
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="components (default 1000)")
    parser.add_argument("--k", type=int, default=20, help="assets per component (default 20)")
    parser.add_argument("--repeat", type=int, default=5, help="samples per figure (default 5)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, help="keep the generated project here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="defstate-bench-ui-") as tmp:
        doc = run(args.n, args.k, args.repeat, args.workdir or Path(tmp), args.out_dir)
    base = doc["baseline_blank_page_median_s"]
    print(f"UI first render, N={doc['n']} x {doc['k']} ({doc['assets']} assets), medians:")
    print(f"  first render (page mark)   {doc['first_render_median_s']:.3f} s")
    print(f"  until visible (wall)       {doc['wall_median_s']:.3f} s")
    print(f"  baseline blank page (wall) {base:.3f} s   ratio {doc['wall_median_s'] / base:.1f}x")
    print(f"  cold server (first sample) {doc['cold_server']['first_render']:.3f} s")
    print(f"  lineage view, 3+3 levels   {doc['lineage_wall_median_s']:.3f} s (wall)")
    print(f"  state view, every key      {doc['state_view_wall_median_s']:.3f} s (wall)")
    verdict = "meets" if doc["meets_target"] else "MISSES"
    print(f"  target <= {TARGET_SECONDS:.1f} s: {verdict}")


if __name__ == "__main__":
    main()
