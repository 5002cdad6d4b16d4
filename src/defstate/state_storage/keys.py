"""The one rule that turns a state key into a relative directory path, and back.

Rule (a compatibility promise, documented in the README):

1. Encode the key as UTF-8. Every byte outside ``A-Z a-z 0-9 _ - [ ]`` is written ``%XX``
   (upper-case hex), including ``%``, ``/``, ``.``, NUL and every non-ASCII byte. Because
   ``.`` and ``/`` are always escaped, no encoded name can be ``.``, ``..``, hidden, or
   contain a separator, so it can never leave the state root.
2. Split the encoded text into chunks of at most 200 characters; every chunk but the last
   gets a ``+`` suffix (``+`` never appears in step 1's output) and becomes one directory
   level. File systems cap a name at 255 bytes; chunking keeps long keys working and the rule
   reversible: decoding strips the ``+`` suffixes, joins the chunks and unescapes.

The mapping is injective: percent-encoding is, and the ``+`` marker makes a chunk boundary
impossible to confuse with a key that happens to fit in one chunk.

Limit: the encoded key has at most 900 characters (``MAX_ENCODED_KEY_LENGTH``; a character of
the safe set counts 1, every other UTF-8 byte 3), so that a key's objects stay within object
stores' 1024-byte names and local paths within ``PATH_MAX``. A key must be valid Unicode text:
a lone surrogate (``"\\ud800"``) cannot be encoded. Both raise ``InvalidStateKeyError``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath

from defstate.errors import InvalidStateKeyError

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-[]")
_HEX = frozenset("0123456789abcdefABCDEF")
_CHUNK = 200
_CONTINUED = "+"
MAX_ENCODED_KEY_LENGTH = 900


def _shown(key: str) -> str:
    return repr(key) if len(key) <= 40 else repr(key[:40]) + "..."


def encode_key(key: str) -> PurePosixPath:
    """Return the relative directory path for ``key`` (one or more parts)."""
    if not isinstance(key, str) or not key:
        shown = _shown(key) if isinstance(key, str) else type(key).__name__
        raise InvalidStateKeyError(f"a state key must be a non-empty string, got {shown}")
    return _encode(key)


_ALL_SAFE = re.compile(rf"[A-Za-z0-9_\-\[\]]{{1,{_CHUNK}}}")


@functools.lru_cache(maxsize=8192)  # a refresh or load asks for each key's path several times
def _encode(key: str) -> PurePosixPath:
    if _ALL_SAFE.fullmatch(key):  # the usual key: encoded as it is, in one chunk
        return PurePosixPath(key)
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidStateKeyError(
            f"state key {_shown(key)} is not valid Unicode text (a lone surrogate at "
            f"character {exc.start})"
        ) from None
    length = sum(1 if b in _SAFE else 3 for b in raw)
    if length > MAX_ENCODED_KEY_LENGTH:
        raise InvalidStateKeyError(
            f"state key {_shown(key)} is too long: {length} characters encoded, the limit is "
            f"{MAX_ENCODED_KEY_LENGTH} (characters outside A-Z a-z 0-9 _ - [ ] count 3 per "
            "UTF-8 byte)"
        )
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)
    chunks = [encoded[i : i + _CHUNK] for i in range(0, len(encoded), _CHUNK)]
    parts = [chunk + _CONTINUED for chunk in chunks[:-1]] + [chunks[-1]]
    return PurePosixPath(*parts)


def decode_key(path: PurePosixPath | str) -> str:
    """Invert :func:`encode_key`; raises ``InvalidStateKeyError`` for paths it never produces."""
    parts = PurePosixPath(path).parts
    if not parts:
        raise InvalidStateKeyError("empty state key path")
    text = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if last == part.endswith(_CONTINUED):
            raise InvalidStateKeyError(f"{_shown(str(path))} is not an encoded state key")
        text += part if last else part[: -len(_CONTINUED)]
    raw = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            digits = text[i + 1 : i + 3]
            if len(digits) != 2 or not all(c in _HEX for c in digits):
                raise InvalidStateKeyError(f"{_shown(str(path))} is not an encoded state key")
            raw.append(int(digits, 16))
            i += 3
        elif ord(char) < 128 and ord(char) in _SAFE:
            raw.append(ord(char))
            i += 1
        else:
            raise InvalidStateKeyError(f"{_shown(str(path))} is not an encoded state key")
    try:
        key = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidStateKeyError(f"{_shown(str(path))} is not an encoded state key") from None
    if encode_key(key) != PurePosixPath(path):
        raise InvalidStateKeyError(f"{_shown(str(path))} is not an encoded state key")
    return key


def find_keys(folders: Callable[[PurePosixPath], Iterable[str]]) -> list[str]:
    """Every key stored below a state root, sorted; ``folders(relative)`` names the
    sub-folders of ``relative`` (``PurePosixPath()`` is the root).

    A long key's ``+`` chunks are followed down; hidden names and names that are not an
    encoded key (written by something else) are skipped.
    """
    found: list[str] = []
    pending = [PurePosixPath()]
    while pending:
        folder = pending.pop()
        for name in folders(folder):
            if name.startswith("."):
                continue  # .gitignore, .tmp-*, probes: never a key (encoded keys never are)
            relative = folder / name
            if name.endswith(_CONTINUED):
                pending.append(relative)
                continue
            try:
                found.append(decode_key(relative))
            except InvalidStateKeyError:
                continue
    return sorted(found)
