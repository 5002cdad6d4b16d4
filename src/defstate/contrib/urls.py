"""URL helpers of the HTTP components: origins, queries (redaction: defstate.redaction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (defaulted) of ``url``: where credentials may be sent."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(parts.scheme)


def with_query(url: str, values: Mapping[str, str]) -> str:
    """``url`` with the query parameters ``values`` set (the others kept, in order)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in values]
    query += list(values.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
