"""Secrets never leave the process: every value known to be secret is replaced by ``***``.

What is secret (registered as the project is read, in every process that reads it):

- every value a template ``{{ env.NAME }}`` / ``{{ env('NAME') }}`` expanded to, in
  ``defs.yaml`` attributes, in the state storage URL and in its storage options;
- every string of ``[tool.defstate.state_storage.storage_options]`` under a credential-like
  name (``key``, ``secret``, ``token``, ``password``, ... see :data:`CREDENTIAL_OPTION_WORDS`).

Values shorter than :data:`MIN_SECRET_LENGTH` characters are not redacted (masking every
``1`` or ``on`` would make output unreadable, and such a value protects nothing), nor are
the words of defstate's own vocabulary (:data:`PUBLIC_VALUES`: management types, booleans),
which its output shows anyway (``management_type: "{{ env.STATE_MODE }}"`` keeps a pin usable).

Everything defstate prints or writes passes through :func:`redact` (text) or
:func:`redact_data` (JSON-like documents): CLI output, log records, error messages (also of
exceptions raised by user code), refresh records, ``state history`` and every HTTP endpoint.
A secret is also found in the forms it takes in JSON, in ``repr()`` and percent-encoded in URLs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

if TYPE_CHECKING:  # logging is imported only by processes that log (not by list defs)
    import logging

MASK = "***"
MIN_SECRET_LENGTH = 4

# A storage option whose (lower-cased) name contains one of these words holds a credential.
CREDENTIAL_OPTION_WORDS = (
    "key",
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "sas",
    "connection_string",
    "auth",
)

# Words defstate prints itself, whatever the environment: never secrets. (The management
# types are checked against ManagementType by the tests.)
PUBLIC_VALUES = frozenset(
    {
        "LOCAL_FILESYSTEM",
        "VERSIONED_STATE_STORAGE",
        "LEGACY_CODE_SERVER_SNAPSHOTS",
        "true",
        "false",
        "True",
        "False",
        "null",
        "None",
        "none",
    }
)

_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def register_secret(value: object) -> None:
    """Treat ``value`` (a string) as secret from now on, in this process."""
    global _pattern
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH or value in PUBLIC_VALUES:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _pattern = _compile(_secrets)


def register_credentials(options: Mapping[str, Any]) -> None:
    """Register every string in ``options`` stored under a credential-like name (any depth)."""
    for name, value in options.items():
        credential = any(word in str(name).lower() for word in CREDENTIAL_OPTION_WORDS)
        for text in _strings(value):
            if credential:
                register_secret(text)
        if isinstance(value, Mapping):
            register_credentials(value)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)


def secret_values() -> frozenset[str]:
    """The secrets registered in this process (to hand to a child process)."""
    with _lock:
        return frozenset(_secrets)


def adopt_secrets(values: Iterable[str]) -> None:
    """In a child process: treat the parent's secrets as secret, and redact what it prints."""
    for value in values:
        register_secret(value)
    redact_standard_streams()


def redact_standard_streams() -> None:
    """From now on, everything this process writes to ``sys.stdout``/``sys.stderr`` is
    redacted (the CLI calls this first; child processes of refreshes too)."""
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))


def forget_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def _variants(secret: str) -> set[str]:
    """The forms ``secret`` takes in JSON, in ``repr()`` and in URLs."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    }


def _compile(secrets: Iterable[str]) -> re.Pattern[str]:
    forms = {form for secret in secrets for form in _variants(secret) if form}
    # longest first: a secret containing another one is masked as a whole
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def has_secrets() -> bool:
    """Whether any secret is registered: until one is, :func:`redact` and :func:`redact_data`
    return what they are given."""
    return _pattern is not None


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not isinstance(text, str):
        return text
    return pattern.sub(MASK, text)


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for UTF-8 bytes (bytes that are not UTF-8 pass through unchanged)."""
    if _pattern is None or not data:
        return data
    return redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def redact_optional(text: str | None) -> str | None:
    """:func:`redact` that passes ``None`` through (an attrs converter for optional text)."""
    return None if text is None else redact(text)


def redact_data(value: Any) -> Any:
    """A JSON-like document with every string in it (keys too) redacted."""
    pattern = _pattern
    return value if pattern is None else _substitute(value, pattern)


def redact_data_with(value: Any, secrets: Iterable[str]) -> Any:
    """:func:`redact_data` that also masks ``secrets``: values secret to one operation only
    (a request's credentials, an OAuth2 token), which are never registered process-wide.

    The same rules apply to them (every form JSON, ``repr()`` and URLs give a secret; none
    shorter than :data:`MIN_SECRET_LENGTH`; never a word of :data:`PUBLIC_VALUES`).
    """
    extra = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH and s not in PUBLIC_VALUES}
    if not extra:
        return redact_data(value)
    with _lock:
        every = _secrets | extra
    return _substitute(value, _compile(every))


def _substitute(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, Mapping):
        return {_substitute(k, pattern): _substitute(v, pattern) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_substitute(v, pattern) for v in value]
    return value


class RedactingFilter:
    """A logging filter that redacts the formatted message (and a traceback) of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        import logging

        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = getattr(record, "fields", None)  # structured fields of serve's JSON log
        if isinstance(fields, Mapping):
            record.fields = redact_data(fields)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger).

    Handler filters run for records of every logger that propagates to them.
    """
    import logging

    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingStream:
    """A text stream that redacts what is written to it (the CLI wraps stdout and stderr)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    @property
    def wrapped(self) -> IO[str]:
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# --- URLs in messages: one rule for storage, HTTP and database URLs -------------------

# `scheme://user:password@`: the password part of the authority
_PASSWORD = re.compile(r"(://[^/?#@:]*):[^/?#]*@")


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
