"""A JSON catalog served over HTTP as state-backed assets.

:class:`HttpCatalogComponent` fetches a JSON document from an HTTP endpoint — a data
catalog's API, an ingestion service's connection list — and maps the items of one list in
it to assets with a small declarative field mapping. Refreshing fetches (with headers, a
timeout and retries) and stores every item whole; building definitions maps the stored
items and reads only that file, so loading a project never contacts the endpoint. Only the
standard library's ``urllib`` is used, and only during a refresh.

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
      pagination:                  # optional: see defstate.contrib.http_pagination
        kind: cursor               # none|next_link|link_header|cursor|offset|page_number
        cursor_path: data.next_cursor
        max_pages: 1000
      oauth2: {token_url: ..., client_id: ..., client_secret: ...}  # see defstate.contrib.oauth2
      strict: false                # true: an item that does not fit fails the refresh

**Pages** are fetched one after the other, each with the retries below; the items of all
pages are one catalog. A catalog with more than ``max_pages`` pages fails the refresh.

**The mapping is applied when definitions are built**, not when state is written: the state
holds the catalog as the endpoint sent it, so instances that share a state key (the same
``url`` and ``items_path``) may map it differently, and a changed mapping needs no refresh.

**Items that do not fit** the mapping (not an object, no key field, a field of the wrong
type, a key that another item already has) are skipped: the refresh prints a warning quoting
them and its record counts them (``counts.skipped_items``), both for the mapping of the
instance that refreshed. With ``strict: true`` such an item fails the refresh instead (the
previous state stays), and a load that finds one in the stored state fails that instance.

**Field paths** are dotted: ``stats.rows`` reads ``item["stats"]["rows"]``; a number
indexes a list (``owners.0``). A key field whose value is a string containing ``/`` adds
several key parts (``"raw/orders"``); a list value adds one part per element.

**Secrets**: header values are sent, never stored, logged or shown: they are left out of
the component's ``repr``, the state and every error message (a response body that echoes
one is masked). In the stored items, the values (and their words) of credential headers
(``Authorization``, ``X-Api-Key``, ``Cookie``, ...), the OAuth2 client secret, every token
of the refresh and every ``{{ env.* }}`` value are replaced by ``***``
(:func:`defstate.redaction.redact_data_with`). Error messages show the URL without
credentials and with query-string values masked (``?api_key=***``). Headers are not
forwarded when a redirect leaves the URL's origin (scheme, host and port).

**Retries** (:class:`RetryPolicy`, the vocabulary of dlt and of defstate refreshes):
``kind: none`` tries once; ``fixed`` waits ``min`` seconds between ``max_attempts``
attempts; ``backoff`` waits ``multiplier * 2**(n-1)`` seconds after attempt ``n``, clamped
to ``[min, max]``. Server errors (5xx), 429, timeouts and connection errors are retried (a
``Retry-After`` in seconds is honoured up to ``max``); other 4xx answers, invalid JSON and
a response that does not fit the mapping are not, and raise
:class:`~defstate.TerminalRefreshError` subclasses so refresh retries skip them too.

**State key**: ``HttpCatalog[<host>[:port]<path>]``, with ``,query=<8 hex digits>`` (a hash
of the query string) when the URL has one and ``,items=<items_path>`` when that is set: the
parts of the configuration that decide what is stored, so instances that fetch different
items never share a key, while instances that only map or filter differently do. Set
``defs_state: {key: ...}`` when the URL varies between environments, and give instances that
read one URL with different credentials (which may see different catalogs) their own keys.

**State format**: one UTF-8 JSON file, keys sorted, two-space indent, trailing newline::

    {
      "format": "defstate.http/2",
      "items": [{"name": "orders", "schema": "raw", "stats": {"rows": 12}, ...}, ...]
    }

``items`` are the items of every page, whole (secrets masked), sorted by their canonical
JSON text: an unchanged catalog refreshes to identical bytes, whatever order the endpoint
sends its items and fields in. State of format ``defstate.http/1`` (mapped fields only) is
refused with a request to refresh.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import urlsplit

import attrs

from defstate.components import ComponentLoadContext, RefreshNotes, StateBackedComponent
from defstate.components.json_state import dump_json_state, load_json_state
from defstate.components.policies import RetryPolicy
from defstate.contrib.http_pagination import Pagination, PaginationError
from defstate.contrib.json_paths import MISSING, is_field_path, json_type, lookup
from defstate.contrib.oauth2 import BearerTokens, OAuth2ClientCredentials, OAuth2TokenError
from defstate.contrib.urls import origin
from defstate.definitions import AssetKey, AssetSpec, Definitions
from defstate.errors import (
    AttributeValueError,
    ComponentStateError,
    RefreshError,
    TerminalRefreshError,
)
from defstate.redaction import (
    CREDENTIAL_OPTION_WORDS,
    host_label,
    redact_data_with,
    redact_url,
)

if TYPE_CHECKING:
    import urllib.request

    from defstate.retrying import Failure

STATE_FORMAT: Final = "defstate.http/2"
"""The ``format`` of the state this module writes and reads."""

MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
"""A larger response is refused: a catalog that big is a wrong URL or a runaway endpoint."""

BODY_EXCERPT_CHARS: Final = 200
"""How much of a response body an error message shows."""

SKIPPED_REASONS_SHOWN: Final = 3
"""How many skipped items' reasons a refresh's warning quotes."""

ITEM_EXCERPT_CHARS: Final = 80
"""How much of an item's JSON a message quotes to say which item it means."""

