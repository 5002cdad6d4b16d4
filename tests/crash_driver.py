"""Kill a storage operation at every one of its storage calls, and check nothing is lost.

``python -m crash_driver BACKEND URL WORKDIR [calls|phases]`` (BACKEND: ``local`` or
``versioned``) prints one JSON document: the kill points tried per operation and every
invariant violation found.

For each operation (publish a file state, publish a directory state, rollback, gc; for
``local``: commit a file state, a directory state, the same bytes again) and each ``n``, a forked child
runs the operation and SIGKILLs itself just before its ``n``-th storage call (object-store
call for versioned storage; file-system mutation for local state). The parent then checks:
the latest pointer names a complete version whose bytes match (or, locally, the state is
the old or the new one, never torn or missing), every listed version reads, and the state
loads through a fresh download cache. ``n`` grows until the operation completes unkilled.

``phases`` (for object stores, where each call is a slow round trip) counts only the first
call of each *phase*: a store method on one kind of object (``write`` of a manifest,
``write_if`` of the pointer, ``delete`` of state bytes, ...), so every phase is killed once
while the calls that repeat a phase for the next version are not killed again. ``calls``
(the default) kills before every call.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY = "Crash[key*?]"
_HOOKED_STORE_METHODS = (
    "read",
    "stat",
    "write",
    "write_if",
    "upload",
    "download",
    "delete",
    "list_objects",
    "list_names",
    "now",
)
_HOOKED_OS_CALLS = ("replace", "rename", "unlink", "rmdir", "utime", "mkdir", "link")


Tick = Callable[[str], None]  # called before each storage call with its phase
_IDS = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
PHASES = False  # set by main(): kill at the first call of each phase only


def _die_at(n: int, install: Callable[[Tick], None]) -> None:
    calls = [0]
    seen: set[str] = set()

    def tick(phase: str) -> None:
        if PHASES:
            if phase in seen:
                return
            seen.add(phase)
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    install(tick)


def _phase(method: str, args: tuple[Any, ...]) -> str:
    """``method`` and the kind of object it touches: the last two parts of its path with
    version ids and pin holders replaced by ``*`` (``write */manifest.json``)."""
    path = next((a for a in args if isinstance(a, str)), "")
    return f"{method} {'/'.join(_IDS.sub('*', path).split('/')[-2:])}"


def _hook_store(store: Any, tick: Tick) -> None:
    for name in _HOOKED_STORE_METHODS:
        original = getattr(store, name)

        def hooked(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            tick(_phase(_name, args))
            return _original(*args, **kw)

        setattr(store, name, hooked)


def _hook_os(tick: Tick) -> None:
    from defstate.state_storage import local

    for name in _HOOKED_OS_CALLS:
        original = getattr(os, name)

        def hooked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            tick("")  # local state is killed before every call
            return _original(*args, **kwargs)

        setattr(os, name, hooked)
    exchange = local._exchange

    def hooked_exchange(a: Path, b: Path) -> bool:
        tick("")
        return exchange(a, b)

    local._exchange = hooked_exchange  # type: ignore[assignment]


def _run_killed(n: int, operation: Callable[[int], None]) -> bool:
    """Run ``operation(n)`` in a child; ``True`` when it was killed (``n`` within it)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            operation(n)
            os._exit(0)
        except BaseException as exc:
            sys.stderr.write(f"operation failed unkilled: {type(exc).__name__}: {exc}\n")
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return True
    code = os.WEXITSTATUS(status)
    if code != 0:
        raise RuntimeError(f"the operation failed without being killed (exit {code})")
    return False


# ------------------------------------------------------------------------------ versioned


def _versioned(url: str, workdir: Path) -> dict[str, Any]:
    from defstate.loader.state_admin import GcPolicy, collect_key
    from defstate.state_storage.versioned import VersionedStateStorage

    def storage() -> VersionedStateStorage:
        return VersionedStateStorage(url)

    counter = [0]

    def new_state(directory: bool) -> Path:
        counter[0] += 1
        path = Path(tempfile.mkdtemp(dir=workdir)) / "state"
        if directory:
            path.mkdir()
            for i in range(3):
                (path / f"part{i}.txt").write_text(f"{os.getpid()}-{counter[0]}-{i}" * 50)
        else:
            path.write_text(json.dumps([f"{os.getpid()}-{counter[0]}"]))
        return path

    for directory in (False, True, False):
        storage().publish(KEY, new_state(directory), {})

    def killed(n: int, act: Callable[[Any], None]) -> None:
        target = storage()
        _die_at(n, lambda tick: _hook_store(target.store, tick))
        act(target)

    def rollback(target: Any) -> None:
        versions = target.versions(KEY)
        target.rollback(KEY, versions[0].version)

    operations: dict[str, Callable[[Any], None]] = {
        "publish file": lambda t: t.publish(KEY, new_state(False), {}),
        "publish directory": lambda t: t.publish(KEY, new_state(True), {}),
        "rollback": rollback,
        "gc": lambda t: collect_key(t, KEY, GcPolicy(keep=1, grace=0)),
    }
    if not storage().is_local:  # the same code paths; object-store round trips are slow
        del operations["publish directory"]
    checker = storage()  # one client for every check (a new one costs a model load)
    return _drive(operations, killed, lambda: _check_versioned(checker, workdir))


