"""HttpCatalogComponent against a real HTTP server on 127.0.0.1 (in a thread)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from conftest import REPO_ROOT, HttpServers, LocalHttpServer, ProjectFactory, QuietHandler, run_cli
from defstate import ComponentLoadContext, LoadResult, TerminalRefreshError, load_defs
from defstate.contrib.http import (
    STATE_FORMAT,
    CatalogMappingError,
    FieldMapping,
    HttpCatalogComponent,
    HttpCatalogFormatError,
    HttpRejectedError,
    HttpRequestError,
    RetryPolicy,
    body_excerpt,
    fetch_json,
    load_state,
    make_state,
    map_items,
    redact_url,
)

EXAMPLE = REPO_ROOT / "examples" / "http_catalog"
TOKEN = "s3cr3t-t0ken-value"
STATE_KEY = "HttpCatalog[example]"
FAST_RETRY = {"kind": "fixed", "max_attempts": 3, "min": 0.01, "max": 0.1}


@attrs.define
class Behaviour:
    """What the catalog server does; tests change it, the handler reads it."""

    body: bytes = b"{}"
    fail_first: int = 0  # answer this many requests with 503 before succeeding
    status: int | None = None  # always answer with this status
    hang: bool = False  # never answer (until the test ends)
    redirect_to: str | None = None
    requests: list[dict[str, str | None]] = attrs.field(factory=list)
    release: threading.Event = attrs.field(factory=threading.Event)


class CatalogServer(LocalHttpServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.behaviour = Behaviour(body=(EXAMPLE / "api" / "catalog.json").read_bytes())

    def stop(self) -> None:
        self.behaviour.release.set()  # a hanging handler returns
        super().stop()


class CatalogHandler(QuietHandler):
    server: CatalogServer

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        behaviour.requests.append(
            {"path": self.path, "authorization": self.headers.get("Authorization")}
        )
        if behaviour.hang:
            behaviour.release.wait(10)
            return
        if behaviour.redirect_to is not None:
            self.reply(302, b"", headers={"Location": behaviour.redirect_to})
            return
        if behaviour.status is not None:
            self._text(behaviour.status, b"no luck, your key was " + self._auth().encode())
            return
        if len(behaviour.requests) <= behaviour.fail_first:
            self._text(503, b"<html><body>Service   Unavailable\n\n(upstream busy)</body></html>")
            return
        if self._auth() != f"Bearer {TOKEN}":
            # like many APIs, it echoes what it got: the message must still hide the token
            self._text(401, f'{{"error": "invalid token {self._auth()}"}}'.encode())
            return
        self.reply(200, behaviour.body)

    def _auth(self) -> str:
        return self.headers.get("Authorization") or ""

    def _text(self, status: int, body: bytes) -> None:
        self.reply(status, body, "text/plain")


@pytest.fixture
def server(http_servers: HttpServers, monkeypatch: pytest.MonkeyPatch) -> CatalogServer:
    server = http_servers.start(CatalogHandler, CatalogServer)
    monkeypatch.setenv("CATALOG_PORT", str(server.port))
    monkeypatch.setenv("CATALOG_TOKEN", TOKEN)
    return server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example, with quick retries (the example's backoff waits seconds)."""
    root = tmp_path / "http_catalog"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".local_defs_state"))
    _set_attributes(root, retry=FAST_RETRY)
    return root


def _set_attributes(root: Path, **changes: Any) -> None:
    path = root / "defs" / "catalog" / "defs.yaml"
    document = yaml.safe_load(path.read_text())
    document["attributes"].update(changes)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _ok(result: LoadResult) -> LoadResult:
    assert not result.errors, [str(e) for e in result.errors]
    return result


def _one_error(result: LoadResult) -> str:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return str(result.errors[0])


def _state_file(root: Path) -> Path:
    return next((root / "defs" / ".local_defs_state").rglob("state"))


def _context(root: Path) -> ComponentLoadContext:
    return ComponentLoadContext(
        project_root=root,
        defs_dir=root / "defs",
        component_dir=root / "defs" / "catalog",
        source="defs/catalog/defs.yaml:1",
    )


# --- the example, end to end -------------------------------------------------------------


