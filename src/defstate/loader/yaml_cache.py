"""A cache of parsed ``defs.yaml`` files, keyed by their content.

Parsing a project's ``defs.yaml`` files (libyaml, the limits of
docs/hostile-input-and-secrets.md, the line of every value) is most of a discovery, and their
bytes rarely change between two loads. This cache maps the blake2b digest of a file's bytes
to what :func:`~defstate.loader.yaml_source.parse_yaml_bytes` returned for them (each
document's value and lines), so a file is parsed again exactly when its bytes change, never
because of a timestamp. It caches parses only, never components or definitions, and holds
values before templates are expanded (never an environment variable's value).

What is cached: files that parsed without errors and whose values JSON represents exactly
(mappings with string keys, lists, strings, numbers, booleans, null). Others (dates, numeric
keys, any error) are parsed at every load, so errors are always found afresh, with file and
line.

The cache is one file per defs folder, ``$DEFSTATE_CACHE_DIR/defs-yaml/<digest of the
folder's path>.json`` (see :func:`defstate.cache_dir.default_cache_dir`): a header line (the
stamp, the digest of the rest) then the entries. The stamp covers the source of defstate's
YAML reader and of this module (so, the layout of the cache file) and PyYAML's version, so
an upgrade of either ignores old entries; a load whose files are all cached does not import
PyYAML. A missing, damaged (digest mismatch, bad JSON) or stale file is ignored and
replaced; a cache folder that cannot be written leaves loads uncached. Writes are atomic
(aside and renamed) and hold the entries of the load's files only; two processes writing at
once each write a complete file of valid entries, and the last one stays. Files not written
for :data:`UNUSED_DAYS` days are removed. ``DEFSTATE_PARSE_CACHE=0`` (or ``false``, ``no``,
``off``) turns the cache off.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import attrs

from defstate.cache_dir import default_cache_dir
from defstate.loader import yaml_source
from defstate.loader.yaml_source import YamlDocument, YamlFile, parse_yaml_bytes, read_yaml_file

try:  # hashlib loads OpenSSL (milliseconds per process); blake2 is built into CPython
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - CPython built without it
    from hashlib import blake2b

CACHE_ENV = "DEFSTATE_PARSE_CACHE"
"""Set to ``0``, ``false``, ``no`` or ``off`` to parse every file at every load."""
CACHE_FOLDER = "defs-yaml"
"""The cache's folder inside :func:`~defstate.cache_dir.default_cache_dir`."""
UNUSED_DAYS = 30
"""A cache file not written for this long is removed when another one is written."""


def _digest(data: bytes) -> str:
    return blake2b(data, digest_size=16).hexdigest()


@functools.cache
def _stamp() -> str | None:
    """What the cached parses depend on besides the files' bytes: the source of the parsing
    code and PyYAML's (its ``__init__.py`` names its version; its file names tell whether
    libyaml is there), found without importing PyYAML. ``None`` (no cache) when they cannot be
    read, e.g. imported from a zip."""
    parser = Path(yaml_source.__file__)
    hasher = blake2b(digest_size=16)  # this module's source stands for the file's layout
    try:
        for module_file in (parser, parser.with_name("yaml_parse.py"), Path(__file__)):
            hasher.update(module_file.read_bytes())
        spec = importlib.util.find_spec("yaml")
        if spec is None or spec.origin is None or not spec.submodule_search_locations:
            return None
        hasher.update(Path(spec.origin).read_bytes())
        hasher.update("\0".join(sorted(os.listdir(spec.submodule_search_locations[0]))).encode())
    except (OSError, ImportError, ValueError):
        return None
    return hasher.hexdigest()


def cache_enabled() -> bool:
    """Whether ``DEFSTATE_PARSE_CACHE`` leaves the cache on (the default)."""
    return os.environ.get(CACHE_ENV, "").strip().lower() not in ("0", "false", "no", "off")


def cache_file(defs_dir: Path) -> Path:
    """The cache file of the defs folder ``defs_dir``."""
    folder_id = _digest(os.fsencode(defs_dir.absolute()))
    return default_cache_dir() / CACHE_FOLDER / f"{folder_id}.json"


