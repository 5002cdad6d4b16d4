"""Refresh records: one small JSON document per refresh attempt, kept next to the state."""

from __future__ import annotations

import builtins
import functools
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from defstate.redaction import redact_optional


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)  # a list when read back from JSON


@functools.cache  # one uname per process, not per record
def _hostname() -> str:
    if hasattr(os, "uname"):  # what gethostname() returns, without importing socket
        return os.uname().nodename
    import socket

    return socket.gethostname()


@attrs.frozen(kw_only=True)
class RefreshRecord:
    """What one refresh did: who triggered it, how long, how many attempts, what it published.

    ``status`` is ``succeeded``, ``unchanged`` (same bytes as the latest version: nothing
    published), ``failed``, ``rejected`` (the guard refused it) or ``timed_out``; ``version``
    is the published (or, when unchanged, the still latest) version. ``warnings`` and
    ``counts`` are what the component noted about the state it wrote (``refresh_notes``).
    """

    key: str
    trigger: str
    started_at: str
    finished_at: str
    attempts: int
    status: str
    error: str | None = attrs.field(default=None, converter=redact_optional)  # never a secret
    version: str | None = None
    bytes: int | None = None
    warnings: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    counts: Mapping[str, int] = attrs.field(factory=dict)
    host: str = attrs.field(factory=_hostname)
    record_id: str = attrs.field(factory=lambda: os.urandom(16).hex())  # as uuid4().hex

    @property
    def file_name(self) -> str:
        """Sortable by start time: ``<started_at>-<record id>.json`` (``:`` made safe)."""
        stamp = self.started_at.replace(":", "").replace("+", "Z")
        return f"{stamp}-{self.record_id}.json"

    def to_json_dict(self) -> dict[str, Any]:
        """``attrs.asdict`` of the record, without its walk of every field's metadata (a
        record per refresh, a thousand per run)."""
        data = {name: getattr(self, name) for name in _field_names()}
        data["counts"] = dict(self.counts)
        return data

    def to_bytes(self) -> builtins.bytes:  # the field "bytes" shadows the type here
        return json.dumps(self.to_json_dict(), sort_keys=True).encode()

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> RefreshRecord:
        names = _field_names()
        return cls(**{k: v for k, v in data.items() if k in names})


@functools.cache
def _field_names() -> dict[str, None]:
    """The record's field names, in order (a dict: ``in`` is a lookup)."""
    return dict.fromkeys(f.name for f in attrs.fields(RefreshRecord))
