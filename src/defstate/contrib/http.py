"""A JSON catalog served over HTTP as state-backed assets.

:class:`HttpCatalogComponent` fetches a JSON document from an HTTP endpoint — a data
catalog's API, an ingestion service's connection list — and maps the items of one list in
it to assets with a small declarative field mapping. Refreshing fetches (with headers, a
timeout and retries) and stores only the mapped fields; building definitions reads only
that file, so loading a project never contacts the endpoint. Only the standard library's
``urllib`` is used, and only during a refresh.

A ``defs.yaml`` entry::

    type: defstate.contrib.http.HttpCatalogComponent
    attributes:
      url: "https://catalog.example.com/api/tables?page_size=500"
      headers:
        Authorization: "Bearer {{ env.CATALOG_TOKEN }}"
      timeout: 10                  # seconds
      retry: {kind: backoff, max_attempts: 4, multiplier: 1, min: 1, max: 30}
      items_path: data.tables      # dotted path to the list of items in the response
      mapping:
        key: [schema, name]        # one field path, or several joined as key parts
        deps: upstream             # "a/b" strings or lists of key parts
        description: description
        group: domain
        owners: owner              # a string or a list of strings
        tags: labels               # an object, or a list of strings (tags with "" values)
        metadata:
          row_count: stats.rows    # metadata name -> field path

**Field paths** are dotted: ``stats.rows`` reads ``item["stats"]["rows"]``; a number
indexes a list (``owners.0``). A key field whose value is a string containing ``/`` adds
several key parts (``"raw/orders"``); a list value adds one part per element.

**Secrets**: header values are sent, never stored, logged or shown: they are left out of
the component's ``repr``, the state and every error message (a response body that echoes
one is masked). Error messages show the URL without credentials and with query-string
values masked (``?api_key=***``). Headers are not forwarded when a redirect leaves the
URL's origin (scheme, host and port).

**Retries** (:class:`RetryPolicy`, the vocabulary of dlt and of defstate refreshes):
``kind: none`` tries once; ``fixed`` waits ``min`` seconds between ``max_attempts``
attempts; ``backoff`` waits ``multiplier * 2**(n-1)`` seconds after attempt ``n``, clamped
to ``[min, max]``. Server errors (5xx), 429, timeouts and connection errors are retried (a
``Retry-After`` in seconds is honoured up to ``max``); other 4xx answers, invalid JSON and
a response that does not fit the mapping are not, and raise
:class:`~defstate.TerminalRefreshError` subclasses so refresh retries skip them too.

**State key**: ``HttpCatalog[<host>[:port]<path>]``; set ``defs_state: {key: ...}`` when
the URL varies between environments.

**State format**: one UTF-8 JSON file, keys sorted, two-space indent, trailing newline::

    {
      "format": "defstate.http/1",
      "fields": ["description", "name", "schema", ...],   # the mapped field paths, sorted
      "items": [{"name": "orders", "schema": "raw", "stats.rows": 12, ...}, ...]
    }

Each item holds only the mapped fields present in it, keyed by field path; items are sorted
by asset key, so an unchanged catalog refreshes to identical bytes. A mapping that uses a
field the stored state lacks is an error asking for a refresh, never a silent ``null``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import attrs

from defstate.components import ComponentLoadContext, StateBackedComponent
from defstate.components.json_state import dump_json_state, load_json_state
from defstate.components.policies import RetryPolicy
from defstate.definitions import AssetKey, AssetSpec, Definitions
from defstate.errors import (
    AttributeValueError,
    ComponentStateError,
    RefreshError,
    TerminalRefreshError,
)

if TYPE_CHECKING:
    import urllib.request

    from tenacity import RetryCallState

STATE_FORMAT: Final = "defstate.http/1"
"""The ``format`` of the state this module writes and reads."""

MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
"""A larger response is refused: a catalog that big is a wrong URL or a runaway endpoint."""

BODY_EXCERPT_CHARS: Final = 200
"""How much of a response body an error message shows."""

# Headers defstate sets itself; every other header came from the user and may be secret.
_OWN_HEADERS: Final = ("Accept", "User-agent")

_MASK: Final = "***"

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class HttpCatalogError(RefreshError):
    """Fetching or reading the catalog failed."""


class HttpRequestError(HttpCatalogError):
    """The request failed: an HTTP error status, a timeout or a connection error.

    ``transient`` is true for 5xx, 429, timeouts and connection errors; ``retry_after`` is
    the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, transient=retryable)
        self.status = status
        self.retry_after = retry_after

    def with_suffix(self, suffix: str) -> HttpRequestError:
        """The same error with ``suffix`` appended to its message."""
        return type(self)(
            self.message + suffix,
            status=self.status,
            retryable=self.transient,
            retry_after=self.retry_after,
        )


