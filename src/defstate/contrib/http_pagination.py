"""Pagination of JSON APIs: from one page of a catalog to the next.

:class:`Pagination` is the ``pagination:`` attribute of
:class:`~defstate.contrib.http.HttpCatalogComponent`. The styles real APIs use:

``next_link``
    The body names the next page's URL (absolute or relative) at ``next_path``
    (``links.next``, ``next``); a missing, ``null`` or empty value ends the catalog.
``link_header``
    The ``Link`` response header's ``rel="next"`` URL (RFC 8288; GitHub, GitLab).
``cursor``
    The body holds a cursor at ``cursor_path`` (``data.next_cursor`` — Fivetran); the next
    request is the first URL with ``cursor_param=<cursor>``. No cursor: the end.
``offset``
    Requests carry ``offset_param`` (and ``limit_param=page_size``); the offset grows by the
    number of items received. An empty page, or ``total_path``'s total reached, is the end.
``page_number``
    Requests carry ``page_param`` (``first_page``, then one more each time; and
    ``limit_param=page_size``). An empty page, or ``total_pages_path``'s count reached, is
    the end.

A catalog larger than ``max_pages`` pages fails the refresh (it is never cut off silently),
and so does a page that points back to a page already fetched (a loop). Next links must stay
on the first URL's origin: request headers and tokens are sent only there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urljoin, urlsplit

import attrs

from defstate.contrib.json_paths import MISSING, is_field_path, lookup
from defstate.contrib.urls import origin, with_query
from defstate.errors import AttributeValueError, TerminalRefreshError
from defstate.redaction import redact_url

PaginationKind = Literal["none", "next_link", "link_header", "cursor", "offset", "page_number"]

# `<url>; rel="next"; ...` entries of a Link header (commas inside <...> are part of the URL)
_LINK: Final = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL: Final = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


class PaginationError(TerminalRefreshError):
    """The pages do not chain up: a loop, too many pages, a next link off the origin."""


@attrs.define(kw_only=True)
class Pagination:
    """How to get from one page of a catalog to the next (see the module documentation)."""

    kind: PaginationKind = "none"
    next_path: str | None = None
    """``next_link``: the dotted field path of the next page's URL."""
    cursor_path: str | None = None
    """``cursor``: the dotted field path of the next cursor."""
    cursor_param: str = "cursor"
    """``cursor``: the query parameter the cursor is sent in."""
    offset_param: str = "offset"
    """``offset``: the query parameter of the first item's position."""
    page_param: str = "page"
    """``page_number``: the query parameter of the page number."""
    first_page: int = 1
    """``page_number``: the number of the first page."""
    limit_param: str | None = "limit"
    """``offset``, ``page_number``: the query parameter of the page size (``None``: not sent)."""
    page_size: int | None = None
    """``offset``, ``page_number``: the items asked for per page (sent as ``limit_param``)."""
    total_path: str | None = None
    """``offset``: optional field path of the total number of items."""
    total_pages_path: str | None = None
    """``page_number``: optional field path of the number of pages."""
    max_pages: int = 1000
    """More pages than this fail the refresh: a runaway API, or a limit to raise."""

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What is wrong with these settings, as ``(attribute path, message)`` pairs."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        required = {"next_link": "next_path", "cursor": "cursor_path"}.get(self.kind)
        if required and not getattr(self, required):
            found.append(((required,), f"pagination kind {self.kind!r} needs {required}"))
        if self.max_pages < 1:
            found.append((("max_pages",), "max_pages must be at least 1"))
        if self.page_size is not None and self.page_size < 1:
            found.append((("page_size",), "page_size must be at least 1"))
        for name in ("next_path", "cursor_path", "total_path", "total_pages_path"):
            path = getattr(self, name)
            if path is not None and not is_field_path(path):
                found.append(((name,), f"{path!r} is not a dotted field path"))
        return found

    def check(self) -> None:
        """Raise :class:`AttributeValueError` (paths under ``pagination``) for bad settings."""
        for where, message in self.problems():
            raise AttributeValueError(("pagination", *where), message)

    def first_url(self, url: str) -> str:
        """The URL of the first page."""
        if self.kind == "offset":
            return with_query(url, self._sized({self.offset_param: "0"}))
        if self.kind == "page_number":
            return with_query(url, self._sized({self.page_param: str(self.first_page)}))
        return url

    def next_url(
        self,
        first: str,
        current: str,
        document: Any,
        headers: Mapping[str, str],
        items: Sequence[Any],
    ) -> str | None:
        """The next page's URL after ``current`` (which held ``items``), or ``None``."""
        if self.kind == "none":
            return None
        if self.kind == "link_header":
            target = next_from_link_header(headers.get("Link") or headers.get("link") or "")
            return None if target is None else self._same_origin(first, urljoin(current, target))
        if self.kind == "next_link":
            assert self.next_path is not None
            target = lookup(document, self.next_path)
            if target is MISSING or target in (None, ""):
                return None
            if not isinstance(target, str):
                raise PaginationError(f"next_path {self.next_path!r} is not a URL: {target!r}")
            return self._same_origin(first, urljoin(current, target))
        if self.kind == "cursor":
            assert self.cursor_path is not None
            cursor = lookup(document, self.cursor_path)
            if cursor is MISSING or cursor in (None, ""):
                return None
            return with_query(first, {self.cursor_param: str(cursor)})
        if self.kind == "page_number":
            return self._next_page_number(current, document, items)
        return self._next_offset(current, document, items)

    def _next_offset(self, current: str, document: Any, items: Sequence[Any]) -> str | None:
        if not items:
            return None
        offset = _query_int(current, self.offset_param, 0) + len(items)
        if self.total_path is not None:
            total = lookup(document, self.total_path)
            if total is not MISSING and isinstance(total, int) and offset >= total:
                return None
        return with_query(current, self._sized({self.offset_param: str(offset)}))

    def _next_page_number(self, current: str, document: Any, items: Sequence[Any]) -> str | None:
        if not items:
            return None
        number = _query_int(current, self.page_param, self.first_page) + 1
        if self.total_pages_path is not None:
            pages = lookup(document, self.total_pages_path)
            last = self.first_page + pages - 1 if isinstance(pages, int) else None
            if last is not None and number > last:
                return None
        return with_query(current, self._sized({self.page_param: str(number)}))

    def _sized(self, query: dict[str, str]) -> dict[str, str]:
        if self.limit_param and self.page_size:
            query[self.limit_param] = str(self.page_size)
        return query

    @staticmethod
    def _same_origin(first: str, target: str) -> str:
        if origin(target) != origin(first):
            raise PaginationError(
                f"the next page {redact_url(target)} is on another origin than "
                f"{redact_url(first)}; credentials are sent only to the catalog's origin"
            )
        return target


def _query_int(url: str, name: str, default: int) -> int:
    value = dict(parse_qsl(urlsplit(url).query)).get(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise PaginationError(f"query parameter {name}={value!r} is not a number") from None


def next_from_link_header(value: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header value, or ``None``."""
    for match in _LINK.finditer(value):
        for rel in _REL.finditer(match.group(2)):
            relations = (rel.group(1) or rel.group(2) or "").lower().split()
            if "next" in relations:
                return match.group(1).strip()
    return None