# A header whose (lower-cased) name contains one of these words carries a credential: its
# value is masked in stored items too (other headers, e.g. an API version, are plain data).
_CREDENTIAL_HEADER_WORDS: Final = (*CREDENTIAL_OPTION_WORDS, "cookie", "session")

# Headers defstate sets itself; every other header came from the user and may be secret.
_OWN_HEADERS: Final = ("Accept", "User-agent", "Content-type")


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
    """The ``http://`` or ``https://`` URL of the JSON document (its first page)."""
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    """Request headers, e.g. ``Authorization``; never stored or shown."""
    timeout: float = 10.0
    """Seconds the server may stay silent, and the limit for downloading one response."""
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    """When failed requests are retried."""
    items_path: str
    """Dotted path to the list of items in each page; ``""`` for the page itself."""
    mapping: FieldMapping
    """Which item fields make which parts of the asset specs."""
    pagination: Pagination = attrs.field(factory=Pagination)
    """How to get from one page to the next (default: one page)."""
    oauth2: OAuth2ClientCredentials | None = None
    """Get a bearer token with the OAuth2 client-credentials grant."""
    strict: bool = False
    """Fail the refresh on an item that does not fit the mapping, instead of skipping it."""

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], context: ComponentLoadContext) -> Self:
        """Check the URLs, timeout, headers, pagination and field paths."""
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
        component.pagination.check()
        _check_oauth2(component)
        paths: list[tuple[tuple[str | int, ...], str]] = []
        if component.items_path:
            paths.append((("items_path",), component.items_path))
        paths += [(("mapping", *where), path) for where, path in component.mapping.named_paths()]
        for where, path in paths:
            if not is_field_path(path):
                raise AttributeValueError(where, f"{path!r} is not a dotted field path")
        return component

    def get_defs_state_key(self) -> str:
        """``HttpCatalog[<host>[:port]<path>]``, with ``,query=<hash>`` when the URL has a
        query string and ``,items=<items_path>``: what decides which items are stored."""
        parts = urlsplit(self.url)
        name = f"{host_label(parts.hostname, parts.port)}{parts.path}"
        if parts.query:
            import hashlib  # only for URLs with a query: kept off the plain load path

            # a hash: query values may be credentials (?api_key=...)
            name += f",query={hashlib.sha256(parts.query.encode()).hexdigest()[:8]}"
        if self.items_path:
            name += f",items={self.items_path}"
        return f"HttpCatalog[{name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        """Fetch every page of the catalog; write all its items, whole, to ``state_path``.

        With ``strict``, an item that does not fit this instance's mapping fails the refresh.
        """
        client = CatalogClient(
            headers=self.headers, timeout=self.timeout, retry=self.retry, oauth2=self.oauth2
        )
        items = fetch_items(client, self.url, self.items_path, self.pagination)
        state = make_state(items, secrets=client.stored_secrets)
        if self.strict:
            try:
                map_items(state["items"], self.mapping, strict=True)
            except CatalogMappingError as exc:
                raise HttpCatalogFormatError(
                    f"the response from {redact_url(self.url)}: {exc}"
                ) from None
        state_path.write_bytes(dump_json_state(state))

    def refresh_notes(self, state_path: Path) -> RefreshNotes:
        """How many items this instance's mapping kept and skipped; a warning quoting the
        first reasons."""
        mapped = map_items(load_state(state_path)["items"], self.mapping, strict=False)
        skipped = mapped.skipped
        counts = {"items": len(mapped.specs), "skipped_items": len(skipped)}
        if not skipped:
            return RefreshNotes(counts=counts)
        reasons = "; ".join(skipped[:SKIPPED_REASONS_SHOWN])
        shown = SKIPPED_REASONS_SHOWN
        more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
        warning = (
            f"skipped {len(skipped)} of {len(skipped) + len(mapped.specs)} item(s) that do not "
            f"fit the mapping (strict: true fails instead): {reasons}{more}"
        )
        return RefreshNotes(warnings=(warning,), counts=counts)

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        """One asset per stored item that fits the mapping; none without state."""
        if state_path is None:
            return Definitions()
        items = load_state(state_path)["items"]
        try:
            mapped = map_items(items, self.mapping, strict=self.strict)
        except CatalogMappingError as exc:
            raise HttpCatalogStateError(
                f"the stored state of {self.defs_state_key}: {exc} (strict: true; fix the "
                "mapping, or set strict: false to skip such items)"
            ) from None
        return Definitions(assets=mapped.specs)


def _check_oauth2(component: HttpCatalogComponent) -> None:
    if component.oauth2 is None:
        return
    if not _is_http_url(component.oauth2.token_url):
        raise AttributeValueError(
            ("oauth2", "token_url"),
            f"expected an http:// or https:// URL, got {redact_url(component.oauth2.token_url)!r}",
        )
    if any(name.lower() == "authorization" for name in component.headers):
        raise AttributeValueError(
            ("headers", "Authorization"),
            "an Authorization header and oauth2 are both set: oauth2 sends the bearer token",
        )


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


def secret_words(headers: Mapping[str, str]) -> list[str]:
    """What must never appear in a message: each header value, and its longer words."""
    words = {value for value in headers.values() if value}
    # "Bearer abc123": a server that echoes only the token must not reveal it either
    words |= {word for value in headers.values() for word in value.split() if len(word) >= 4}
    return sorted(words, key=len, reverse=True)


def credential_words(headers: Mapping[str, str]) -> list[str]:
    """The values of credential headers (``Authorization``, ``X-Api-Key``, ``Cookie``, ...)
    and their longer words, except an auth scheme (``Bearer`` of ``Bearer abc123``)."""
    words: set[str] = set()
    for name, value in headers.items():
        if not value or not any(word in name.lower() for word in _CREDENTIAL_HEADER_WORDS):
            continue
        parts = value.split()
        words |= {value, *(p for p in parts[1 if len(parts) > 1 else 0 :] if len(p) >= 4)}
    return sorted(words, key=len, reverse=True)


def body_excerpt(body: bytes, secrets: Sequence[str], limit: int = BODY_EXCERPT_CHARS) -> str:
    """The start of a response body on one line, with secrets masked."""
    text = str(redact_data_with(" ".join(body.decode("utf-8", errors="replace").split()), secrets))
    return text if len(text) <= limit else text[:limit] + "…"


@attrs.frozen
class HttpResponse:
    """A successful response: its body and headers (names lower-cased; repeated headers
    joined with ``", "``, as HTTP allows for ``Link``)."""

    body: bytes
    headers: Mapping[str, str]


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
    secrets = secret_words(headers)
    response = fetch_response(url, headers=headers, timeout=timeout, retry=retry, secrets=secrets)
    return parse_json(response.body, url, secrets)


def parse_json(body: bytes, url: str, secrets: Sequence[str]) -> Any:
    """The JSON document in a response from ``url``, or :class:`HttpCatalogFormatError`."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HttpCatalogFormatError(
            f"the response from {redact_url(url)} is not JSON ({exc}): "
            f"{body_excerpt(body, secrets)!r}"
        ) from None


