"""The one log format of ``defstate serve`` and ``defstate dev``.

Every line a code location prints goes through :mod:`logging` with one of two formats:

* ``text``: ``2026-12-01T22:18:24.123Z INFO    message`` (ISO 8601 UTC, the level, the text);
* ``json``: one object per line: ``time``, ``level``, ``logger``, ``message`` and the event's
  fields (``url``, ``seconds``, ``assets``...), for log shippers.

Kept apart from the HTTP layer, so the web server (uvicorn) logs through the same handler.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
log = logging.getLogger("defstate.serve")


def _iso(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class TextFormatter(logging.Formatter):
    """``TIME LEVEL message`` (plus the traceback of ``log.exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_iso(record.created)} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every logger (defstate's, the web server's) to one handler on ``stream``
    (default stdout), formatted as ``fmt``, from ``level`` up."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def event(message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one line of the code location's story (``serving ...``, ``reloaded ...``); the
    ``fields`` are structured data in the JSON format."""
    log.log(level, message, extra={"fields": fields})
    for handler in logging.getLogger().handlers:
        handler.flush()
