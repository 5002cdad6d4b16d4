"""HttpCatalogComponent at API scale: pagination, OAuth2 tokens, items that do not fit.

A real HTTP server on 127.0.0.1 serves a 250-item catalog in pages of 100, in the four
pagination styles, behind an OAuth2 client-credentials token endpoint.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest

from conftest import REPO_ROOT, HttpServers, LocalHttpServer, ProjectFactory, QuietHandler, run_cli
from defstate import LoadResult, load_defs, refresh_state
from defstate.contrib.http import HttpCatalogComponent, load_state
from defstate.contrib.http_pagination import next_from_link_header

ITEMS = 250
PAGE = 100
CLIENT_ID = "defstate-client"
CLIENT_SECRET = "cl1ent-s3cret-value"


@attrs.define
class Catalog:
    """What the server serves; tests change it, the handler reads it."""

    items: list[Any] = attrs.field(
        factory=lambda: [{"schema": "raw", "name": f"t{i:03d}"} for i in range(ITEMS)]
    )
    oauth: bool = False
    tokens_issued: int = 0
    expires_in: int | None = 3600
    revoked: set[str] = attrs.field(factory=set)
    requests: list[str] = attrs.field(factory=list)
    token_bodies: list[str] = attrs.field(factory=list)
    next_override: str | None = None  # a next link the test wants served
    echo_auth: bool = False  # each page's first item shows the Authorization it came with


class PagedServer(LocalHttpServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog = Catalog()


class PagedHandler(QuietHandler):
    server: PagedServer

    def do_POST(self) -> None:
        catalog = self.server.catalog
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        catalog.token_bodies.append(body)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = parse_qs(body)
        if self.headers.get("Authorization") != f"Basic {expected}" or form.get("grant_type") != [
            "client_credentials"
        ]:
            # echoes what it got, like real servers do: messages must still mask it
            self._json(401, {"error": "invalid_client", "got": self.headers.get("Authorization")})
            return
        catalog.tokens_issued += 1
        answer: dict[str, Any] = {
            "access_token": f"tok-{catalog.tokens_issued}",
            "token_type": "Bearer",
        }
        if catalog.expires_in is not None:
            answer["expires_in"] = catalog.expires_in
        self._json(200, answer)

    def do_GET(self) -> None:
        catalog = self.server.catalog
        catalog.requests.append(self.path)
        if catalog.oauth:
            auth = self.headers.get("Authorization") or ""
            token = auth.removeprefix("Bearer ")
            valid = token.startswith("tok-") and token not in catalog.revoked
            if not valid:
                self._json(401, {"error": "invalid_token"})
                return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        style = parts.path.strip("/")
        getattr(self, f"_{style}")(query)

    def _page(self, start: int, size: int = PAGE) -> list[Any]:
        page = list(self.server.catalog.items[start : start + size])
        if self.server.catalog.echo_auth and page:
            page[0] = {**page[0], "fetched_with": self.headers.get("Authorization")}
        return page

    def _next_link(self, query: dict[str, str]) -> None:
        page = int(query.get("page", "0"))
        more = (page + 1) * PAGE < len(self.server.catalog.items)
        target = self.server.catalog.next_override or f"/next_link?page={page + 1}"
        link = target if more else None
        self._json(200, {"data": {"tables": self._page(page * PAGE)}, "links": {"next": link}})

    def _link_header(self, query: dict[str, str]) -> None:
        page = int(query.get("page", "0"))
        headers = {}
        if (page + 1) * PAGE < len(self.server.catalog.items):
            url = f"{self.server.base_url}/link_header?page={page + 1}"
            headers["Link"] = (
                f'<{url}&x=a,b>; rel="next", <{self.server.base_url}/link_header>; rel="first"'
            )
        self._json(200, {"data": {"tables": self._page(page * PAGE)}}, headers)

    def _cursor(self, query: dict[str, str]) -> None:
        start = int(query["cursor"].removeprefix("c")) if "cursor" in query else 0
        end = start + PAGE
        cursor = f"c{end}" if end < len(self.server.catalog.items) else None
        self._json(200, {"data": {"tables": self._page(start), "next_cursor": cursor}})

    def _page_number(self, query: dict[str, str]) -> None:
        number, size = int(query["page"]), int(query["per_page"])
        pages = -(-len(self.server.catalog.items) // size)
        body = {"data": {"tables": self._page((number - 1) * size, size)}, "pages": pages}
        self._json(200, body)

    def _offset(self, query: dict[str, str]) -> None:
        start, size = int(query["offset"]), int(query.get("limit", "30"))
        total = len(self.server.catalog.items)
        self._json(200, {"data": {"tables": self._page(start, size)}, "total": total})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.reply(status, json.dumps(body).encode(), headers=headers)


@pytest.fixture
def server(http_servers: HttpServers, monkeypatch: pytest.MonkeyPatch) -> PagedServer:
    server = http_servers.start(PagedHandler, PagedServer)
    monkeypatch.setenv("PAGES_PORT", str(server.port))
    monkeypatch.setenv("PAGES_CLIENT_SECRET", CLIENT_SECRET)
    return server


PAGINATION = {
    "next_link": "{kind: next_link, next_path: links.next}",
    "link_header": "{kind: link_header}",
    "cursor": "{kind: cursor, cursor_path: data.next_cursor}",
    "offset": "{kind: offset, page_size: 100, total_path: total}",
    "page_number": "{kind: page_number, page_size: 100, limit_param: per_page, total_pages_path: pages}",
}

OAUTH2 = """
  oauth2:
    token_url: "http://127.0.0.1:{{ env.PAGES_PORT }}/token"
    client_id: defstate-client
    client_secret: "{{ env.PAGES_CLIENT_SECRET }}"
    scope: catalog.read