def fetch_response(
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    retry: RetryPolicy,
    secrets: Sequence[str],
    data: bytes | None = None,
) -> HttpResponse:
    """One request (GET, or POST with ``data``), retried as ``retry`` says."""

    def pause(failure: Failure) -> float:
        seconds = retry.pause(failure)
        error = failure.error
        if isinstance(error, HttpRequestError) and error.retry_after is not None:
            # The server knows best when it will be ready, but never wait past `max`.
            seconds = max(seconds, min(error.retry_after, retry.max))
        return seconds

    attempts = 0

    def attempt() -> HttpResponse:
        nonlocal attempts
        attempts += 1
        return http_request(url, headers=headers, timeout=timeout, secrets=secrets, data=data)

    try:
        return retry.call(
            attempt,
            retryable=lambda exc: isinstance(exc, HttpRequestError) and exc.transient,
            pause=pause,
        )
    except HttpRequestError as exc:
        if attempts > 1:
            raise exc.with_suffix(f" (gave up after {attempts} attempts)") from None
        raise


def http_request(
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    secrets: Sequence[str] = (),
    data: bytes | None = None,
) -> HttpResponse:
    """One GET request (POST when ``data`` is given), or an :class:`HttpRequestError`."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    shown = redact_url(url)
    method = "GET" if data is None else "POST"
    label = f"{method} {shown}"
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Accept": "application/json", "User-Agent": "defstate", **headers},
        method=method,
    )
    deadline = time.monotonic() + timeout
    try:
        with _opener().open(request, timeout=timeout) as response:
            body = _read_body(response, deadline, label, timeout)
            return HttpResponse(body, _joined_headers(response.headers.items()))
    except urllib.error.HTTPError as exc:
        raise _status_error(exc, label, secrets) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _timeout_error(label, timeout) from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise HttpRejectedError(
                f"cannot verify the TLS certificate of {shown}: {reason}"
            ) from None
        raise HttpRequestError(f"cannot connect to {shown}: {reason}", retryable=True) from None
    except TimeoutError:
        raise _timeout_error(label, timeout) from None
    except (OSError, http.client.HTTPException) as exc:
        raise HttpRequestError(
            f"the connection to {shown} failed: {type(exc).__name__}: {exc}", retryable=True
        ) from None


def _joined_headers(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


class CatalogClient:
    """The requests of one refresh: headers, timeout, retries and an OAuth2 token if any."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        timeout: float,
        retry: RetryPolicy,
        oauth2: OAuth2ClientCredentials | None = None,
    ) -> None:
        self._headers = dict(headers)
        self._timeout = timeout
        self._retry = retry
        self._oauth2 = oauth2
        self._tokens = BearerTokens(oauth2, self._post_token) if oauth2 else None

    @property
    def secrets(self) -> list[str]:
        """Header values and their words, the client secret and the tokens so far."""
        words = set(secret_words(self._headers)) | set(self._tokens.secrets if self._tokens else ())
        return sorted(words, key=len, reverse=True)

    @property
    def stored_secrets(self) -> list[str]:
        """What stored items must not hold: the credential headers' values and words, the
        client secret and every token of this refresh (not plain headers: data may
        contain an ``X-Api-Version`` value)."""
        tokens = self._tokens.secrets if self._tokens else []
        return sorted({*credential_words(self._headers), *tokens}, key=len, reverse=True)

    def get_json(self, url: str) -> tuple[Any, Mapping[str, str]]:
        """GET ``url``: its JSON document and response headers. With OAuth2, a 401 answer
        gets one more try with a new token (the old one was rotated or revoked)."""
        try:
            response = self._get(url)
        except HttpRejectedError as exc:
            if self._tokens is None or exc.status != 401:
                raise
            self._tokens.invalidate()
            response = self._get(url)
        return parse_json(response.body, url, self.secrets), response.headers

    def _get(self, url: str) -> HttpResponse:
        headers = dict(self._headers)
        if self._tokens is not None:
            headers["Authorization"] = self._authorization()
        return fetch_response(
            url, headers=headers, timeout=self._timeout, retry=self._retry, secrets=self.secrets
        )

    def _authorization(self) -> str:
        assert self._tokens is not None and self._oauth2 is not None
        try:
            return self._tokens.authorization()
        except OAuth2TokenError as exc:
            raise HttpCatalogFormatError(f"{redact_url(self._oauth2.token_url)}: {exc}") from None

    def _post_token(
        self, url: str, body: bytes, headers: Mapping[str, str], secrets: list[str]
    ) -> bytes:
        masked = sorted({*secrets, *secret_words(headers)}, key=len, reverse=True)
        try:
            response = fetch_response(
                url, headers=headers, timeout=self._timeout, retry=self._retry,
                secrets=masked, data=body,
            )  # fmt: skip
        except HttpRejectedError as exc:
            raise HttpRejectedError(
                f"the OAuth2 token endpoint refused the client credentials: {exc.message}",
                status=exc.status,
            ) from None
        return response.body