class HttpRejectedError(HttpRequestError, TerminalRefreshError):
    """The server refused the request (4xx other than 429): retrying cannot help."""


class HttpCatalogFormatError(HttpCatalogError, TerminalRefreshError):
    """The response is not JSON, or does not fit ``items_path`` and ``mapping``."""


class CatalogMappingError(ComponentStateError):
    """An item's fields do not fit the mapping (e.g. no key field)."""


class HttpCatalogStateError(ComponentStateError):
    """Stored state is unreadable or does not fit the current mapping."""


# --- configuration -----------------------------------------------------------------------


@attrs.define(kw_only=True)
class FieldMapping:
    """Which item fields (dotted paths) become which parts of an asset spec."""

    key: str | list[str]
    deps: str | None = None
    description: str | None = None
    group: str | None = None
    owners: str | None = None
    tags: str | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)

    @property
    def key_paths(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    def named_paths(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every mapped field path with its attribute path (for error messages)."""
        named: list[tuple[tuple[str | int, ...], str]] = []
        if isinstance(self.key, str):
            named.append((("key",), self.key))
        else:
            named += [(("key", i), p) for i, p in enumerate(self.key)]
        for name in ("deps", "description", "group", "owners", "tags"):
            path = getattr(self, name)
            if path is not None:
                named.append(((name,), path))
        named += [(("metadata", n), p) for n, p in self.metadata.items()]
        return named

    @property
    def field_paths(self) -> list[str]:
        """The distinct field paths the mapping reads, sorted."""
        return sorted({path for _, path in self.named_paths()})


@attrs.define(kw_only=True)
class HttpCatalogComponent(StateBackedComponent):
    """One asset per item of a JSON catalog fetched over HTTP (see the module doc)."""

    url: str
    """The ``http://`` or ``https://`` URL of the JSON document."""
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    """Request headers, e.g. ``Authorization``; never stored or shown."""
    timeout: float = 10.0
    """Seconds the server may stay silent, and the limit for downloading the response."""
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    """When failed requests are retried."""
    items_path: str
    """Dotted path to the list of items in the response; ``""`` for the document itself."""
    mapping: FieldMapping
    """Which item fields make which parts of the asset specs."""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Check the URL, timeout, headers and field paths."""
        component = super().from_attributes(attributes, context)
        if not _is_http_url(component.url):
            raise AttributeValueError(
                ("url",), f"expected an http:// or https:// URL, got {redact_url(component.url)!r}"
            )
        if not component.timeout > 0:
            raise AttributeValueError(("timeout",), "timeout must be more than 0 seconds")
        for name, value in component.headers.items():
            problem = header_problem(name, value)
            if problem:
                raise AttributeValueError(("headers", name), problem)
        paths: list[tuple[tuple[str | int, ...], str]] = []
        if component.items_path:
            paths.append((("items_path",), component.items_path))
        paths += [(("mapping", *where), path) for where, path in component.mapping.named_paths()]
        for where, path in paths:
            if not path or any(not segment for segment in path.split(".")):
                raise AttributeValueError(where, f"{path!r} is not a dotted field path")
        return component

    def get_defs_state_key(self) -> str:
        """``HttpCatalog[<host>[:port]<path>]``."""
        parts = urlsplit(self.url)
        return f"HttpCatalog[{_host(parts.hostname, parts.port)}{parts.path}]"

    def write_state_to_path(self, state_path: Path) -> None:
        """Fetch the catalog and write its items' mapped fields to the file ``state_path``."""
        document = fetch_json(
            self.url, headers=self.headers, timeout=self.timeout, retry=self.retry
        )
        try:
            items = items_at(document, self.items_path)
            state = make_state(items, self.mapping)
        except CatalogMappingError as exc:
            raise HttpCatalogFormatError(
                f"the response from {redact_url(self.url)}: {exc}"
            ) from None
        state_path.write_bytes(dump_json_state(state))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """One asset per stored item; none without state."""
        if state_path is None:
            return Definitions()
        state = load_state(state_path)
        missing = sorted(set(self.mapping.field_paths) - set(state["fields"]))
        if missing:
            raise HttpCatalogStateError(
                f"the mapping uses field(s) {', '.join(missing)} that the stored state does not "
                f"have (the mapping changed since the last refresh): refresh {self.defs_state_key}"
            )
        return Definitions(assets=asset_specs_from_state(state, self.mapping))


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def header_problem(name: str, value: str) -> str | None:
    """Why a header cannot be sent, or ``None``; never quotes the value."""
    if not name or any(c in name for c in " \t\r\n:") or not name.isascii():
        return f"{name!r} is not a valid header name"
    if any(c in value for c in "\r\n\0"):
        # http.client would refuse too, but its message quotes the (secret) value
        return f"the value of header {name!r} contains a line break or NUL"
    return None


# --- fetching ----------------------------------------------------------------------------


def _host(hostname: str | None, port: int | None) -> str:
    host = hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{host}:{port}" if port else host


def redact_url(url: str) -> str:
    """``url`` for messages: no user:password, query-string values masked, no fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(an invalid URL)"
    query = "&".join(
        f"{name}={_MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, _host(parts.hostname, port), parts.path, query, ""))


def secret_words(headers: Mapping[str, str]) -> list[str]:
    """What must never appear in a message: each header value, and its longer words."""
    words = {value for value in headers.values() if value}
    # "Bearer abc123": a server that echoes only the token must not reveal it either
    words |= {word for value in headers.values() for word in value.split() if len(word) >= 4}
    return sorted(words, key=len, reverse=True)


def body_excerpt(body: bytes, secrets: Sequence[str], limit: int = BODY_EXCERPT_CHARS) -> str:
    """The start of a response body on one line, with secrets masked."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return text if len(text) <= limit else text[:limit] + "…"


def fetch_json(
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    retry: RetryPolicy,
) -> Any:
    """GET ``url`` and parse the JSON response, retrying as ``retry`` says.

    Raises :class:`HttpRequestError` (:class:`HttpRejectedError` for a refusal) or
    :class:`HttpCatalogFormatError` for a response that is not JSON.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    secrets = secret_words(headers)
    policy_wait = retry.tenacity_wait()

    def wait(state: RetryCallState) -> float:
        seconds = policy_wait(state)
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, HttpRequestError) and failure.retry_after is not None:
            # The server knows best when it will be ready, but never wait past `max`.
            seconds = max(seconds, min(failure.retry_after, retry.max))
        return seconds

    attempts = 0
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(retry.attempts),
            wait=wait,
            retry=retry_if_exception(
                lambda exc: isinstance(exc, HttpRequestError) and exc.transient
            ),
            reraise=True,
        ):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                body = http_get(url, headers=headers, timeout=timeout, secrets=secrets)
    except HttpRequestError as exc:
        if attempts > 1:
            raise exc.with_suffix(f" (gave up after {attempts} attempts)") from None
        raise
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HttpCatalogFormatError(
            f"the response from {redact_url(url)} is not JSON ({exc}): "
            f"{body_excerpt(body, secrets)!r}"
        ) from None


def http_get(
    url: str, *, headers: Mapping[str, str], timeout: float, secrets: Sequence[str] = ()
) -> bytes:
    """One GET request: the response body, or an :class:`HttpRequestError`."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    shown = redact_url(url)
    request = urllib.request.Request(
        url,
        headers={"Accept": "application/json", "User-Agent": "defstate", **headers},
        method="GET",
    )
    deadline = time.monotonic() + timeout
    try:
        with _opener().open(request, timeout=timeout) as response:
            return _read_body(response, deadline, shown, timeout)
    except urllib.error.HTTPError as exc:
        raise _status_error(exc, shown, secrets) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _timeout_error(shown, timeout) from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise HttpRejectedError(
                f"cannot verify the TLS certificate of {shown}: {reason}"
            ) from None
        raise HttpRequestError(f"cannot connect to {shown}: {reason}", retryable=True) from None
    except TimeoutError:
        raise _timeout_error(shown, timeout) from None
    except (OSError, http.client.HTTPException) as exc:
        raise HttpRequestError(
            f"the connection to {shown} failed: {type(exc).__name__}: {exc}", retryable=True
        ) from None


def _read_body(response: Any, deadline: float, shown: str, timeout: float) -> bytes:
    # Each read waits at most `timeout` (the socket's); the deadline also ends a server that
    # keeps trickling bytes. read1 returns what has arrived instead of waiting for a full chunk.
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise HttpCatalogFormatError(
                f"the response from {shown} is larger than {MAX_RESPONSE_BYTES} bytes"
            )
        if time.monotonic() > deadline:
            raise _timeout_error(shown, timeout)
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout_error(shown: str, timeout: float) -> HttpRequestError:
    return HttpRequestError(f"GET {shown} timed out after {timeout:g} s", retryable=True)


def _status_error(exc: Any, shown: str, secrets: Sequence[str]) -> HttpRequestError:
    """The error for an HTTP error status (``exc`` is a ``urllib.error.HTTPError``)."""
    status = int(exc.code)
    try:
        body = exc.read(4096)
    except Exception:  # the body is only decoration for the message
        body = b""
    finally:
        exc.close()
    excerpt = body_excerpt(body, secrets)
    message = f"HTTP {status} {exc.reason} from GET {shown}" + (f": {excerpt!r}" if excerpt else "")
    retryable = status >= 500 or status == 429
    retry_after = _retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
    error_type = HttpRequestError if retryable else HttpRejectedError
    return error_type(message, status=status, retryable=retryable, retry_after=retry_after)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds; the HTTP-date form is ignored (clocks disagree)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(parts.scheme)


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """An opener (environment proxies, redirects) that keeps headers within one origin."""
    import urllib.request
    from http.client import HTTPMessage
    from typing import IO

    class SameOriginHeadersRedirect(urllib.request.HTTPRedirectHandler):
        # urllib forwards every header to wherever a redirect points; an Authorization
        # header must not follow a redirect to another host.
        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: IO[bytes],
            code: int,
            msg: str,
            headers: HTTPMessage,
            newurl: str,
        ) -> urllib.request.Request | None:
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and _origin(newurl) != _origin(req.full_url):
                new.headers = {k: v for k, v in new.headers.items() if k in _OWN_HEADERS}
            return new

    return urllib.request.build_opener(SameOriginHeadersRedirect)


# --- mapping items to state and assets ---------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What :func:`lookup` returns for a path that is not in the document."""


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` (numbers index lists), or :data:`MISSING`."""
    value = document
    for segment in path.split("."):
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value


def items_at(document: Any, items_path: str) -> list[Any]:
    """The list of items at ``items_path`` (``""``: the document itself)."""
    value = lookup(document, items_path) if items_path else document
    where = f"items_path {items_path!r}" if items_path else "the document"
    if value is MISSING:
        raise CatalogMappingError(f"{where} is not in the response")
    if not isinstance(value, list):
        raise CatalogMappingError(f"{where} is {_json_type(value)}, not a list")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")


def make_state(items: Sequence[Any], mapping: FieldMapping) -> dict[str, Any]:
    """The state for fetched items: their mapped fields, sorted by asset key, checked."""
    fields = mapping.field_paths
    records: list[tuple[AssetKey, dict[str, Any]]] = []
    seen: dict[AssetKey, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise CatalogMappingError(f"item {index} is {_json_type(item)}, not an object")
        record = {path: value for path in fields if (value := lookup(item, path)) is not MISSING}
        # Build the whole spec now: a bad item fails the refresh, not every later load.
        spec = asset_spec(record, mapping, f"item {index}")
        if spec.key in seen:
            raise CatalogMappingError(
                f"items {seen[spec.key]} and {index} both map to asset key {spec.key}"
            )
        seen[spec.key] = index
        records.append((spec.key, record))
    records.sort(key=lambda pair: pair[0].path)
    return {"format": STATE_FORMAT, "fields": fields, "items": [r for _, r in records]}


def load_state(state_path: Path) -> dict[str, Any]:
    """Read a state file written by this component, checking its format."""
    return load_json_state(
        state_path, state_format=STATE_FORMAT, what="catalog", error=HttpCatalogStateError
    )


def asset_specs_from_state(state: Mapping[str, Any], mapping: FieldMapping) -> list[AssetSpec]:
    """The asset specs for a state document."""
    return [
        asset_spec(record, mapping, f"stored item {index}")
        for index, record in enumerate(state["items"])
    ]


def asset_spec(record: Mapping[str, Any], mapping: FieldMapping, where: str) -> AssetSpec:
    """One item's spec; ``record`` maps field paths to values (absent: not in the item)."""

    def text(path: str | None) -> str | None:
        value = None if path is None else record.get(path)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise CatalogMappingError(f"{where}: {path!r} is {_json_type(value)}, not a string")

    try:
        return AssetSpec(
            key=_key(record, mapping.key_paths, where),
            deps=_deps(record, mapping.deps, where),
            description=text(mapping.description),
            group_name=text(mapping.group),
            owners=_strings(record, mapping.owners, where),
            tags=_tags(record, mapping.tags, where),
            metadata={
                name: record[path] for name, path in mapping.metadata.items() if path in record
            },
        )
    except ValueError as exc:
        if isinstance(exc, CatalogMappingError):
            raise
        raise CatalogMappingError(f"{where}: {exc}") from None


def _key_parts(value: Any, path: str, where: str) -> list[str]:
    if isinstance(value, str):
        return value.split("/")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise CatalogMappingError(f"{where}: key field {path!r} is {_json_type(value)}")


def _key(record: Mapping[str, Any], paths: Sequence[str], where: str) -> AssetKey:
    parts: list[str] = []
    for path in paths:
        value = record.get(path)
        if value is None:
            raise CatalogMappingError(f"{where} has no key field {path!r}")
        parts += _key_parts(value, path, where)
    return AssetKey(tuple(parts))


def _deps(record: Mapping[str, Any], path: str | None, where: str) -> list[AssetKey]:
    value = None if path is None else record.get(path)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    deps = []
    for dep in values:
        if isinstance(dep, str) or (
            isinstance(dep, list) and dep and all(isinstance(p, str) for p in dep)
        ):
            deps.append(AssetKey.from_user(dep))
        else:
            raise CatalogMappingError(
                f"{where}: deps field {path!r} holds {_json_type(dep)}; expected 'a/b' or [a, b]"
            )
    return deps


def _strings(record: Mapping[str, Any], path: str | None, where: str) -> list[str]:
    value = None if path is None else record.get(path)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise CatalogMappingError(f"{where}: {path!r} is {_json_type(value)}, not a list of strings")


def _tags(record: Mapping[str, Any], path: str | None, where: str) -> dict[str, str]:
    value = None if path is None else record.get(path)
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, str):
        return {value: ""}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return dict.fromkeys(value, "")
    raise CatalogMappingError(f"{where}: tags field {path!r} is {_json_type(value)}")
