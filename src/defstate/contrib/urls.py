"""URL helpers shared by the HTTP components: redaction for messages, origins, queries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK: Final = "***"
"""What replaces a secret in a message."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# `scheme://user:password@`: the password part of the authority
_PASSWORD: Final = re.compile(r"(://[^/?#@:]*):[^/?#]*@")


def host_label(hostname: str | None, port: int | None) -> str:
    """``host[:port]``, with an IPv6 address in brackets."""
    host = hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def redact_url(url: str) -> str:
    """``url`` for messages: the password and query-string values masked, no fragment.

    The user name stays (``postgresql://loader:***@db/x``: which account was refused matters).
    """
    # first by pattern, so that a URL urlsplit cannot take apart never shows its password
    url = _PASSWORD.sub(rf"\1:{MASK}@", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    location = host_label(parts.hostname, port)
    if parts.username is not None:
        secret = f":{MASK}" if parts.password is not None else ""
        location = f"{parts.username}{secret}@{location}"
    return urlunsplit((parts.scheme, location, parts.path, query, ""))


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