def fetch_items(
    client: CatalogClient, url: str, items_path: str, pagination: Pagination
) -> list[Any]:
    """The items of every page of the catalog at ``url``, in page order."""
    items: list[Any] = []
    fetched: set[str] = set()
    page_url: str | None = pagination.first_url(url)
    while page_url is not None:
        if page_url in fetched:
            raise HttpCatalogFormatError(
                f"pagination loops: page {len(fetched)} of {redact_url(url)} points back to "
                f"{redact_url(page_url)}, which was already fetched"
            )
        if len(fetched) == pagination.max_pages:
            raise HttpCatalogFormatError(
                f"the catalog at {redact_url(url)} has more than {pagination.max_pages} pages "
                "(pagination.max_pages): raise the limit if it is really that large"
            )
        fetched.add(page_url)
        document, headers = client.get_json(page_url)
        try:
            page = items_at(document, items_path)
            next_url = pagination.next_url(url, page_url, document, headers, page)
        except (CatalogMappingError, PaginationError) as exc:
            where = f"page {len(fetched)} ({redact_url(page_url)})"
            raise HttpCatalogFormatError(f"the response from {where}: {exc}") from None
        items += page
        page_url = next_url
    return items


def _read_body(response: Any, deadline: float, label: str, timeout: float) -> bytes:
    # Each read waits at most `timeout` (the socket's); the deadline also ends a server that
    # keeps trickling bytes. read1 returns what has arrived instead of waiting for a full chunk.
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise HttpCatalogFormatError(
                f"the response to {label} is larger than {MAX_RESPONSE_BYTES} bytes"
            )
        if time.monotonic() > deadline:
            raise _timeout_error(label, timeout)
        chunks.append(chunk)
    return b"".join(chunks)


