"""Storage requests and time of a warm initialization load from S3 (issue 18, point 2).

    python -m bench.warm_init [--n 1000] [--repeat 3] [--layout 1|2]

Generates the bench project (N components x 20 assets, versioned storage on moto's S3
server in this process), stores each component's state as one version the way a publication
leaves it (bytes, manifest, pointer: under ``_pointers.d/`` for layout 2, in
``<key>/latest.json`` for layout 1, written directly so that seeding 1000 keys takes seconds,
not minutes, on moto), runs one initialization load to fill the download cache, then times
``--repeat`` more initialization loads (no pin, every version cached) in this process and
counts the requests moto answered during each; then the requests of the live pin records of a
``load_defs(keep_pinned=True)`` (what ``serve`` keeps): to start, per renewal, at exit.
``--layout 1`` measures a storage that was
never migrated (and, with ``PYTHONPATH`` pointing at an older checkout, defstate before
layout 2). ``bench.run`` has the same figure as its row ``warm init load s3``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import s3
from bench.generate import component_name, generate
from bench.plain import make_state


def _seed(fs: Any, root: str, n: int, layout: int) -> None:
    from defstate.state_storage.keys import encode_key

    def one(index: int) -> None:
        name = component_name(index)
        upstream = component_name(index - 1) if index else None
        data = json.dumps(make_state(name, upstream, 20)).encode()
        key = f"Bench[{name}]"
        encoded = "/".join(encode_key(key).parts)
        version = str(uuid.uuid4())
        # written out, not defstate's manifest_document: this bench also measures checkouts
        # older than that function (PYTHONPATH, see the module docstring)
        manifest = {
            "format": 1,
            "key": key,
            "version": version,
            "created_at": "2026-12-01T00:00:00+00:00",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "is_directory": False,
        }
        base = f"{root}/{encoded}/versions/{version}"
        fs.pipe_file(f"{base}/state", data)
        fs.pipe_file(f"{base}/manifest.json", json.dumps(manifest).encode())
        pointer = json.dumps({**manifest, "previous": None}).encode()
        where = (
            f"{root}/_pointers.d/{encoded}.json" if layout == 2 else f"{root}/{encoded}/latest.json"
        )
        fs.pipe_file(where, pointer)

    if layout == 2:
        fs.pipe_file(f"{root}/_layout.json", b'{"layout": 2}')
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n)))


def measure(n: int, repeat: int, layout: int) -> dict[str, Any]:
    import s3fs

    from defstate import load_defs

    work = Path(tempfile.mkdtemp(prefix="defstate-bench-warm-"))
    with s3.moto_server() as endpoint:
        os.environ.update(s3.s3_env(endpoint))
        os.environ["DEFSTATE_CACHE_DIR"] = str(work / "cache")
        s3.create_bucket(endpoint, "bench")
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        started = time.perf_counter()
        _seed(fs, "bench/state", n, layout)
        seeded = time.perf_counter() - started
        project = generate(
            work / "project",
            n,
            management="VERSIONED_STATE_STORAGE",
            storage_url="s3://bench/state",
        )
        first = load_defs(project)  # downloads every version into the cache
        assert first.ok, first.errors[:3]
        seconds, requests = [], []
        for _ in range(repeat):
            with s3.counted_requests() as log:
                start = time.perf_counter()
                result = load_defs(project)
                seconds.append(time.perf_counter() - start)
            assert result.ok and len(result.definitions.asset_keys) == n * 20
            requests.append(len(log.lines))
        pins = _pin_requests(project, statistics.median(requests))
    return {
        "n": n,
        "layout": layout,
        "median_seconds": statistics.median(seconds),
        "seconds": seconds,
        "requests": requests,
        "pin_requests": pins,
        "seed_seconds": seeded,
        "load_average": os.getloadavg(),
    }


def _pin_requests(project: Path, warm_load_requests: float) -> dict[str, float]:
    """Requests of the live pin records a process serving the load keeps
    (``load_defs(keep_pinned=True)``): to start (the load's requests beyond a warm load's),
    per renewal (every ttl/3 for as long as it runs) and at exit."""
    from defstate import load_defs

    with s3.counted_requests() as start:
        pinned = load_defs(project, keep_pinned=True)
    assert pinned.ok and pinned.live_pins is not None, pinned.errors[:3]
    pins = pinned.live_pins
    with s3.counted_requests() as renewal:
        if hasattr(pins, "renew"):
            pins.renew()
        else:  # defstate before holder records: its renewal thread's body, one write per key
            for key, names in pins.held.items():
                pins.storage.write_pin(key, pins.holder, names, ttl=pins.ttl, purpose="load")
    with s3.counted_requests() as stop:
        pins.close()
    return {
        "start": len(start.lines) - warm_load_requests,
        "renewal": len(renewal.lines),
        "exit": len(stop.lines),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layout", type=int, choices=(1, 2), default=2)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.n, args.repeat, args.layout)))


if __name__ == "__main__":
    main()