def _check_versioned(storage: Any, workdir: Path) -> list[str]:
    from defstate.state_storage.archive import sha256_bytes
    from defstate.state_storage.cache import DownloadCache

    problems = []
    latest = storage.latest(KEY)
    if latest is None:
        return ["the pointer is gone"]
    try:
        manifest = storage.version(KEY, latest.version)
        data = storage.store.read(
            storage.state_object_path(KEY, latest.version, is_directory=latest.is_directory)
        )
        if data is None or sha256_bytes(data) != manifest.sha256:
            problems.append(f"latest {latest.version}: bytes missing or torn")
    except Exception as exc:
        problems.append(f"latest {latest.version}: dangling ({exc})")
    for version in storage.versions(KEY):
        storage.version(KEY, version.version)
    storage._cache = DownloadCache(Path(tempfile.mkdtemp(dir=workdir)))
    try:
        storage.state_path(latest)
    except Exception as exc:
        problems.append(f"latest {latest.version} does not load: {exc}")
    return problems


# ---------------------------------------------------------------------------------- local


def _local(workdir: Path) -> dict[str, Any]:
    from defstate.state_storage.local import LocalStateStorage

    storage = LocalStateStorage(workdir / ".local_defs_state")
    expected: list[set[str]] = [set()]

    def write(directory: bool, tag: str) -> None:
        with storage.begin_write(KEY) as pending:
            if directory:
                pending.path.mkdir()
                (pending.path / "a.txt").write_text(tag)
                (pending.path / "b.txt").write_text(tag)
            else:
                pending.path.write_text(tag)
            pending.commit()

    def killed(n: int, act: Callable[[Any], None]) -> None:
        _die_at(n, _hook_os)
        act(storage)

    counter = [0]

    def op(directory: bool) -> Callable[[Any], None]:
        def run(_: Any) -> None:
            write(directory, f"tag-{counter[0]}")

        return run

    def check() -> list[str]:
        latest = storage.latest(KEY)
        if latest is None:
            return ["local state is missing"]
        path = storage.state_path(latest)
        texts = {p.read_text() for p in path.iterdir()} if path.is_dir() else {path.read_text()}
        if len(texts) != 1:
            return [f"torn local state: {sorted(texts)}"]
        if not texts <= expected[0]:
            return [f"unexpected local state {texts}"]
        return []

    def tagged(directory: bool) -> Callable[[Any], None]:
        def run(target: Any) -> None:
            op(directory)(target)

        return run

    def next_tag() -> None:
        counter[0] += 1
        expected[0].add(f"tag-{counter[0]}")

    write(False, "tag-0")
    expected[0].add("tag-0")

    def same_bytes(target: Any) -> None:  # an unchanged refresh: the state stays as it is
        latest = storage.latest(KEY)
        assert latest is not None and not latest.is_directory
        write(False, storage.state_path(latest).read_text())

    operations: dict[str, Callable[[Any], None]] = {
        "commit file": tagged(False),
        "commit directory": tagged(True),
        "commit file over directory": tagged(False),
        "commit the same bytes": same_bytes,
    }
    return _drive(operations, killed, check, before_each=next_tag)


# ---------------------------------------------------------------------------------- driver


def _drive(
    operations: dict[str, Callable[[Any], None]],
    killed: Callable[[int, Callable[[Any], None]], None],
    check: Callable[[], list[str]],
    before_each: Callable[[], None] | None = None,
) -> dict[str, Any]:
    points: dict[str, int] = {}
    problems: list[str] = []
    for name, act in operations.items():
        n = 1
        while True:
            if before_each is not None:
                before_each()
            was_killed = _run_killed(n, lambda n, act=act: killed(n, act))  # type: ignore[misc]
            problems.extend(f"{name}, killed at call {n}: {p}" for p in check())
            if not was_killed:
                break
            points[name] = n
            n += 1
    return {"kill_points": points, "problems": problems}


def main() -> None:
    global PHASES
    backend, url, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    PHASES = sys.argv[4:] == ["phases"]
    report = _local(workdir) if backend == "local" else _versioned(url, workdir)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