def _json_exact(value: Any) -> bool:
    """Whether JSON gives ``value`` back as it is (types included)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return True
    if kind is list:
        return all(_json_exact(item) for item in value)
    if kind is dict:
        return all(type(k) is str and _json_exact(v) for k, v in value.items())
    return False


def _encode(loaded: YamlFile) -> str | None:
    """The cache entry of a parsed file (JSON text), or ``None`` if it is not cached."""
    if loaded.errors or not all(_json_exact(d.value) for d in loaded.documents):
        return None
    return json.dumps(
        [[d.value, [[line, *path] for path, line in d.lines.items()]] for d in loaded.documents]
    )


def _decode(path: Path, entry: str) -> YamlFile:
    # a fresh value per use: components may keep or change what they were given
    documents = tuple(
        YamlDocument(path, value, {tuple(item[1:]): item[0] for item in lines})
        for value, lines in json.loads(entry)
    )
    return YamlFile(path, documents, ())


def _read_entries(file: Path, stamp: str) -> dict[str, str]:
    """The entries of the cache ``file``; none if it is missing, damaged or stale."""
    try:
        data = file.read_bytes()
    except OSError:
        return {}
    header, _, payload = data.partition(b"\n")
    try:
        if json.loads(header) != {"stamp": stamp, "digest": _digest(payload)}:
            return {}
        entries = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(entries, dict) or not all(isinstance(e, str) for e in entries.values()):
        return {}
    return entries


@attrs.define
class YamlParseCache:
    """The parse cache of one defs folder during one discovery: :meth:`read` each file, then
    :meth:`save` (a no-op when nothing changed)."""

    file: Path | None  # None: caching is off
    stamp: str = ""
    known: dict[str, str] = attrs.field(factory=dict)  # as read: digest -> entry
    used: dict[str, str] = attrs.field(factory=dict)  # this discovery's files

    @classmethod
    def for_defs_dir(cls, defs_dir: Path) -> YamlParseCache:
        stamp = _stamp()
        if stamp is None or not cache_enabled():
            return cls(None)
        try:
            file = cache_file(defs_dir)
        except RuntimeError:  # no $HOME and no home directory for this uid: no cache folder
            return cls(None)
        return cls(file, stamp, _read_entries(file, stamp))

    def read(self, path: Path) -> YamlFile:
        """:func:`~defstate.loader.yaml_source.read_yaml_file`, from the cache when the
        file's bytes were parsed before."""
        return read_yaml_file(path, self._parse)

    def _parse(self, path: Path, data: bytes) -> YamlFile:
        if self.file is None:
            return parse_yaml_bytes(path, data)
        digest = _digest(data)
        entry = self.known.get(digest)
        if entry is not None:
            try:
                loaded = _decode(path, entry)
            except (ValueError, TypeError, IndexError, RecursionError):
                pass  # an entry not of this format: parse again
            else:
                self.used[digest] = entry
                return loaded
        loaded = parse_yaml_bytes(path, data)
        entry = _encode(loaded)
        if entry is not None:
            self.used[digest] = entry
        return loaded

    def save(self) -> None:
        """Replace the cache file with this discovery's entries, if they differ from it."""
        if self.file is None or self.used == self.known:
            return
        from defstate.state_storage.atomic import write_atomic  # only when something changed

        payload = json.dumps(self.used).encode()
        header = json.dumps({"stamp": self.stamp, "digest": _digest(payload)}).encode()
        try:
            # private: the entries copy values of defs.yaml files (never of templates)
            write_atomic(self.file, header + b"\n" + payload, private=True)
        except OSError:
            return  # a read-only or full cache folder: the next load parses again
        _remove_unused(self.file.parent)


def _remove_unused(folder: Path) -> None:
    """Remove the cache files not written for :data:`UNUSED_DAYS` days (their defs folder
    is gone, or was not loaded since: it is written again at its next load) and the
    temporaries of killed writers."""
    import time

    cutoff = time.time() - UNUSED_DAYS * 86400
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):  # e.g. removed by another process meanwhile
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
