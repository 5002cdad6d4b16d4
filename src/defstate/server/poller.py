"""``--reload-on-new-state``: reload when another process publishes a new version."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from defstate.loader.load import latest_in_bulk
from defstate.loader.project import load_project_config
from defstate.loader.storage import StateStorages
from defstate.server.location import CodeLocation
from defstate.state_storage.registry import storage_class

log = logging.getLogger("defstate.server")


def moved_keys(location: CodeLocation, seen: dict[str, str]) -> list[str]:
    """Keys of shared storages whose latest pointer moved since the last poll (or since the
    pin): other processes publish there.

    ``seen`` remembers the pointers already reacted to, so a key the load could not use (and
    so is missing from the pin) does not trigger a reload at every poll.
    """
    types = {
        key: management_type
        for key, management_type in location.key_management_types().items()
        if storage_class(management_type).shared
    }
    if not types:
        return []
    storages = StateStorages(load_project_config(location.project_root))
    pinned = location.pins()
    of_key = {
        key: storages.get(management_type, "poller") for key, management_type in types.items()
    }
    listed = latest_in_bulk(of_key, _unreachable)  # one listing of the pointers per storage
    moved = []
    for key in sorted(types):
        latest = listed[key] if key in listed else of_key[key].latest(key)
        if latest is None:
            continue
        known = seen.get(key, pinned.get(key))
        if latest.version != known:
            moved.append(key)
        seen[key] = latest.version
    return moved


def _unreachable(keys: Sequence[str], exc: Exception) -> None:
    raise exc  # this poll ends; the next one asks again


def poll_for_new_state(location: CodeLocation, interval: float, stop: threading.Event) -> None:
    """Every ``interval`` seconds, reload when a versioned key's pointer moved."""
    seen: dict[str, str] = {}
    while not stop.wait(interval):
        try:
            moved = moved_keys(location, seen)
        except Exception as exc:  # keep polling: storage may come back
            log.warning("cannot poll state storage: %s", exc)
            continue
        if moved:
            log.info("new state published for %s: reloading", ", ".join(moved))
            location.reload()
