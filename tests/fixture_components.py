"""Components used by the tests' throw-away projects (importable as ``fixture_components``).

They count their refreshes in files, so counts survive across processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import attrs

from defstate import (
    AssetCheckSpec,
    AssetSpec,
    Component,
    ComponentLoadContext,
    Definitions,
    StateBackedComponent,
    TerminalRefreshError,
)


def record_call(counter_dir: str, name: str) -> None:
    """Append one line to ``<counter_dir>/<name>.calls`` (O_APPEND: safe across processes)."""
    path = Path(counter_dir) / f"{name}.calls"
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")


def call_count(counter_dir: Path, name: str) -> int:
    path = counter_dir / f"{name}.calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


@attrs.define(kw_only=True)
class ListComponent(StateBackedComponent):
    """State = the ``assets`` list (or the file named by ``source_file``), one asset each.

    An entry ``asset:check`` is an asset check named ``check`` of asset ``asset`` instead.
    """

    assets: list[str] = attrs.field(factory=list)
    source_file: str | None = None
    counter_dir: str | None = None
    name: str = "list"
    fail: bool = False
    sleep: float = 0.0
    hold_until: str | None = None  # block inside the refresh until this file exists
    barrier: int = 0
    prefix: str = ""
    fail_times: int = 0
    terminal: bool = False
    chatty: bool = False

    def get_defs_state_key(self) -> str:
        return f"List[{self.name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        if self.counter_dir:
            record_call(self.counter_dir, self.name)
        if self.chatty:
            print(f"fetching {self.name}...")
        if self.barrier:
            _barrier(self.barrier).wait(timeout=10)
        if self.sleep:
            time.sleep(self.sleep)
        if self.hold_until:
            deadline = time.monotonic() + 120
            while not Path(self.hold_until).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        if self.fail:
            raise RuntimeError(f"external system for {self.name} is down")
        if self.terminal:
            raise TerminalRefreshError(f"{self.name}: invalid API token")
        counter = Path(self.counter_dir) if self.counter_dir else None
        if self.fail_times and counter and call_count(counter, self.name) <= self.fail_times:
            raise ConnectionError(f"{self.name}: flaky API, try again")
        assets = self.assets
        if self.source_file:
            assets = json.loads(Path(self.source_file).read_text())
        state_path.write_text(json.dumps(assets))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:
            return Definitions()
        names = json.loads(state_path.read_text())
        checks = [n.split(":", 1) for n in names if ":" in n]
        return Definitions(
            [
                AssetSpec(key=f"{self.prefix}{n}", group_name=self.name)
                for n in names
                if ":" not in n
            ],
            [AssetCheckSpec(name=c, asset=f"{self.prefix}{a}") for a, c in checks],
        )


_BARRIERS: dict[int, threading.Barrier] = {}
_BARRIERS_LOCK = threading.Lock()


def _barrier(parties: int) -> threading.Barrier:
    """A process-wide barrier: refreshes only pass it when ``parties`` run at the same time."""
    with _BARRIERS_LOCK:
        return _BARRIERS.setdefault(parties, threading.Barrier(parties))


@attrs.define(kw_only=True)
class AsyncListComponent(ListComponent):
    """Like ListComponent, with an ``async def write_state_to_path``."""

    async def write_state_to_path(self, state_path: Path) -> None:  # type: ignore[override]
        await asyncio.sleep(0.01)
        if self.counter_dir:
            record_call(self.counter_dir, self.name)
        state_path.write_text(json.dumps(self.assets))


@attrs.define(kw_only=True)
class DirectoryComponent(StateBackedComponent):
    """Writes a directory of ``files`` files, each holding the writer's ``tag``.

    ``slow`` seconds between files, and ``started_marker`` touched after the first file, let a
    test kill or race a refresh midway.
    """

    tag: str = "v1"
    tag_file: str | None = None
    files: int = 10
    slow: float = 0.0
    started_marker: str | None = None

    def write_state_to_path(self, state_path: Path) -> None:
        tag = Path(self.tag_file).read_text().strip() if self.tag_file else self.tag
        state_path.mkdir()
        for index in range(self.files):
            (state_path / f"part-{index:03d}.txt").write_text(tag)
            if index == 0 and self.started_marker:
                Path(self.started_marker).touch()
            if self.slow:
                time.sleep(self.slow)

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:
            return Definitions()
        tags = {p.read_text() for p in state_path.iterdir()}
        if len(tags) != 1:
            raise ValueError(f"mixed state: {sorted(tags)}")
        count = len(list(state_path.iterdir()))
        return Definitions([AssetSpec(key=f"dir/{tags.pop()}", metadata={"files": count})])


@attrs.define(kw_only=True)
class PlainComponent(Component):
    """A component without state: assets straight from its attributes."""

    assets: list[str]
    deps: dict[str, list[str]] = attrs.field(factory=dict)
    group: str | None = None
    path: str | None = None
    retries: int = 0
    ratio: float = 1.0
    enabled: bool = True
    checks: dict[str, list[str]] = attrs.field(factory=dict)
    """asset key -> names of blocking checks of it (the asset may be another component's)."""

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        return Definitions(
            [
                AssetSpec(
                    key=name,
                    deps=self.deps.get(name, []),
                    group_name=self.group,
                    metadata={"path": self.path} if self.path else {},
                )
                for name in self.assets
            ],
            [
                AssetCheckSpec(name=check, asset=asset, blocking=True)
                for asset, names in self.checks.items()
                for check in names
            ],
        )


@attrs.define(kw_only=True)
class BrokenComponent(Component):
    """Raises while building definitions."""

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        raise RuntimeError("boom while building")


@attrs.define(kw_only=True)
class PidComponent(StateBackedComponent):
    """Records which process ran ``write_state_to_path``: one asset named ``pid_<pid>``."""

    name: str

    def get_defs_state_key(self) -> str:
        return f"Pid[{self.name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        state_path.write_text(json.dumps([f"{self.name}_pid_{os.getpid()}"]))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if state_path is None:
            return Definitions()
        return Definitions([AssetSpec(key=n) for n in json.loads(state_path.read_text())])