"""


def _project(
    make_project: ProjectFactory, style: str, *, extra: str = "", pagination: str | None = None
) -> Path:
    return make_project(
        {
            "defs/catalog/defs.yaml": f"""
type: defstate.contrib.http.HttpCatalogComponent
attributes:
  url: "http://127.0.0.1:{{{{ env.PAGES_PORT }}}}/{style}"
  timeout: 5
  retry: {{kind: none}}
  items_path: data.tables
  mapping: {{key: [schema, name]}}
  pagination: {pagination or PAGINATION[style]}
{extra}
"""
        }
    )


def _ok(result: LoadResult) -> LoadResult:
    assert not result.errors, [str(e) for e in result.errors]
    return result


def _records(project: Path) -> list[dict[str, Any]]:
    files = sorted((project / "defs" / ".local_defs_state").rglob("record-*.json"))
    return [json.loads(f.read_text()) for f in files]


@pytest.mark.parametrize("style", sorted(PAGINATION))
def test_every_page_of_the_catalog_is_read(
    server: PagedServer, make_project: ProjectFactory, style: str
) -> None:
    project = _project(make_project, style)
    keys = {k.to_string() for k in _ok(load_defs(project, dev=True)).definitions.asset_keys}
    assert keys == {f"raw/t{i:03d}" for i in range(ITEMS)}
    assert len(server.catalog.requests) == 3  # 100 + 100 + 50: no request past the end
    (record,) = _records(project)
    assert record["counts"] == {"items": ITEMS, "skipped_items": 0}


def test_offset_without_a_total_stops_at_the_first_empty_page(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    project = _project(make_project, "offset", pagination="{kind: offset, page_size: 100}")
    assert len(_ok(load_defs(project, dev=True)).definitions.assets) == ITEMS
    assert server.catalog.requests[-1] == "/offset?offset=250&limit=100"
    assert len(server.catalog.requests) == 4


def test_a_server_capping_the_page_size_loses_no_items(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    # asks for 500 per page; the server sends 30 (its own limit): offsets follow what came
    project = _project(
        make_project, "offset", pagination="{kind: offset, page_size: 500, limit_param: null}"
    )
    assert len(_ok(load_defs(project, dev=True)).definitions.assets) == ITEMS


def test_more_pages_than_max_pages_fail_and_keep_the_previous_state(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    project = _project(make_project, "cursor")
    before = _ok(load_defs(project, dev=True)).definitions
    yaml_path = project / "defs" / "catalog" / "defs.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace("next_cursor}", "next_cursor, max_pages: 2}")
    )
    result = load_defs(project, dev=True)
    (error,) = result.errors
    assert "has more than 2 pages (pagination.max_pages)" in str(error)
    assert result.definitions == before


def test_a_next_link_loop_or_another_origin_fails(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    project = _project(make_project, "next_link")
    server.catalog.next_override = "/next_link?page=0"
    assert "pagination loops" in str(load_defs(project, dev=True).errors[0])
    server.catalog.next_override = "http://elsewhere.example/next_link?page=1"
    message = str(load_defs(project, dev=True).errors[0])
    assert "is on another origin" in message


def test_link_header_parsing() -> None:
    header = (
        '<https://api.example/x?page=2&a=1,2>; rel="next last", <https://api.example/x>; rel=first'
    )
    assert next_from_link_header(header) == "https://api.example/x?page=2&a=1,2"
    assert next_from_link_header('<https://a/x>; rel="prev"') is None
    assert next_from_link_header("<https://a/y>; REL=next") == "https://a/y"
    assert next_from_link_header("") is None


# --- OAuth2 client credentials -------------------------------------------------------------


def test_oauth2_token_is_requested_once_and_sent_on_every_page(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    server.catalog.oauth = True
    server.catalog.echo_auth = True
    project = _project(make_project, "cursor", extra=OAUTH2)
    _ok(load_defs(project, dev=True))
    assert server.catalog.tokens_issued == 1
    assert parse_qs(server.catalog.token_bodies[0]) == {
        "grant_type": ["client_credentials"],
        "scope": ["catalog.read"],
    }
    state_text = next((project / "defs" / ".local_defs_state").rglob("state")).read_text()
    records = json.dumps(_records(project))
    for text in (state_text, records):
        assert CLIENT_SECRET not in text and "tok-1" not in text
    # the server echoed the token in items: stored masked
    assert state_text.count('"fetched_with": "Bearer ***"') == 3


def test_an_expired_or_revoked_token_is_renewed(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    server.catalog.oauth = True
    server.catalog.expires_in = 10  # inside the 30 s margin: renewed before every page
    server.catalog.echo_auth = True
    project = _project(make_project, "cursor", extra=OAUTH2)
    assert len(_ok(load_defs(project, dev=True)).definitions.assets) == ITEMS
    assert server.catalog.tokens_issued == 3
    state_text = next((project / "defs" / ".local_defs_state").rglob("state")).read_text()
    assert "tok-" not in state_text  # every token of the refresh, not only the last one

    server.catalog.expires_in = None
    server.catalog.tokens_issued = 0
    server.catalog.revoked = {"tok-1"}  # the first token is refused: one new one, then on
    assert len(_ok(load_defs(project, dev=True)).definitions.assets) == ITEMS
    assert server.catalog.tokens_issued == 2


def test_refused_client_credentials_fail_without_showing_the_secret(
    server: PagedServer, make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.catalog.oauth = True
    monkeypatch.setenv("PAGES_CLIENT_SECRET", "Wrong-Secret-99")
    project = _project(make_project, "cursor", extra=OAUTH2)
    done = run_cli("state", "refresh", cwd=project)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "the OAuth2 token endpoint refused the client credentials: HTTP 401" in output
    assert "Wrong-Secret-99" not in output
    basic = base64.b64encode(f"{CLIENT_ID}:Wrong-Secret-99".encode()).decode()
    assert basic not in output  # the server echoed the Basic header: masked
    assert server.catalog.requests == []  # no page was asked for without a token
    assert "Wrong-Secret-99" not in json.dumps(_records(project))


def test_oauth2_and_an_authorization_header_conflict(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    extra = OAUTH2 + '  headers: {Authorization: "Bearer x"}\n'
    (error,) = load_defs(_project(make_project, "cursor", extra=extra)).errors
    assert "an Authorization header and oauth2 are both set" in error.message
    assert error.location is not None and error.location.line >= 12


def test_oauth2_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    component = HttpCatalogComponent(
        url="https://api.example/x",
        items_path="",
        mapping={"key": "name"},  # type: ignore[arg-type]
    )
    assert "client_secret" not in repr(component)


# --- items that do not fit ------------------------------------------------------------------


def _with_bad_items(server: PagedServer) -> None:
    server.catalog.items[7] = {"schema": "raw"}  # no name
    server.catalog.items[160] = {"schema": "raw", "name": "t000"}  # a duplicate key
    server.catalog.items[201] = "not an object"


def test_items_that_do_not_fit_are_skipped_warned_and_counted(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    _with_bad_items(server)
    project = _project(make_project, "next_link")
    done = run_cli("state", "refresh", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "warning: [HttpCatalog[127.0.0.1:" in done.stderr
    assert "skipped 3 of 250 item(s) that do not fit the mapping" in done.stderr
    assert """item {"schema": "raw"} has no key field 'name'""" in done.stderr
    (record,) = _records(project)
    assert record["status"] == "succeeded"
    assert record["counts"] == {"items": ITEMS - 3, "skipped_items": 3}
    assert len(record["warnings"]) == 1
    state_file = next((project / "defs" / ".local_defs_state").rglob("state"))
    assert "two items map to asset key raw/t000" in done.stderr
    # the state holds the catalog as served, items that do not fit this mapping included
    assert len(load_state(state_file)["items"]) == ITEMS
    assert len(_ok(load_defs(project)).definitions.assets) == ITEMS - 3
    first = state_file.read_bytes()
    assert refresh_state(project).ok
    assert state_file.read_bytes() == first  # unchanged input: identical bytes


def test_strict_fails_on_the_first_item_that_does_not_fit(
    server: PagedServer, make_project: ProjectFactory
) -> None:
    _with_bad_items(server)
    project = _project(make_project, "next_link", extra="  strict: true\n")
    (error,) = load_defs(project, dev=True).errors
    # the first in stored (canonical) order
    assert 'item "not an object" is a string, not an object' in str(error)
    assert "refresh failed" in str(error)


@pytest.mark.parametrize(
    ("pagination", "expected"),
    [
        ("{kind: cursor}", "pagination kind 'cursor' needs cursor_path"),
        ("{kind: next_link}", "pagination kind 'next_link' needs next_path"),
        ("{kind: offset, max_pages: 0}", "max_pages must be at least 1"),
        ("{kind: pages}", "expected 'none' | 'next_link'"),
        ("{kind: cursor, cursor_path: 'a..b'}", "is not a dotted field path"),
    ],
)
def test_bad_pagination_is_reported_at_its_line(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, pagination: str, expected: str
) -> None:
    monkeypatch.setenv("PAGES_PORT", "1")
    (error,) = load_defs(_project(make_project, "cursor", pagination=pagination)).errors
    assert expected in error.message
    assert error.location is not None and error.location.line == 8


def test_example_project(tmp_path: Path, http_servers: HttpServers) -> None:
    import functools
    import shutil
    from http.server import SimpleHTTPRequestHandler

    example = tmp_path / "http_paged_catalog"
    shutil.copytree(REPO_ROOT / "examples" / "http_paged_catalog", example)

    class QuietStatic(QuietHandler, SimpleHTTPRequestHandler):
        pass

    handler = functools.partial(QuietStatic, directory=str(example / "api"))
    static = http_servers.start(handler, LocalHttpServer)
    env = {"CATALOG_PORT": str(static.port)}
    done = run_cli("state", "refresh", cwd=example, env=env)
    assert done.returncode == 0, done.stderr
    assert "warning: [PagedCatalog] skipped 1 of 36 item(s)" in done.stderr
    listed = run_cli("list", "defs", "--no-refresh", "--json", cwd=example, env=env)
    static.stop()
    assets = {a["key"]: a for a in json.loads(listed.stdout)["assets"]}
    assert len(assets) == 35
    assert assets["staging/stg_03"]["deps"] == ["raw/source_03", "raw/source_13"]
    assert assets["raw/source_24"]["metadata"] == {"row_count": 1024}
    (record,) = _records(example)
    assert record["counts"] == {"items": 35, "skipped_items": 1}


def test_token_requests_and_answers() -> None:
    from defstate.contrib.oauth2 import (
        OAuth2ClientCredentials,
        OAuth2TokenError,
        parse_token_response,
    )

    config = OAuth2ClientCredentials(
        token_url="https://auth.example/token",
        client_id="id:1",
        client_secret="s&cret/1",
        extra_params={"audience": "api"},
        client_auth="body",
    )
    body, headers = config.token_request()
    assert parse_qs(body.decode()) == {
        "grant_type": ["client_credentials"],
        "audience": ["api"],
        "client_id": ["id:1"],
        "client_secret": ["s&cret/1"],
    }
    assert "Authorization" not in headers
    basic = attrs.evolve(config, client_auth="basic")
    _, headers = basic.token_request()
    # RFC 6749 2.3.1: form-encoded before Basic encoding
    assert (
        base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == b"id%3A1:s%26cret%2F1"
    )
    assert "s&cret/1" not in repr(config)

    assert parse_token_response(b'{"access_token": "t", "expires_in": "60"}') == ("t", 60.0)
    assert parse_token_response(b'{"access_token": "t", "token_type": "bearer"}') == ("t", None)
    for answer, message in [
        (b"<html>", "not JSON"),
        (b'{"error": "x"}', "no access_token"),
        (b'{"access_token": "t", "token_type": "mac"}', "a 'mac' token, not a bearer"),
    ]:
        with pytest.raises(OAuth2TokenError, match=message):
            parse_token_response(answer)