def test_example_assets_deps_and_metadata(server: CatalogServer, project: Path) -> None:
    result = _ok(load_defs(project, dev=True))
    assert [r.key for r in result.refreshes] == [STATE_KEY]
    assert server.behaviour.requests == [
        {"path": "/catalog.json", "authorization": f"Bearer {TOKEN}"}
    ]
    defs = result.definitions
    assert sorted(k.to_string() for k in defs.asset_keys) == [
        "marts/customer_ltv",
        "raw/customers",
        "raw/orders",
        "staging/customers",
        "staging/orders",
    ]
    ltv = defs.get_asset("marts/customer_ltv")
    assert [d.to_string() for d in ltv.deps] == ["staging/customers", "staging/orders"]
    assert ltv.description == "Lifetime value per customer."
    assert ltv.group_name == "finance"
    assert ltv.owners == ("finance@example.com", "team:analytics")
    assert ltv.tags == {"tier": "gold", "pii": "false"}
    assert ltv.metadata == {
        "row_count": 3,
        "updated_at": "2024-03-10T06:00:00Z",
        "catalog_id": "tbl-004",
    }
    customers = defs.get_asset("raw/customers")
    assert customers.deps == ()  # no `upstream` field at all
    assert customers.tags == {"raw": "", "pii": ""}
    assert customers.owners == ("data-platform@example.com",)
    assert [d.to_string() for d in defs.get_asset("staging/orders").deps] == ["raw/orders"]

    # The state holds every item whole (mapped or not), in a stable order, never the token.
    text = _state_file(project).read_text()
    assert TOKEN not in text
    state = json.loads(text)
    assert state["format"] == STATE_FORMAT
    served = json.loads(server.behaviour.body)["data"]["tables"]
    assert sorted(state["items"], key=lambda i: i["id"]) == sorted(served, key=lambda i: i["id"])
    assert {"name": "customer_id"} in state["items"][0]["columns"]  # not mapped, still kept
    assert state["items"] == sorted(state["items"], key=lambda i: json.dumps(i, sort_keys=True))


