"""Packing a state (a file or a directory) into bytes, and back, with integrity checks."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from defstate.errors import StateIntegrityError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_directory(path: Path) -> bytes:
    """A deterministic gzip'd tar of ``path``'s contents (sorted, zero times and owners), so
    the same directory always gives the same bytes and sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
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
    # gzip stores a timestamp in its header; zero it so the bytes are reproducible
    data = bytearray(buffer.getvalue())
    data[4:8] = b"\x00\x00\x00\x00"
    return bytes(data)


def unpack_directory(data: bytes, target: Path) -> None:
    """Extract an archive made by :func:`pack_directory` into ``target`` (created)."""
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(target, filter="data")  # refuses absolute paths, '..' and links out


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
