"""The local download cache for versioned state.

``<cache dir>/<storage id>/<encoded key>/<version>/`` holds ``state`` (the file, or the
unpacked directory) and ``.verified`` (the sha256 it was checked against). Entries are written
into a temporary sibling and renamed into place, so a crash never leaves a half entry. Every
use re-checks a file state's sha256, so a cached file corrupted on disk is detected.
Installing goes through :func:`defstate.state_storage.atomic.folder_aside`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from defstate.cache_dir import default_cache_dir
from defstate.errors import StateIntegrityError
from defstate.state_storage.archive import sha256_file, unpack_directory, unpack_state
from defstate.state_storage.atomic import aside_name, folder_aside, write_atomic
from defstate.state_storage.keys import encode_key
from defstate.state_storage.state_info import StateVersion

_VERIFIED = ".verified"

__all__ = ["CachedEntries", "DownloadCache", "default_cache_dir", "fallback_cache_dir"]

log = logging.getLogger("defstate.state_storage")


@attrs.frozen
class CachedEntries:
    """One JSON file beside the download cache holding entries by name under ``section``
    (``{"format": 1, section: {name: entry}}``): what a storage read before (pointers,
    refresh records), so it need not be read again. Only a speed-up: a missing, damaged or
    unwritable file means more reads, never a wrong answer or a failure."""

    path: Path
    section: str

    def load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_bytes())
            entries = doc[self.section] if doc.get("format") == 1 else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}
        return dict(entries) if isinstance(entries, dict) else {}

    def save(self, entries: Mapping[str, Any]) -> None:
        doc = {"format": 1, self.section: dict(sorted(entries.items()))}
        try:
            write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as exc:  # a read-only or full cache: the next reader reads again
            log.debug("cannot write %s: %s", self.path, exc)


@attrs.frozen
class DownloadCache:
    """Verified local copies of stored versions of one storage location."""

    root: Path

    @classmethod
    def for_storage(cls, cache_dir: Path, storage_url: str) -> DownloadCache:
        storage_id = hashlib.sha256(storage_url.encode()).hexdigest()[:16]
        return cls(cache_dir / storage_id)

    def entry_dir(self, version: StateVersion) -> Path:
        return self.root.joinpath(*encode_key(version.key).parts, version.version)

    def contains(self, version: StateVersion) -> bool:
        """Whether an entry for ``version`` exists (cheap: checked, not verified)."""
        return (self.entry_dir(version) / _VERIFIED).is_file()

    def get(self, version: StateVersion, what: str) -> Path | None:
        """The cached state of ``version``, or ``None``; raises if the file was corrupted."""
        entry = self.entry_dir(version)
        try:
            verified = (entry / _VERIFIED).read_text().strip()
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        if verified != version.sha256:
            return None  # an entry for different bytes: not ours
        state = entry / "state"
        if version.is_directory:
            return state if state.is_dir() else None
        try:
            digest = sha256_file(state)
        except FileNotFoundError:
            return None
        if digest != version.sha256:
            raise StateIntegrityError(
                f"{what}: the cached copy {state} does not match its sha256 (corrupted on "
                "disk); delete it to download again"
            )
        return state

    def put(self, version: StateVersion, data: bytes) -> Path:
        """Store ``data``, already verified against the version's manifest; returns the path."""
        return self._install(
            version, lambda state: unpack_state(data, state, is_directory=version.is_directory)
        )

    def install_download(self, version: StateVersion, downloaded: Path) -> Path:
        """Store a downloaded and verified object file: a file state is moved into place, a
        directory state's archive is unpacked from disk (streamed); returns the path."""
        if version.is_directory:
            return self._install(version, lambda state: unpack_directory(downloaded, state))
        return self._install(version, lambda state: shutil.move(downloaded, state))

    def adopt(self, version: StateVersion, state: Path) -> Path:
        """Move a state that was just published (a file or a directory) into the entry."""
        return self._install(version, lambda target: shutil.move(state, target))

    def scratch_dir(self) -> Path:
        """A private temporary folder inside the cache (same disk: moves are renames)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(aside_name(self.root))
        path.mkdir()
        return path

    def _install(self, version: StateVersion, fill: Callable[[Path], object]) -> Path:
        entry = self.entry_dir(version)
        with folder_aside(entry, complete=lambda e: (e / _VERIFIED).is_file()) as tmp:
            fill(tmp / "state")
            (tmp / _VERIFIED).write_text(str(version.sha256))
        return entry / "state"


@functools.cache
def fallback_cache_dir() -> Path:
    """A private temporary folder of this process, used when the configured cache cannot be
    written (read-only home, full disk): loads keep working, they only download again."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="defstate-cache-"))
