"""The HTTP layer of ``defstate serve`` (starlette on uvicorn): caching, compression, limits,
concurrency, live events, the UI's reads and its guarded actions, and the missing extra."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import test_server
from conftest import ProjectFactory, run_cli, subprocess_env
from test_server import Server, _project, _published_versioned_project

servers = test_server.servers  # the fixture that kills leftover server processes


def _request(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _csrf(server: Server) -> str:
    status, _, page = _request(server, "GET", "/")
    assert status == 200
    match = re.search(rb'name="defstate-csrf" content="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1).decode()


def _act(
    server: Server, name: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    host = urlsplit(server.url).netloc
    sent = {
        "Content-Type": "application/json",
        "Origin": f"http://{host}",
        "X-Defstate-CSRF": _csrf(server),
        **(headers or {}),
    }
    status, _, data = _request(
        server, "POST", f"/api/actions/{name}", json.dumps(body).encode(), sent
    )
    return status, json.loads(data)


def _serve_refreshed(
    make_project: ProjectFactory,
    counter_dir: Path,
    servers: list[Server],
    env: dict[str, str] | None = None,
) -> Server:
    """``defstate serve`` of the two-asset project, its state refreshed first."""
    root = _project(make_project, counter_dir)
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    server = Server(["serve"], cwd=root, env=env)
    servers.append(server)
    return server


def test_defs_has_etag_and_gzip_and_answers_304(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    server = _serve_refreshed(make_project, counter_dir, servers)

    status, headers, plain = _request(server, "GET", "/defs")
    assert status == 200 and "content-encoding" not in headers
    assert sorted(a["key"] for a in json.loads(plain)["assets"]) == ["a1", "a2"]
    etag = headers["etag"]
    assert headers["vary"] == "Accept-Encoding"

    status, zipped_headers, zipped = _request(
        server, "GET", "/defs", headers={"Accept-Encoding": "gzip"}
    )
    assert status == 200 and zipped_headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped) == plain  # the same document, compressed once
    assert zipped_headers["etag"] != etag  # one ETag per representation

    status, headers, body = _request(server, "GET", "/defs", headers={"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["etag"] == etag

    # a reload is a new load: the old ETag no longer matches
    assert server.post("/reload?wait=1")[0] == 200
    status, headers, _ = _request(server, "GET", "/defs", headers={"If-None-Match": etag})
    assert status == 200 and headers["etag"] != etag


def test_request_bodies_are_bounded_and_unknown_paths_are_json_404(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    server = _serve_refreshed(make_project, counter_dir, servers)
    status, _, body = _request(server, "POST", "/reload", body=b"x" * (1024 * 1024))
    assert status == 413 and "request body over" in json.loads(body)["error"]
    status, _, body = _request(server, "GET", "/nope")
    assert status == 404 and json.loads(body) == {"error": "no such endpoint: /nope"}
    assert server.get("/health")["generation"] == 1  # nothing was reloaded


def test_concurrent_clients_and_live_reload_events(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    server = _serve_refreshed(make_project, counter_dir, servers)
    parts = urlsplit(server.url)
    # an event stream stays open for as long as the page is: other clients must still be served
    stream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    stream.request("GET", "/api/events")
    events = stream.getresponse()
    assert events.status == 200 and events.getheader("content-type", "").startswith(
        "text/event-stream"
    )

    def next_event() -> dict[str, Any]:
        lines = []
        while True:
            line = events.readline().decode().rstrip("\n")
            if line == "" and lines:
                break
            if line and not line.startswith(":"):
                lines.append(line)
        assert lines[0] == "event: reload"
        data: dict[str, Any] = json.loads(lines[1].removeprefix("data: "))
        return data

    assert next_event()["generation"] == 1
    answers: list[int] = []
    readers = [
        threading.Thread(target=lambda: answers.append(server.get("/health")["generation"]))
        for _ in range(8)
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)
    assert answers == [1] * 8
    assert server.post("/reload?wait=1")[0] == 200
    assert next_event()["generation"] == 2  # pushed to the open page
    stream.close()
    assert server.stop() == 0  # an open event stream does not hold up shutdown


def test_ui_page_and_assets_search_and_lineage(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    root = _project(make_project, counter_dir)
    (counter_dir.parent / "api.json").write_text(json.dumps(["raw", "stg", "mart"]))
    assert run_cli("state", "refresh", cwd=root).returncode == 0
    server = Server(["serve"], cwd=root)
    servers.append(server)
    status, headers, page = _request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/ui/app.js" in page and b"{{" not in page
    status, headers, script = _request(server, "GET", "/ui/app.js")
    assert status == 200 and b"EventSource" in script and "etag" in headers

    found = server.get("/api/assets?q=st")
    assert [a["key"] for a in found["assets"]] == ["stg"]
    assert found["matched"] == 1 and found["total"] == 3
    assert found["sections"][0]["state_key"] == "List[api]"
    everything = server.get("/api/assets?q=")
    assert everything["matched"] == 3 and not everything["truncated"]
    assert server.get("/api/assets?limit=2")["truncated"]

    lineage = server.get("/api/lineage?key=stg&up=1&down=1")
    assert lineage["key"] == "stg" and lineage["nodes"] == [
        {
            "key": "stg",
            "level": 0,
            "group": "api",
            "kinds": [],
            "external": False,
            "hidden_up": 0,
            "hidden_down": 0,
        }
    ]
    status, _, body = _request(server, "GET", "/api/lineage?key=missing")
    assert status == 404 and "no asset" in json.loads(body)["error"]
    health = server.get("/api/health")
    assert health["health"]["status"] == "ok" and health["errors"] == []
    assert health["schedules"] == {"running": True, "error": None, "schedules": []}


def test_actions_refresh_rollback_diff_through_workers(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server], tmp_path: Path
) -> None:
    root, env = _published_versioned_project(make_project, counter_dir, tmp_path)
    server = Server(["serve"], cwd=root, env=env)
    servers.append(server)
    (row,) = server.get("/api/state")["keys"]
    first = row["latest"]["version"]
    assert row["in_use"]["version"] == first and not row["out_of_date"]
    assert row["records"][0]["status"] == "succeeded" and row["records"][0]["host"]

    # a version published elsewhere: the location still uses the pinned one
    (counter_dir.parent / "api.json").write_text(json.dumps(["a1", "b1"]))
    assert run_cli("state", "refresh", cwd=root, env=env).returncode == 0
    (row,) = server.get("/api/state")["keys"]
    assert row["out_of_date"] and row["in_use"]["version"] == first

    # refresh from the UI: a new version, published and loaded
    (counter_dir.parent / "api.json").write_text(json.dumps(["a1", "c1"]))
    status, answer = _act(server, "refresh", {"key": "List[api]"})
    assert status == 200, answer
    assert answer["reloaded"] and answer["report"]["results"][0]["ok"]
    (row,) = server.get("/api/state")["keys"]
    third = row["latest"]["version"]
    assert third not in (first,) and row["in_use"]["version"] == third
    assert server.keys() == ["a1", "c1"]

    history = server.get("/api/state/history?key=List%5Bapi%5D")
    assert history["versions"][0]["version"] == first
    assert len(history["versions"]) == 3 and history["records"][0]["trigger"] == "ui"
    diff = server.get(f"/api/state/diff?key=List%5Bapi%5D&old={first}&new={third}")
    assert diff["added"] == ["c1"] and diff["removed"] == ["a2"]

    status, answer = _act(server, "rollback", {"key": "List[api]", "version": first})
    assert status == 200, answer
    assert answer["rollback"]["latest"]["version"] == first
    assert server.keys() == ["a1", "a2"]

    status, answer = _act(server, "refresh", {"key": "Nope"})
    assert status == 404 and "unknown state key" in answer["error"]
    status, answer = _act(server, "rollback", {"key": "List[api]", "version": "--help"})
    assert status == 400 and "not a state version" in answer["error"]
    status, answer = _act(server, "rollback", {"key": "List[api]"})
    assert status == 400 and "'version' is required" in answer["error"]


def test_actions_need_same_origin_and_csrf_token(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    server = _serve_refreshed(make_project, counter_dir, servers)
    body = b"{}"
    status, _, answer = _request(server, "POST", "/api/actions/reload", body)
    assert status == 403 and "CSRF" in json.loads(answer)["error"]
    assert _act(server, "reload", {}, {"Origin": "http://evil.example"})[0] == 403
    assert _act(server, "reload", {}, {"Sec-Fetch-Site": "cross-site"})[0] == 403
    # DNS rebinding: a page of another name resolving to 127.0.0.1
    status, answer = _act(
        server, "reload", {}, {"Host": "evil.example:80", "Origin": "http://evil.example:80"}
    )
    assert status == 403 and "loopback" in answer["error"], answer
    status, answer = _act(server, "reload", {})
    assert status == 200 and answer["health"]["generation"] == 2
    # the JSON API's reload refuses other sites too, and stays open to scripts
    status, _, _ = _request(server, "POST", "/reload", b"", {"Origin": "http://evil.example"})
    assert status == 403
    assert server.post("/reload")[0] == 202


def test_configured_token_is_required_for_actions(
    make_project: ProjectFactory, counter_dir: Path, servers: list[Server]
) -> None:
    env = {"DEFSTATE_UI_TOKEN": "s3cret-token"}
    server = _serve_refreshed(make_project, counter_dir, servers, env)
    status, answer = _act(server, "reload", {})
    assert status == 401 and "DEFSTATE_UI_TOKEN" in answer["error"]
    assert _act(server, "reload", {}, {"Authorization": "Bearer wrong"})[0] == 401
    status, answer = _act(server, "reload", {}, {"Authorization": "Bearer s3cret-token"})
    assert status == 200 and answer["reloaded"]
    assert all("s3cret-token" not in line for line in server.seen)


def test_serve_without_the_extra_names_it(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project({})
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None  # as if the serve extra were not installed\n"
        "from defstate.cli.main import main\n"
        "sys.argv = ['defstate', 'serve', '--port', '0']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "pip install 'defstate[serve]'" in done.stderr and "uvicorn" in done.stderr
    assert "serving" not in done.stdout


@pytest.mark.parametrize(
    ("bind", "token", "headers", "allowed"),
    [
        ("127.0.0.1", None, {}, True),
        ("::1", None, {"host": "[::1]:3030", "origin": "http://[::1]:3030"}, True),
        ("0.0.0.0", None, {}, False),  # not loopback, no token: refused
        ("0.0.0.0", "t0k", {"authorization": "Bearer t0k"}, True),
        ("0.0.0.0", "t0k", {}, False),
        ("127.0.0.1", None, {"origin": "http://localhost:9999"}, False),
        ("127.0.0.1", None, {"sec-fetch-site": "same-site"}, False),
    ],
)
def test_action_guard(bind: str, token: str | None, headers: dict[str, str], allowed: bool) -> None:
    from defstate.server.guard import ActionGuard

    guard = ActionGuard(bind, token=token)
    sent = {
        "host": "127.0.0.1:3030",
        "origin": "http://127.0.0.1:3030",
        "x-defstate-csrf": guard.csrf_token,
        **headers,
    }
    assert (guard.check("http", sent) is None) is allowed
    wrong_csrf = {**sent, "x-defstate-csrf": "forged"}
    assert guard.check("http", wrong_csrf) is not None


def test_lineage_shows_neighbourhoods_of_a_large_graph() -> None:
    from defstate.server.views import LoadViews
    from defstate.server.worker import WorkerLoad

    # a chain of 20 000 assets: a depth-2 neighbourhood is 5 assets, never the whole graph
    assets = [
        {"key": f"t{i:05d}", "deps": [f"t{i - 1:05d}"] if i else [], "group": "g", "kinds": []}
        for i in range(20_000)
    ]
    assets[0]["deps"] = ["external/source"]
    checks = [{"asset": "t00003", "name": "not_null_id", "description": None}]
    document = {"assets": assets, "asset_checks": checks, "components": [], "state": {}}
    load = WorkerLoad({**document, "errors": []}, 1, 0.0)
    views = LoadViews(load, "boot")
    around = views.lineage("t10000", up=2, down=2)
    assert [(n["key"], n["level"]) for n in around["nodes"]] == [
        ("t09998", -2),
        ("t09999", -1),
        ("t10000", 0),
        ("t10001", 1),
        ("t10002", 2),
    ]
    assert sorted(around["edges"]) == [
        ["t09998", "t09999"],
        ["t09999", "t10000"],
        ["t10000", "t10001"],
        ["t10001", "t10002"],
    ]
    ends = {n["key"]: (n["hidden_up"], n["hidden_down"]) for n in around["nodes"]}
    assert ends["t09998"] == (1, 0) and ends["t10002"] == (0, 1)
    first = views.lineage("t00000", up=3, down=0)
    assert [(n["key"], n["external"]) for n in first["nodes"]] == [
        ("external/source", True),
        ("t00000", False),
    ]
    wide = views.lineage("t10000", up=10, down=10, max_nodes=7)
    assert len(wide["nodes"]) == 7 and wide["truncated"]
    found = views.search("t1999")
    assert found["matched"] == 10 and found["sections"] == [
        {"group": "g", "component": None, "state_key": None, "count": 10}
    ]


def test_asset_search_takes_the_selection_syntax_or_words() -> None:
    from defstate.selection import SelectionSyntaxError
    from defstate.server.views import LoadViews
    from defstate.server.worker import WorkerLoad

    assets = [
        {"key": "raw/orders", "deps": [], "group": "raw", "kinds": ["table"], "owners": []},
        {"key": "stg/orders", "deps": ["raw/orders"], "group": "stg", "kinds": ["view"]},
        {"key": "mart/revenue", "deps": ["stg/orders"], "group": "mart", "kinds": ["table"]},
    ]
    checks = [{"asset": "stg/orders", "name": "unique_order_id", "description": "ids unique"}]
    load = WorkerLoad(
        {"assets": assets, "asset_checks": checks, "components": [], "state": {}}, 1, 0.0
    )
    views = LoadViews(load, "boot")

    def keys(query: str) -> list[str]:
        return [a["key"] for a in views.search(query)["assets"]]

    assert keys("kind:table and not group:raw") == ["mart/revenue"]
    assert keys("+key:mart/revenue") == ["mart/revenue", "raw/orders", "stg/orders"]
    assert keys("key:stg/orders+") == ["mart/revenue", "stg/orders"]
    assert views.search("kind:table")["selection"] and not views.search("orders")["selection"]
    assert keys("orders") == ["raw/orders", "stg/orders"]  # words: substring of key, group...
    assert keys("unique_order") == ["stg/orders"]  # ...and check names
    (found,) = views.search("unique_order")["assets"]
    assert found["checks"] == checks
    with pytest.raises(SelectionSyntaxError) as error:
        views.search("group:raw and")
    assert error.value.column >= 1
