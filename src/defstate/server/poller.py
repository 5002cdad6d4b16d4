"""``--reload-on-new-state``: reload when another process publishes a new version."""

from __future__ import annotations

import logging
import threading

from defstate.loader.project import load_project_config
from defstate.loader.storage import StateStorages
from defstate.server.location import CodeLocation
from defstate.state_storage.management import ManagementType

log = logging.getLogger("defstate.server")


def moved_keys(location: CodeLocation, seen: dict[str, str]) -> list[str]:
    """Versioned keys whose latest pointer moved since the last poll (or since the pin).

    ``seen`` remembers the pointers already reacted to, so a key the load could not use (and
    so is missing from the pin) does not trigger a reload at every poll.
    """
    keys = location.versioned_keys()
    if not keys:
        return []
    config = load_project_config(location.project_root)
    storage = StateStorages(config).get(ManagementType.VERSIONED_STATE_STORAGE, "poller")
    pinned = location.versioned_pins()
    moved = []
    for key in keys:
        latest = storage.latest(key)
        if latest is None:
            continue
        known = seen.get(key, pinned.get(key))
        if latest.version != known:
            moved.append(key)
        seen[key] = latest.version
    return moved


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
