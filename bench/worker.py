"""What the runner measures inside a fresh child process (``python -m bench.worker OP ...``).

Every operation prints one JSON object on stdout's last line, with ``seconds`` the time of the
measured work alone (interpreter start-up and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEAVY_MODULES = ("fsspec", "s3fs", "gcsfs", "botocore", "rich", "watchfiles", "dbt", "tenacity")


def _report(data: dict[str, Any]) -> None:
    sys.stdout.write("\n" + json.dumps(data) + "\n")


def load(
    project: Path, pin_file: Path | None, fresh_cache: Path | None, pin_out: Path | None
) -> dict[str, Any]:
    """One ``load_defs`` (pinned when ``pin_file`` is given), timed in this process, with an
    empty download cache made under ``fresh_cache`` if given; saves the pin to ``pin_out``."""
    from defstate import StateInfo, load_defs

    pin = StateInfo.from_json(pin_file.read_text()) if pin_file else None
    if fresh_cache:
        fresh_cache.mkdir(parents=True, exist_ok=True)
        os.environ["DEFSTATE_CACHE_DIR"] = tempfile.mkdtemp(dir=fresh_cache)
    start = time.perf_counter()
    result = load_defs(project, state_info=pin)
    seconds = time.perf_counter() - start
    if pin_out is not None:
        pin_out.write_text(result.state_info.to_json())
    return {
        "seconds": seconds,
        "assets": len(result.definitions.assets),
        "keys": len(result.state_info),
        "errors": [str(e) for e in result.errors[:3]],
    }


def baseline_load(project: Path) -> dict[str, Any]:
    """The same work as a load with plain ``json.load`` (see bench/plain.py)."""
    from bench.plain import plain_assets

    start = time.perf_counter()
    assets = plain_assets(str(project))
    return {"seconds": time.perf_counter() - start, "assets": len(assets)}


def heavy_modules(cli_args: list[str]) -> dict[str, Any]:
    """Which heavy packages ``import defstate`` (or a whole CLI command) imports."""
    import defstate  # noqa: F401

    if cli_args:
        import contextlib
        import io

        from defstate.cli.main import main

        sys.argv = ["defstate", *cli_args]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main()
    found = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_MODULES))
    return {"seconds": 0.0, "heavy": found}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="op", required=True)
    p = sub.add_parser("load")
    p.add_argument("project", type=Path)
    p.add_argument("--pin", type=Path)
    p.add_argument("--fresh-cache", type=Path, metavar="DIR")
    p.add_argument("--pin-out", type=Path)
    sub.add_parser("baseline-load").add_argument("project", type=Path)
    p = sub.add_parser("heavy-modules")
    p.add_argument("cli_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.op == "load":
        _report(load(args.project, args.pin, args.fresh_cache, args.pin_out))
    elif args.op == "baseline-load":
        _report(baseline_load(args.project))
    else:
        _report(heavy_modules([a for a in args.cli_args if a != "--"]))


if __name__ == "__main__":
    main()
