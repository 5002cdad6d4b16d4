"""Before/after of `refresh instant` and `list defs` in one interleaved run.

    python -m bench.ab --before /tmp/old/src [--after src] [--n 1000] [--repeat 5]

``--before`` and ``--after`` are ``src`` folders of two checkouts of defstate (e.g. ``git
worktree add /tmp/old main`` or ``git archive main | tar -x -C /tmp/old``); each run puts one
of them first on ``PYTHONPATH`` under this venv's ``defstate`` script. Every round runs, in
turn: the `plain.py refresh-instant` baseline, a cold refresh (state folder removed) with
each tree, the `plain.py list` baseline, and `list defs --no-refresh --json` with each tree,
so that the load of a shared machine falls on all of them alike. Prints medians of wall time
and of CPU time (the child's user + system, which the load moves much less), the ratios to
the baselines and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.generate import generate
from bench.run import PLAIN, PYCACHE, REPO, move_aside, run_child

DEFSTATE = Path(sys.executable).with_name("defstate")


def _env(src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFSTATE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # like a normal install (see bench/README.md)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, user + system CPU) of one child process, which must succeed (``make bench``'s
    :func:`bench.run.run_child`)."""
    wall, _rss, _stdout, cpu = run_child(argv, cwd, env)
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="src folder of 'before'")
    parser.add_argument("--after", type=Path, default=REPO / "src", help="src folder of 'after'")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="defstate-ab-"))
    project = generate(work / "project", args.n, k=args.k)
    state = project / "defs" / ".local_defs_state"
    plain_out = work / "plain-refresh-instant"
    trash = work / "trash"  # cold starts move state aside (see bench.run.move_aside)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}

    def cold_state() -> None:
        move_aside(state, trash)

    ops: dict[str, tuple[list[str], Path | None, object]] = {
        "refresh instant: plain.py": (
            [
                sys.executable,
                str(PLAIN),
                "refresh-instant",
                str(args.n),
                str(args.k),
                str(plain_out),
            ],
            None,
            lambda: move_aside(plain_out, trash),
        ),
        **{
            f"refresh instant: {name}": (
                [str(DEFSTATE), "state", "refresh", "--json"],
                src,
                cold_state,
            )
            for name, src in trees.items()
        },
        "list defs: plain.py": ([sys.executable, str(PLAIN), "list", str(project)], None, None),
        **{
            f"list defs: {name}": (
                [str(DEFSTATE), "list", "defs", "--no-refresh", "--json"],
                src,
                None,
            )
            for name, src in trees.items()
        },
    }
    samples: dict[str, list[tuple[float, float]]] = {op: [] for op in ops}
    load_start = os.getloadavg()
    for round_index in range(args.repeat + 1):  # the first round is a discarded warm-up
        for op, (command, src, prepare) in ops.items():
            if callable(prepare):
                prepare()
            sample = _run(command, project, _env(src))
            if round_index:
                samples[op].append(sample)
    load_end = os.getloadavg()
    shutil.rmtree(trash, ignore_errors=True)
    print(
        f"N={args.n} x {args.k}, {args.repeat} rounds, load average {load_start[0]:.1f} at "
        f"the start, {load_end[0]:.1f} at the end; before={trees['before']}"
    )
    base: dict[str, tuple[float, float]] = {}
    for op, runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        row, side = op.split(": ")
        if side == "plain.py":
            base[row] = (wall, cpu)
            ratios = ""
        else:
            ratios = f"  ({wall / base[row][0]:.1f}x wall, {cpu / base[row][1]:.1f}x CPU)"
        print(f"{op:<28} wall {wall:6.2f} s  CPU {cpu:6.2f} s{ratios}")


if __name__ == "__main__":
    main()
