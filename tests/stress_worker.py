"""One process of the multi-process stress test: ``python -m stress_worker ROLE URL OUT SECONDS``.

Roles: ``publish`` (publishes new versions, racing the others: no lease), ``load`` (reads
the latest version, pins it with a live pin record, downloads it through a private cache and
checks it is one published state, re-reads its pinned version while the pin lives),
``gc`` (collects with no ``keep`` and a short grace), ``rollback`` (moves the pointer back to
a random stored version), ``audit`` (checks the pointer never names a missing version).
Writes ``{"ops": N, "errors": [...], "benign": N}`` to OUT: ``errors`` are guarantee
violations or unexpected failures; ``benign`` counts races the protocol expects (a rollback
to a version gc just deleted, a latest version superseded and collected before it was pinned).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from defstate.errors import StateStorageError
from defstate.loader.state_admin import GcPolicy, collect_key
from defstate.state_storage.cache import DownloadCache
from defstate.state_storage.pins import LivePins
from defstate.state_storage.state_info import StateVersion
from defstate.state_storage.versioned import VersionedStateStorage

KEYS = ("Stress[a]", "Stress[b*?]")
GRACE = 5.0
PIN_TTL = 20.0


def _state_text(key: str, n: int) -> str:
    body = {"key": key, "n": n, "pad": "x" * random.randint(10, 2000)}
    text = json.dumps(body)
    return json.dumps({"body": text, "check": len(text)})


def _verify(path: Path) -> str | None:
    """A published state is self-consistent; anything else is a torn load."""
    document = json.loads(path.read_text())
    if len(document["body"]) != document["check"]:
        return f"torn state at {path}"
    return None


def publish(storage: VersionedStateStorage, end: float, report: dict[str, object]) -> None:
    n = 0
    scratch = Path(tempfile.mkdtemp())
    while time.monotonic() < end:
        n += 1
        key = random.choice(KEYS)
        state = scratch / f"state-{n}"
        state.write_text(_state_text(key, n))
        storage.publish(key, state, {})
        report["ops"] = int(report["ops"]) + 1  # type: ignore[call-overload]


def load(storage: VersionedStateStorage, end: float, report: dict[str, object]) -> None:
    pins = LivePins(storage, ttl=PIN_TTL)
    held: dict[str, StateVersion] = {}
    errors: list[str] = report["errors"]  # type: ignore[assignment]
    try:
        while time.monotonic() < end:
            key = random.choice(KEYS)
            latest = storage.latest(key)
            if latest is None:
                continue
            pins.hold({**{k: [v.version] for k, v in held.items()}, key: [latest.version]})
            try:
                storage.version(key, latest.version)  # still there once pinned?
            except StateStorageError:
                report["benign"] = int(report["benign"]) + 1  # type: ignore[call-overload]
                continue  # superseded and collected before the pin: read the pointer again
            held[key] = latest
            pins.hold({k: [v.version] for k, v in held.items()})
            storage._cache = DownloadCache(Path(tempfile.mkdtemp()))  # always download
            for version in held.values():  # a pinned version's bytes must stay
                problem = _verify(storage.state_path(version))
                if problem:
                    errors.append(problem)
            report["ops"] = int(report["ops"]) + 1  # type: ignore[call-overload]
    finally:
        pins.close()


def gc(storage: VersionedStateStorage, end: float, report: dict[str, object]) -> None:
    while time.monotonic() < end:
        for key in KEYS:
            result = collect_key(storage, key, GcPolicy(keep=0, grace=GRACE))
            report["deleted"] = int(report.get("deleted", 0)) + len(result.deleted)  # type: ignore[call-overload]
        report["ops"] = int(report["ops"]) + 1  # type: ignore[call-overload]
        time.sleep(0.2)


def rollback(storage: VersionedStateStorage, end: float, report: dict[str, object]) -> None:
    while time.monotonic() < end:
        key = random.choice(KEYS)
        versions = storage.versions(key)
        if not versions:
            continue
        try:
            storage.rollback(key, random.choice(versions).version)
        except StateStorageError as exc:
            if "no version" not in str(exc) and "no state bytes" not in str(exc):
                raise
            report["benign"] = int(report["benign"]) + 1  # type: ignore[call-overload]
        report["ops"] = int(report["ops"]) + 1  # type: ignore[call-overload]
        time.sleep(0.3)


def audit(storage: VersionedStateStorage, end: float, report: dict[str, object]) -> None:
    """The pointer never names a version whose bytes are gone (it carries the manifest)."""
    errors: list[str] = report["errors"]  # type: ignore[assignment]
    while time.monotonic() < end:
        for key in KEYS:
            latest = storage.latest(key)
            if latest is None:
                continue
            path = storage.state_object_path(key, latest.version, is_directory=False)
            if storage.store.stat(path) is None:
                again = storage.latest(key)
                if again is not None and again.version == latest.version:
                    errors.append(f"dangling pointer: {key} -> {latest.version}")
        report["ops"] = int(report["ops"]) + 1  # type: ignore[call-overload]


ROLES = {"publish": publish, "load": load, "gc": gc, "rollback": rollback, "audit": audit}


def main() -> None:
    role, url, out, seconds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    report: dict[str, object] = {"role": role, "ops": 0, "benign": 0, "errors": []}
    storage = VersionedStateStorage(url)
    try:
        ROLES[role](storage, time.monotonic() + seconds, report)
    except Exception:
        report["errors"].append(traceback.format_exc())  # type: ignore[attr-defined]
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
