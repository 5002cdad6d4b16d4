"""Errors raised by users' components: one line naming where they were raised, and the
traceback into the user's code for ``--debug``. Both are redacted (:mod:`defstate.redaction`).

An exception that crossed a process boundary (process executors) keeps both: the child
:func:`annotate`\\ s it before it is pickled, and the attributes travel with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from defstate.errors import DefstateError
from defstate.redaction import redact

_RAISED_AT = "_defstate_raised_at"
_TRACEBACK = "_defstate_traceback"
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB = os.path.dirname(os.path.abspath(os.__file__)) + os.sep


def _frames(tb: TracebackType | None) -> list[tuple[str, int]]:
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def _is_library(filename: str) -> bool:
    path = os.path.abspath(filename)
    return (
        path.startswith(_STDLIB)
        or "site-packages" in path
        or "dist-packages" in path
        or filename.startswith("<")
    )


def _shown(filename: str) -> str:
    try:
        return Path(filename).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return filename


def raised_at(exc: BaseException) -> str | None:
    """``file:line`` of the deepest frame of the user's code that ``exc`` passed through
    (not defstate, not the standard library or an installed package); None when there is
    none (the error came from defstate's own components or from a library alone)."""
    known = getattr(exc, _RAISED_AT, None)
    if isinstance(known, str):
        return known
    frames = [
        f for f in _frames(exc.__traceback__) if not os.path.abspath(f[0]).startswith(_PACKAGE)
    ]
    own = [f for f in frames if not _is_library(f[0])]
    if not own:  # raised by defstate itself or a library it called: the entry says enough
        return None
    filename, line = own[-1]
    return f"{_shown(filename)}:{line}"


def describe_exception(exc: BaseException) -> str:
    """One redacted line: a defstate error's message, or ``Type: message (raised at f:l)``."""
    if isinstance(exc, DefstateError):
        return redact(str(exc))
    where = raised_at(exc)
    suffix = f" (raised at {where})" if where else ""
    return redact(f"{type(exc).__name__}: {exc}{suffix}")


def format_traceback(exc: BaseException | None) -> str | None:
    """The redacted traceback of ``exc`` (with its causes), for ``--debug``."""
    if exc is None:
        return None
    known = getattr(exc, _TRACEBACK, None)
    if isinstance(known, str):
        return redact(known)  # formatted in another process: redact with this one's secrets
    import traceback  # only when an error is reported: keeps `import defstate` light

    return redact("".join(traceback.format_exception(exc)))


def annotate(exc: BaseException) -> BaseException:
    """Store where ``exc`` was raised and its traceback on it, before it leaves the process
    (exception attributes survive pickling; tracebacks do not)."""
    try:
        setattr(exc, _RAISED_AT, raised_at(exc))
        setattr(exc, _TRACEBACK, format_traceback(exc))
    except (AttributeError, TypeError):  # an exception type with __slots__
        pass
    return exc