def _timeout_error(label: str, timeout: float) -> HttpRequestError:
    return HttpRequestError(f"{label} timed out after {timeout:g} s", retryable=True)


def _status_error(exc: Any, label: str, secrets: Sequence[str]) -> HttpRequestError:
    """The error for an HTTP error status (``exc`` is a ``urllib.error.HTTPError``)."""
    status = int(exc.code)
    try:
        body = exc.read(4096)
    except Exception:  # the body is only decoration for the message
        body = b""
    finally:
        exc.close()
    excerpt = body_excerpt(body, secrets)
    message = f"HTTP {status} {exc.reason} from {label}" + (f": {excerpt!r}" if excerpt else "")
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
            if new is not None and origin(newurl) != origin(req.full_url):
                new.headers = {k: v for k, v in new.headers.items() if k in _OWN_HEADERS}
            return new

    return urllib.request.build_opener(SameOriginHeadersRedirect)


# --- mapping items to state and assets ---------------------------------------------------


def items_at(document: Any, items_path: str) -> list[Any]:
    """The list of items at ``items_path`` (``""``: the document itself)."""
    value = lookup(document, items_path) if items_path else document
    where = f"items_path {items_path!r}" if items_path else "the document"
    if value is MISSING:
        raise CatalogMappingError(f"{where} is not in the response")
    if not isinstance(value, list):
        raise CatalogMappingError(f"{where} is {json_type(value)}, not a list")
    return value


