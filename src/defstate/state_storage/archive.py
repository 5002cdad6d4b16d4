"""Packing a state (a file or a directory) into bytes, and back, with integrity checks."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import IO

from defstate.errors import StateIntegrityError

_BLOCK = 1 << 20  # what is read at a time: states are never held in memory whole


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def same_state(a: Path, b: Path) -> bool:
    """Whether two states hold the same bytes: two files with equal contents, or two
    directory trees with the same names, kinds, link targets and file contents (modes and
    times are not compared, as the versioned archive ignores them). Sizes and listings are
    compared first; contents in 1 MiB blocks, stopping at the first difference."""
    kind_a, kind_b = _kind(os.lstat(a)), _kind(os.lstat(b))
    if kind_a != kind_b or kind_a == "other":
        return False
    if kind_a == "file":
        return a.stat().st_size == b.stat().st_size and _same_bytes(a, b)
    tree_a, tree_b = _tree(a), _tree(b)
    if tree_a != tree_b:
        return False
    return all(
        _same_bytes(a / name, b / name) for name, (kind, _) in tree_a.items() if kind == "file"
    )


def _kind(stat: os.stat_result) -> str:
    import stat as st

    if st.S_ISLNK(stat.st_mode):
        return "link"
    if st.S_ISDIR(stat.st_mode):
        return "directory"
    return "file" if st.S_ISREG(stat.st_mode) else "other"


def _tree(root: Path) -> dict[str, tuple[str, int | str]]:
    """``{relative name: (kind, size or link target)}`` of every entry under ``root``."""
    entries: dict[str, tuple[str, int | str]] = {}
    folders = [""]
    while folders:
        folder = folders.pop()
        with os.scandir(root / folder) as listing:
            for entry in listing:
                name = f"{folder}/{entry.name}" if folder else entry.name
                kind = _kind(entry.stat(follow_symlinks=False))
                if kind == "directory":
                    folders.append(name)
                detail: int | str = 0
                if kind == "link":
                    detail = os.readlink(entry.path)
                elif kind == "file":
                    detail = entry.stat(follow_symlinks=False).st_size
                entries[name] = (kind, detail)
    return entries


def _same_bytes(a: Path, b: Path) -> bool:
    with a.open("rb") as left, b.open("rb") as right:
        while True:
            block = left.read(_BLOCK)
            if block != right.read(_BLOCK):
                return False
            if not block:
                return True


def _write_tar(path: Path, fileobj: IO[bytes]) -> None:
    """A deterministic gzip'd tar of ``path``'s contents written to ``fileobj`` (sorted,
    zero times and owners, no name or timestamp in the gzip header), streamed file by file,
    so the same directory always gives the same bytes and sha256."""
    with (
        gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=fileobj, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for item in sorted(path.rglob("*")):
            if item.is_symlink() or not (item.is_file() or item.is_dir()):
                continue  # state is data: links and devices are not carried
            info = tar.gettarinfo(str(item), arcname=item.relative_to(path).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if item.is_dir() else 0o644
            if item.is_file():
                with item.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


def pack_directory(path: Path) -> bytes:
    """:func:`_write_tar` into memory (small states: code-server snapshots)."""
    buffer = io.BytesIO()
    _write_tar(path, buffer)
    return buffer.getvalue()


def pack_directory_to_file(path: Path, target: Path) -> None:
    """:func:`_write_tar` into the file ``target``, never holding the archive in memory
    (removed again if packing fails, e.g. on a full disk)."""
    try:
        with target.open("wb") as handle:
            _write_tar(path, handle)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def unpack_directory(data: bytes | Path, target: Path) -> None:
    """Extract an archive made by :func:`pack_directory` (bytes, or a file streamed from
    disk) into ``target`` (created)."""
    target.mkdir(parents=True)
    if isinstance(data, Path):
        with tarfile.open(data, mode="r:gz") as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths, '..' and links out
        return
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(target, filter="data")


def pack_state(path: Path) -> tuple[bytes, bool]:
    """A state's bytes (a directory packed by :func:`pack_directory`) and whether it is one."""
    is_directory = path.is_dir()
    return (pack_directory(path) if is_directory else path.read_bytes()), is_directory


def unpack_state(data: bytes, target: Path, *, is_directory: bool) -> None:
    """Write a state made by :func:`pack_state` at ``target``: a file, or a directory."""
    if is_directory:
        unpack_directory(data, target)
    else:
        target.write_bytes(data)


def verify(data: bytes, *, size: int | None, sha256: str | None, what: str) -> None:
    """Raise ``StateIntegrityError`` when ``data`` does not match its recorded size/sha256."""
    if size is not None and len(data) != size:
        raise StateIntegrityError(
            f"{what}: expected {size} bytes, got {len(data)} (truncated or corrupted)"
        )
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise StateIntegrityError(f"{what}: sha256 mismatch (corrupted)")


def verify_file(path: Path, *, size: int | None, sha256: str | None, what: str) -> None:
    """:func:`verify` for a file on disk, streamed (never read whole)."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise StateIntegrityError(
            f"{what}: expected {size} bytes, got {actual} (truncated or corrupted)"
        )
    if sha256 is not None and sha256_file(path) != sha256:
        raise StateIntegrityError(f"{what}: sha256 mismatch (corrupted)")
