"""The collector pause around loads: re-entrant, thread-safe, restoring what it found."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from conftest import ProjectFactory
from defstate import load_defs
from defstate.loader.gc_pause import GcPause


@pytest.fixture(autouse=True)
def _collector_enabled() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def test_pause_disables_and_restores_even_on_error() -> None:
    pause = GcPause()
    with pytest.raises(RuntimeError), pause:
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_pauses_resume_only_at_the_outermost_exit() -> None:
    pause = GcPause()
    with pause:
        with pause:
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_by_the_program_stays_disabled() -> None:
    gc.disable()
    with GcPause():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_from_two_threads() -> None:
    pause = GcPause()
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with pause:
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with pause:
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other thread's pause is still running
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_load_builds_definitions_with_the_collector_paused(make_project: ProjectFactory) -> None:
    project = make_project(
        {
            "defs/a/defs.yaml": """
                type: gc_probe_component.GcProbe
            """,
            "gc_probe_component.py": """
                import gc

                import attrs

                from defstate import AssetSpec, Component, Definitions

                SEEN = []


                @attrs.define
                class GcProbe(Component):
                    def build_defs(self, context):
                        SEEN.append(gc.isenabled())
                        return Definitions([AssetSpec(key="a")])
            """,
        },
        name="gcproj",
    )
    result = load_defs(project)
    import gc_probe_component  # type: ignore[import-not-found]

    assert result.ok and [str(k) for k in result.definitions.asset_keys] == ["a"]
    assert gc_probe_component.SEEN == [False]
    assert gc.isenabled()


class _Node:
    """A gc-tracked object that is easy to find among the collector's lists."""


def _in_generation(objects: list[_Node], generation: int) -> int:
    ids = {id(o) for o in objects}
    return sum(1 for o in gc.get_objects(generation) if id(o) in ids)


def test_what_a_pause_built_goes_to_the_oldest_generation() -> None:
    # Left in the youngest generation, the pause's objects made the first allocation after
    # it start a collection traversing all of them (13 ms after a 20 000-asset load).
    with GcPause():
        built = [_Node() for _ in range(5000)]
        assert gc.get_count()[0] >= 5000
    assert gc.get_count()[0] < 5000
    assert _in_generation(built, 0) == 0
    assert _in_generation(built, 2) == len(built)
    assert gc.get_freeze_count() == 0


def test_objects_the_program_froze_stay_frozen() -> None:
    frozen = [_Node() for _ in range(10)]
    gc.freeze()
    try:
        with GcPause():
            _ = [_Node() for _ in range(100)]
        assert gc.get_freeze_count() > 0
        frozen_ids = {id(f) for f in frozen}
        assert not any(id(o) in frozen_ids for o in gc.get_objects())  # not released
    finally:
        gc.unfreeze()
    assert _in_generation(frozen, 2) == len(frozen)


class _Cycle:
    """Garbage only the cyclic collector frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


def test_a_process_that_loads_again_and_again_frees_the_old_loads_cycles() -> None:
    # CPython's trigger for full collections does not count what a pause moves to the oldest
    # generation: without a full collection now and then, a server reloading in place kept
    # every replaced load's cycles (all 200 loads here: 4 000 000 objects).
    from defstate.loader.gc_pause import AGED_PAUSES

    pause = GcPause()
    gc.collect()
    current: list[_Cycle] = []
    for _ in range(AGED_PAUSES * 5):
        with pause:
            new = [_Cycle() for _ in range(2000)]  # the new load
        current = new  # the previous load is garbage now
    alive = sum(1 for o in gc.get_objects() if type(o) is _Cycle)
    assert len(current) <= alive <= (AGED_PAUSES + 1) * 2000


def test_a_finalizer_the_pauses_full_collection_runs_may_pause_too() -> None:
    from defstate.loader.gc_pause import AGED_PAUSES

    pause = GcPause()
    finalized = threading.Event()

    class Finalized(_Cycle):
        def __del__(self) -> None:
            with pause:  # e.g. a load's object whose cleanup reads a project
                finalized.set()

    def run() -> None:
        for _ in range(AGED_PAUSES + 1):  # the last one ends with a full collection
            with pause:
                Finalized()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the pause's full collection deadlocked on its own lock"
    assert finalized.is_set()