def make_state(items: Sequence[Any], *, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """The state for fetched items: every item whole, ``secrets`` (and every registered
    secret) masked, sorted by canonical JSON text so that equal catalogs give equal bytes."""
    masked = redact_data_with(list(items), secrets)
    return {"format": STATE_FORMAT, "items": sorted(masked, key=_canonical_json)}


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@attrs.frozen
class MappedItems:
    """The asset specs of the items that fit a mapping (sorted by key), and one reason for
    each item that does not."""

    specs: tuple[AssetSpec, ...]
    skipped: tuple[str, ...]


def map_items(items: Sequence[Any], mapping: FieldMapping, *, strict: bool) -> MappedItems:
    """Map stored items to asset specs. An item that does not fit raises
    :class:`CatalogMappingError` when ``strict``; otherwise it is left out, with its reason.
    Messages quote the item (the state holds no other name for it)."""
    fields = mapping.field_paths
    specs: dict[AssetKey, AssetSpec] = {}
    skipped: list[str] = []
    for item in items:
        try:
            spec = _item_spec(item, mapping, fields)
            if spec.key in specs:
                raise CatalogMappingError(
                    f"two items map to asset key {spec.key} (the second: {_excerpt(item)})"
                )
        except CatalogMappingError as exc:
            if strict:
                raise
            skipped.append(str(exc))
            continue
        specs[spec.key] = spec
    ordered = sorted(specs.values(), key=lambda spec: spec.key.path)
    return MappedItems(tuple(ordered), tuple(skipped))


def _item_spec(item: Any, mapping: FieldMapping, fields: Sequence[str]) -> AssetSpec:
    where = f"item {_excerpt(item)}"
    if not isinstance(item, Mapping):
        raise CatalogMappingError(f"{where} is {json_type(item)}, not an object")
    record = {path: value for path in fields if (value := lookup(item, path)) is not MISSING}
    return asset_spec(record, mapping, where)


def _excerpt(item: Any) -> str:
    text = json.dumps(item, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= ITEM_EXCERPT_CHARS else text[:ITEM_EXCERPT_CHARS] + "…"


def load_state(state_path: Path) -> dict[str, Any]:
    """Read a state file written by this component, checking its format."""
    state = load_json_state(
        state_path, state_format=STATE_FORMAT, what="catalog", error=HttpCatalogStateError
    )
    if not isinstance(state.get("items"), list):
        raise HttpCatalogStateError(f"catalog state {state_path} has no list of items")
    return state


def asset_specs_from_state(state: Mapping[str, Any], mapping: FieldMapping) -> list[AssetSpec]:
    """The asset specs of a state document's items that fit ``mapping``."""
    return list(map_items(state["items"], mapping, strict=False).specs)


def asset_spec(record: Mapping[str, Any], mapping: FieldMapping, where: str) -> AssetSpec:
    """One item's spec; ``record`` maps field paths to values (absent: not in the item)."""

    def text(path: str | None) -> str | None:
        value = None if path is None else record.get(path)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise CatalogMappingError(f"{where}: {path!r} is {json_type(value)}, not a string")

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
    raise CatalogMappingError(f"{where}: key field {path!r} is {json_type(value)}")


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
                f"{where}: deps field {path!r} holds {json_type(dep)}; expected 'a/b' or [a, b]"
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
    raise CatalogMappingError(f"{where}: {path!r} is {json_type(value)}, not a list of strings")


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
    raise CatalogMappingError(f"{where}: tags field {path!r} is {json_type(value)}")