def test_example_readme_commands(server: CatalogServer, project: Path) -> None:
    env = {"CATALOG_PORT": str(server.port), "CATALOG_TOKEN": TOKEN}
    refreshed = run_cli("state", "refresh", cwd=project, env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert f"refreshed {STATE_KEY}" in refreshed.stdout
    server.stop()
    listed = run_cli("list", "defs", "--json", "--no-refresh", cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    assets = {a["key"]: a for a in json.loads(listed.stdout)["assets"]}
    assert len(assets) == 5
    assert assets["staging/customers"]["deps"] == ["raw/customers"]
    assert TOKEN not in refreshed.stdout + refreshed.stderr + listed.stdout


def test_loading_never_contacts_the_server(server: CatalogServer, project: Path) -> None:
    refreshed = _ok(load_defs(project, dev=True)).definitions
    server.stop()
    assert _ok(load_defs(project)).definitions == refreshed
    assert len(server.behaviour.requests) == 1


def test_unchanged_catalog_refreshes_to_identical_bytes(
    server: CatalogServer, project: Path
) -> None:
    _ok(load_defs(project, dev=True))
    first = _state_file(project).read_bytes()
    # the same catalog with its items and fields in another order
    catalog = json.loads(server.behaviour.body)
    catalog["data"]["tables"].reverse()
    server.behaviour.body = json.dumps(catalog, sort_keys=True, indent=4).encode()
    _ok(load_defs(project, dev=True))
    assert _state_file(project).read_bytes() == first


# --- retries, refusals and timeouts ------------------------------------------------------


def test_503_is_retried_until_it_succeeds(server: CatalogServer, project: Path) -> None:
    server.behaviour.fail_first = 2
    result = _ok(load_defs(project, dev=True))
    assert len(server.behaviour.requests) == 3
    assert len(result.definitions.assets) == 5


def test_retries_give_up_with_status_url_and_excerpt(server: CatalogServer, project: Path) -> None:
    _ok(load_defs(project, dev=True))
    before = _state_file(project).read_bytes()
    server.behaviour.fail_first = 100
    result = load_defs(project, dev=True)
    message = _one_error(result)
    assert len(server.behaviour.requests) == 1 + 3
    assert "HTTP 503" in message
    # the port came from {{ env.CATALOG_PORT }}: every value from the environment is masked
    assert "http://127.0.0.1:***/catalog.json" in message
    assert "Service Unavailable (upstream busy)" in message  # the excerpt, on one line
    assert "gave up after 3 attempts" in message
    assert "refresh failed, keeping the previous state" in message
    assert _state_file(project).read_bytes() == before
    assert len(result.definitions.assets) == 5


def test_401_is_not_retried_and_never_shows_the_token(
    server: CatalogServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATALOG_TOKEN", "wrong-token-123")
    message = _one_error(load_defs(project, dev=True))
    assert len(server.behaviour.requests) == 1
    assert "HTTP 401" in message
    assert "invalid token ***" in message  # the server echoed it; masked
    assert "wrong-token-123" not in message


@pytest.mark.parametrize(("status", "attempts"), [(404, 1), (403, 1), (429, 3), (500, 3)])
def test_which_statuses_are_retried(server: CatalogServer, status: int, attempts: int) -> None:
    server.behaviour.status = status
    with pytest.raises(HttpRequestError, match=f"HTTP {status}") as caught:
        fetch_json(
            f"{server.base_url}/catalog.json",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=2,
            retry=RetryPolicy(**FAST_RETRY),
        )
    assert len(server.behaviour.requests) == attempts
    assert caught.value.status == status
    assert isinstance(caught.value, TerminalRefreshError) == (attempts == 1)
    assert TOKEN not in str(caught.value)


def test_a_hanging_server_times_out_and_is_retried(server: CatalogServer, project: Path) -> None:
    server.behaviour.hang = True
    _set_attributes(project, timeout=0.3, retry={"kind": "fixed", "max_attempts": 2, "min": 0})
    start = time.monotonic()
    message = _one_error(load_defs(project, dev=True))
    elapsed = time.monotonic() - start
    assert "timed out after 0.3 s" in message
    assert "gave up after 2 attempts" in message
    assert len(server.behaviour.requests) == 2
    assert elapsed < 3


def test_retry_none_tries_once(server: CatalogServer) -> None:
    server.behaviour.fail_first = 1
    with pytest.raises(HttpRequestError, match="HTTP 503") as caught:
        fetch_json(server.base_url, headers={}, timeout=2, retry=RetryPolicy(kind="none"))
    assert "gave up" not in str(caught.value)
    assert len(server.behaviour.requests) == 1


def test_connection_refused_is_reported(server: CatalogServer) -> None:
    url = f"{server.base_url}/catalog.json"
    server.stop()
    with pytest.raises(HttpRequestError, match=r"cannot connect to http://127\.0\.0\.1") as caught:
        fetch_json(url, headers={}, timeout=2, retry=RetryPolicy(**FAST_RETRY))
    assert caught.value.transient
    assert "gave up after 3 attempts" in str(caught.value)


def test_retry_after_is_honoured_up_to_max(http_servers: HttpServers) -> None:
    policy = RetryPolicy(kind="fixed", max_attempts=2, min=0.01, max=0.2)
    served = {"n": 0}

    class Handler(CatalogHandler):
        def do_GET(self) -> None:
            served["n"] += 1
            if served["n"] == 1:
                self.reply(429, b"", headers={"Retry-After": "60"})  # capped to max=0.2
            else:
                self.reply(200, b"[1, 2]")

    server = http_servers.start(Handler, CatalogServer)
    start = time.monotonic()
    assert fetch_json(server.base_url, headers={}, timeout=2, retry=policy) == [1, 2]
    assert 0.2 <= time.monotonic() - start < 2


# --- secrets -----------------------------------------------------------------------------


def test_query_string_secrets_are_masked(server: CatalogServer, project: Path) -> None:
    server.behaviour.status = 404
    _set_attributes(
        project,
        url="http://127.0.0.1:{{ env.CATALOG_PORT }}/catalog.json?api_key=qs-secret-99&page=2",
    )
    message = _one_error(load_defs(project, dev=True))
    assert "qs-secret-99" not in message
    assert "/catalog.json?api_key=***&page=***" in message
    assert (
        redact_url("https://u:pw@h.example:8443/p?a=1#frag")
        == "https://u:***@h.example:8443/p?a=***"
    )


def test_headers_are_not_forwarded_across_origins(
    server: CatalogServer, http_servers: HttpServers
) -> None:
    other = http_servers.start(CatalogHandler, CatalogServer)  # another port: another origin
    server.behaviour.redirect_to = f"{other.base_url}/elsewhere.json"
    with pytest.raises(HttpRejectedError, match="HTTP 401"):
        fetch_json(
            f"{server.base_url}/catalog.json",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=2,
            retry=RetryPolicy(kind="none"),
        )
    assert server.behaviour.requests[0]["authorization"] == f"Bearer {TOKEN}"
    assert other.behaviour.requests == [{"path": "/elsewhere.json", "authorization": None}]


def test_same_origin_redirect_keeps_headers(http_servers: HttpServers) -> None:
    hops: list[str | None] = []

    class Handler(CatalogHandler):
        def do_GET(self) -> None:
            hops.append(self.headers.get("Authorization"))
            if self.path == "/old":
                self.reply(301, b"", headers={"Location": "/new"})
            else:
                self.reply(200, b"{}")

    server = http_servers.start(Handler, CatalogServer)
    fetch_json(
        f"{server.base_url}/old",
        headers={"Authorization": "Bearer x"},
        timeout=2,
        retry=RetryPolicy(kind="none"),
    )
    assert hops == ["Bearer x", "Bearer x"]


def test_header_values_stay_out_of_repr_and_errors(tmp_path: Path) -> None:
    component = HttpCatalogComponent.from_attributes(
        {
            "url": "http://127.0.0.1:9/x",
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "items_path": "",
            "mapping": {"key": "name"},
        },
        _context(tmp_path),
    )
    assert TOKEN not in repr(component)
    assert body_excerpt(f"bad: {TOKEN}!".encode(), [TOKEN]) == "bad: ***!"


# --- configuration errors ----------------------------------------------------------------

_BASE_YAML = """
type: defstate.contrib.http.HttpCatalogComponent
attributes:
  url: http://127.0.0.1:9/catalog.json
  items_path: data.tables
  mapping: {key: name}
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  timeout: 0\n", "more than 0 seconds"),
        ("  retry: {kind: sometimes}\n", "expected 'none' | 'fixed' | 'backoff'"),
        ("  retry: {max_attempts: 0}\n", "max_attempts"),
        ("  retry: {min: 5, max: 1}\n", "larger than max"),
        ('  headers: {"X-Key": "a\\nb-secret"}\n', "contains a line break"),
        ("  headers: {'bad name': v}\n", "not a valid header name"),
    ],
)
def test_invalid_attributes_are_reported_at_their_line(
    make_project: ProjectFactory, extra: str, expected: str
) -> None:
    root = make_project({"defs/c/defs.yaml": _BASE_YAML + extra})
    (error,) = load_defs(root).errors
    assert expected in error.message
    assert "secret" not in error.message
    assert error.location is not None and error.location.line > 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://h/x", "expected an http:// or https:// URL"),
        ("file:///etc/passwd", "expected an http:// or https:// URL"),
        ("http://h:port/x", "expected an http:// or https:// URL"),
        ("http://[::1/x", "got '(an invalid URL)'"),
    ],
)
def test_only_http_urls(make_project: ProjectFactory, url: str, expected: str) -> None:
    root = make_project(
        {"defs/c/defs.yaml": _BASE_YAML.replace("http://127.0.0.1:9/catalog.json", url)}
    )
    (error,) = load_defs(root).errors
    assert expected in error.message
    assert error.location is not None and error.location.line == 3


def test_bad_field_paths_are_reported(make_project: ProjectFactory) -> None:
    root = make_project(
        {
            "defs/c/defs.yaml": _BASE_YAML.replace(
                "mapping: {key: name}", "mapping: {key: name, deps: 'a..b'}"
            )
        }
    )
    (error,) = load_defs(root).errors
    assert "'a..b' is not a dotted field path" in error.message


# --- state and mapping -------------------------------------------------------------------


def test_no_state_gives_empty_definitions(tmp_path: Path) -> None:
    component = HttpCatalogComponent(
        url="http://127.0.0.1:9/x", items_path="", mapping=FieldMapping(key="name")
    )
    assert component.build_defs_from_state(_context(tmp_path), None).assets == ()
    assert component.defs_state_key == "HttpCatalog[127.0.0.1:9/x]"


def test_no_state_yet_loads_without_contacting_anything(
    server: CatalogServer, project: Path
) -> None:
    assert _ok(load_defs(project)).definitions.assets == ()
    assert server.behaviour.requests == []


def test_a_changed_mapping_applies_without_a_refresh(server: CatalogServer, project: Path) -> None:
    _ok(load_defs(project, dev=True))
    server.stop()
    document = yaml.safe_load((project / "defs/catalog/defs.yaml").read_text())
    mapping = document["attributes"]["mapping"]
    mapping["metadata"]["first_column"] = "columns.0.name"  # a field no mapping read before
    _set_attributes(project, mapping=mapping)
    defs = _ok(load_defs(project)).definitions
    # list indexes work in field paths; an item without the field has no such metadata
    assert defs.get_asset("raw/orders").metadata["first_column"] == "id"
    assert "first_column" not in defs.get_asset("staging/orders").metadata
    assert len(server.behaviour.requests) == 1


_SECOND_INSTANCE = """
type: defstate.contrib.http.HttpCatalogComponent
attributes:
  url: "http://127.0.0.1:{{ env.CATALOG_PORT }}/catalog.json"
  headers: {Authorization: "Bearer {{ env.CATALOG_TOKEN }}"}
  retry: {kind: none}
  items_path: data.tables
  strict: true
  mapping:
    key: KEY_FIELDS
    group: schema
    metadata: {columns: columns}
  defs_state: {management_type: LOCAL_FILESYSTEM, key: "HttpCatalog[example]"}
"""


def test_instances_sharing_a_key_each_map_the_catalog_their_way(
    server: CatalogServer, project: Path
) -> None:
    # One refresh (by the first instance) serves both; each applies its own mapping and
    # skipping when definitions are built, whatever the other one reads.
    (project / "defs" / "by_id").mkdir()
    (project / "defs" / "by_id" / "defs.yaml").write_text(
        _SECOND_INSTANCE.replace("KEY_FIELDS", "id")
    )
    result = _ok(load_defs(project, dev=True))
    assert [r.key for r in result.refreshes] == [STATE_KEY]
    assert len(server.behaviour.requests) == 1
    defs = result.definitions
    assert len(defs.assets) == 10
    assert defs.get_asset("raw/orders").metadata["row_count"] == 4  # the first mapping
    by_id_orders = defs.get_asset("tbl-001")  # the second: fields the first never maps
    assert by_id_orders.group_name == "raw"
    assert by_id_orders.metadata["columns"][0] == {"name": "id"}
    assert by_id_orders.deps == () and by_id_orders.owners == ()

    # strict applies to the instance that sets it, at build time too: its key field is
    # missing from every stored item, and only this instance fails
    no_field = _SECOND_INSTANCE.replace("KEY_FIELDS", "[catalog, id]")  # no item has `catalog`
    (project / "defs" / "by_id" / "defs.yaml").write_text(no_field)
    result = load_defs(project)
    message = _one_error(result)
    assert "has no key field 'catalog'" in message and "strict: true" in message
    assert len(result.definitions.assets) == 5


def test_secrets_echoed_in_items_are_masked_in_the_state(
    server: CatalogServer, project: Path
) -> None:
    catalog = json.loads(server.behaviour.body)
    first = catalog["data"]["tables"][0]
    first["links"] = {"self": f"http://api.example/t?access_token={TOKEN}"}
    first["requested_with"] = f"Bearer {TOKEN}"
    server.behaviour.body = json.dumps(catalog).encode()
    _set_attributes(
        project, headers={"Authorization": f"Bearer {TOKEN}", "X-Api-Version": "2024-03-10"}
    )
    mapping = yaml.safe_load((project / "defs/catalog/defs.yaml").read_text())["attributes"][
        "mapping"
    ]
    mapping["metadata"]["self"] = "links.self"
    _set_attributes(project, mapping=mapping)
    defs = _ok(load_defs(project, dev=True)).definitions
    text = _state_file(project).read_text()
    assert TOKEN not in text
    (item,) = [i for i in json.loads(text)["items"] if i["id"] == first["id"]]
    assert item["requested_with"] == "***"
    ltv = defs.get_asset("marts/customer_ltv").metadata
    assert ltv["self"] == "http://api.example/t?access_token=***"
    # a header that is no credential is plain data: its value stays in the items
    assert ltv["updated_at"] == "2024-03-10T06:00:00Z"


def test_default_keys_differ_where_the_stored_items_would() -> None:
    def key(url: str, items_path: str = "data.tables") -> str:
        component = HttpCatalogComponent(
            url=url, items_path=items_path, mapping=FieldMapping(key="name")
        )
        return component.defs_state_key

    base = key("https://api.example/tables")
    assert base == "HttpCatalog[api.example/tables,items=data.tables]"
    assert key("https://api.example/tables", "data.views") != base
    raw, marts = (
        key("https://api.example/tables?schema=raw"),
        key("https://api.example/tables?schema=marts"),
    )
    assert len({base, raw, marts}) == 3
    assert "schema=raw" not in raw  # query values may be credentials: only a hash
    assert raw.startswith("HttpCatalog[api.example/tables,query=")


def test_responses_that_do_not_fit_fail_the_refresh(server: CatalogServer, project: Path) -> None:
    server.behaviour.body = b'{"data": {"tables": {"not": "a list"}}}'
    assert "items_path 'data.tables' is an object, not a list" in _one_error(
        load_defs(project, dev=True)
    )
    server.behaviour.body = b"<html>oops</html>"
    assert "is not JSON" in _one_error(load_defs(project, dev=True))
    assert len(server.behaviour.requests) == 2  # neither is retried


def test_mapping_rules() -> None:
    mapping = FieldMapping(
        key="path", deps="parents", owners="owner", tags="tags", metadata={"n": "n"}
    )
    items = [
        {"path": "b/x", "parents": [["a", "y"], "c/z"], "owner": "o", "tags": None, "n": None},
        {"path": "a/y", "n": 2},
    ]
    state = make_state(items)
    assert state["items"] == [items[1], items[0]]  # whole items, in canonical-JSON order
    assert make_state(list(reversed(items))) == state
    mapped = map_items(state["items"], mapping, strict=True)
    assert [s.key.to_string() for s in mapped.specs] == ["a/y", "b/x"]  # sorted by key
    assert [d.to_string() for d in mapped.specs[1].deps] == ["a/y", "c/z"]
    assert mapped.specs[1].owners == ("o",) and mapped.specs[1].metadata == {"n": None}

    bad = [
        ([{"path": "a"}, {"other": 1}], "item {\"other\": 1} has no key field 'path'"),
        ([{"path": "a/b"}, {"path": "a/b"}], "two items map to asset key a/b"),
        (["a"], 'item "a" is a string, not an object'),
        ([{"path": "a", "parents": [3]}], "deps field 'parents' holds a number"),
    ]
    for items_, reason in bad:
        with pytest.raises(CatalogMappingError, match=re.escape(reason)):
            map_items(items_, mapping, strict=True)
        skipped = map_items(items_, mapping, strict=False)
        assert len(skipped.skipped) == 1 and reason in skipped.skipped[0]
        assert len(skipped.specs) == len(items_) - 1
    long_item = {"text": "x" * 500}  # no key field
    (reason,) = map_items([long_item], mapping, strict=False).skipped
    assert len(reason) < 200 and "…" in reason  # an item is quoted, never in full


def test_format_errors_are_terminal() -> None:
    assert issubclass(HttpCatalogFormatError, TerminalRefreshError)
    assert issubclass(HttpRejectedError, TerminalRefreshError)
    assert not issubclass(HttpRequestError, TerminalRefreshError)


def test_foreign_state_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text('{"format": "defstate.sql/1"}')
    with pytest.raises(ValueError, match="refresh it with"):
        load_state(path)


def test_import_is_cheap() -> None:
    code = (
        "import sys, defstate.contrib.http\n"
        "loaded = [m for m in ('urllib.request', 'tenacity', 'ssl') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
