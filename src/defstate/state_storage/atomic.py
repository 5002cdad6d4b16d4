"""Write-aside-and-rename: the one way defstate publishes a local file or folder atomically.

Readers see the old file or the complete new one, never a partial write; a failure (a full
disk, an exception while writing) leaves no temporary behind. Folders (the download cache's
entries, materialised snapshots) are installed once and never replaced while complete:
:func:`folder_aside`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

#: temporaries start with this, then the writer's pid: listings skip them and cleanup can
#: tell an abandoned one (its process is gone) from one being written
TMP_PREFIX = ".tmp-"


def _name_parts() -> tuple[int, str]:
    """This process's id and a random token of its own (fresh after a fork)."""
    return os.getpid(), os.urandom(8).hex()


_PID, _TOKEN = _name_parts()
_SERIAL = itertools.count()


def _after_fork() -> None:
    global _PID, _TOKEN
    _PID, _TOKEN = _name_parts()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def temporary_name() -> str:
    """A fresh temporary file name, ``.tmp-<pid>-<token><serial>``: unique without a system
    call (the token is random per process, the serial counts this process's names; ``O_EXCL``
    and ``mkdir`` still refuse one that exists)."""
    return f"{TMP_PREFIX}{_PID}-{_TOKEN}{next(_SERIAL):x}"


def abandoned(name: str) -> bool:
    """Whether the temporary ``name`` (:func:`temporary_name`) was left by a process that is
    gone: its pid runs no process, or runs this one, which did not write it (another token:
    an earlier process that had the same pid, e.g. a container's PID 1 in an earlier run)."""
    pid_text = name[len(TMP_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return not name.startswith(_TOKEN, len(f"{TMP_PREFIX}{pid}-"))
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def aside_name(parent: str | os.PathLike[str]) -> str:
    """A fresh temporary name in ``parent`` (:func:`temporary_name`)."""
    return os.path.join(parent, temporary_name())


@contextlib.contextmanager
def written_aside(path: str | os.PathLike[str], *, make_parents: bool = True) -> Iterator[str]:
    """Yield a temporary sibling of ``path`` to write; renamed onto ``path`` when the block
    succeeds, removed on any failure. The parent folder is created if missing, unless
    ``make_parents`` is false (then writing raises ``FileNotFoundError``)."""
    parent = os.path.dirname(os.fspath(path)) or "."
    if make_parents:
        os.makedirs(parent, exist_ok=True)
    tmp = aside_name(parent)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_atomic(
    path: str | os.PathLike[str], data: bytes, *, make_parents: bool = True, private: bool = False
) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`written_aside`). ``private``:
    the file (and any parent folder made for it) is the user's alone, whatever the umask.

    Unbuffered: one ``open``, ``write``, ``close`` and ``rename`` (a buffered file object
    adds an ``fstat``, an ``ioctl`` and ``lseek``s, and the context manager its frames)."""
    target = os.fspath(path)
    parent = os.path.dirname(target) or "."
    if make_parents:
        os.makedirs(parent, 0o700 if private else 0o777, exist_ok=True)
    tmp = aside_name(parent)
    fd = os.open(tmp, _NEW_FILE, 0o600 if private else 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def folder_aside(
    path: str | os.PathLike[str], *, complete: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a new, empty temporary sibling folder of ``path`` to fill; renamed onto ``path``
    when the block succeeds, removed on any failure. The parent is created if missing.

    Several writers may race to install the same content: when ``path`` already exists and
    is ``complete`` (by default: exists at all) the winner's copy stays and this one goes; an
    incomplete one (a writer that died half-way) is replaced.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(aside_name(target.parent))
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if complete is None or complete(target):
                return  # another writer installed it first: same content
            _remove_tree(target)
            os.rename(tmp, target)
    finally:
        _remove_tree(tmp)


def _remove_tree(path: Path) -> None:
    import shutil  # imports bz2 and lzma: only installs need it, never a plain read

    shutil.rmtree(path, ignore_errors=True)
