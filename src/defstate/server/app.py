"""The code location's web application (starlette): the JSON API and the web UI.

JSON API (documented answers, unchanged): ``GET /health /defs /components /state
/worker/defs``, ``POST /reload[?wait=1]``. The UI: ``GET /`` and ``/ui/*`` (static files shipped
in the package), its reads under ``GET /api/*``, live updates on ``GET /api/events``
(server-sent events) and its actions under ``POST /api/actions/*`` (see ``guard.py``).
Endpoints are plain functions: starlette runs them in its thread pool, so a slow reload or
worker never blocks other clients.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from defstate.errors import DefstateError, UnknownStateKeyError, UsageError
from defstate.redaction import redact_bytes, secret_values
from defstate.selection import SelectionSyntaxError
from defstate.server.guard import ActionGuard, check_same_origin
from defstate.server.location import CodeLocation
from defstate.server.protocol import LoadDocument
from defstate.server.state_panel import StatePanel
from defstate.server.views import DEFAULT_SEARCH_LIMIT, LoadViews

UI_DIR = Path(__file__).with_name("ui")
MAX_BODY_BYTES = 64 * 1024  # every request body this API accepts is a small JSON object
EVENT_POLL_SECONDS = 0.25
EVENT_HEARTBEAT_SECONDS = 15.0


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, bounded_receive, send)


class RedactResponses:
    """Mask every registered secret in every response body (JSON, HTML, server-sent events).

    Load documents are already redacted by the worker that expanded the templates; this
    covers what the server process adds (health, reload errors, history, state panel).
    Bodies compressed ahead (``Content-Encoding`` set) come from those load documents and
    pass as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not secret_values():
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        encoded = False

        async def redacting_send(message: Message) -> None:
            nonlocal start, encoded
            if message["type"] == "http.response.start":
                encoded = any(k.lower() == b"content-encoding" for k, _ in message["headers"])
                if not encoded:
                    start = message  # sent with the first body: its length may change
                    return
            elif message["type"] == "http.response.body" and not encoded:
                body = redact_bytes(message.get("body", b""))
                if start is not None:
                    headers = [
                        (k, v) for k, v in start["headers"] if k.lower() != b"content-length"
                    ]
                    if not message.get("more_body", False):
                        headers.append((b"content-length", str(len(body)).encode()))
                    await send({**start, "headers": headers})
                    start = None
                message = {**message, "body": body}
            await send(message)

        await self.app(scope, receive, redacting_send)


def _too_large(limit: int) -> Response:
    return JSONResponse({"error": f"request body over {limit} bytes"}, status_code=413)


class ServerState:
    """What the endpoints share: the location, one ``LoadViews`` per load, the guard."""

    def __init__(self, location: CodeLocation, guard: ActionGuard) -> None:
        self.location = location
        self.guard = guard
        self.panel = StatePanel(location)
        self.boot_id = secrets.token_hex(4)  # ETags of another server process never match
        self.stopping = threading.Event()
        self._views: LoadViews | None = None
        self._lock = threading.Lock()

    def views(self) -> LoadViews | None:
        load = self.location.current  # one read: the whole answer comes from this load
        if load is None:
            return None
        with self._lock:
            if self._views is None or self._views.load is not load:
                self._views = LoadViews(load, self.boot_id)
            return self._views


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.defstate
    return state


def _no_load(state: ServerState) -> JSONResponse:
    return JSONResponse({"error": "no load yet", "health": state.location.health()}, 503)


def _of_load(
    endpoint: Callable[[Request, LoadViews], Response],
) -> Callable[[Request], Response]:
    """An endpoint answered from the current load (one read: never a mix of two loads), or
    ``503`` while there is none yet."""

    def answer(request: Request) -> Response:
        state = _state(request)
        views = state.views()
        return _no_load(state) if views is None else endpoint(request, views)

    answer.__name__ = endpoint.__name__
    answer.__doc__ = endpoint.__doc__
    return answer


# --- the documented JSON API ------------------------------------------------------------
def health(request: Request) -> JSONResponse:
    body = _state(request).location.health()
    return JSONResponse(body, 200 if body["generation"] is not None else 503)


@_of_load
def defs(request: Request, views: LoadViews) -> Response:
    """The load's assets, pin and errors; ETag per load and representation, gzip if asked."""
    accepts_gzip = "gzip" in request.headers.get("accept-encoding", "")
    body, etag, gzipped = views.defs_representation(accepts_gzip)
    headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


@_of_load
def components(request: Request, views: LoadViews) -> JSONResponse:
    load = views.load
    return JSONResponse({"generation": load.generation, "components": load.document.components})


@_of_load
def state_pins(request: Request, views: LoadViews) -> JSONResponse:
    load = views.load
    rows = {
        key: {name: version[name] for name in ("version", "created_at", "management_type")}
        for key, version in load.document.state.items()
    }
    return JSONResponse({"generation": load.generation, "state": rows})


@_of_load
def worker_defs(request: Request, views: LoadViews) -> JSONResponse:
    load, location = views.load, _state(request).location
    try:
        reconstructed = location.reconstruct()
    except DefstateError as exc:
        return JSONResponse({"error": str(exc)}, 500)
    return JSONResponse({"generation": load.generation, **reconstructed.to_json_dict()})


async def reload(request: Request) -> JSONResponse:
    refused = check_same_origin(request.url.scheme, request.headers)
    if refused is not None:
        return JSONResponse({"error": refused.message}, refused.status)
    await request.body()  # read (bounded by BodyLimit) and ignored
    location = _state(request).location
    if request.query_params.get("wait") == "1":
        load = await run_in_threadpool(location.reload)
        return JSONResponse(location.health(), 200 if load is not None else 500)
    location.request_reload()
    return JSONResponse({"reloading": True}, 202)


# --- the UI -----------------------------------------------------------------------------
def index(request: Request) -> HTMLResponse:
    state = _state(request)
    page = (UI_DIR / "index.html").read_text()
    page = page.replace("{{csrf_token}}", state.guard.csrf_token)
    page = page.replace("{{actions}}", "enabled" if state.guard.enabled else "disabled")
    page = page.replace("{{token_required}}", "true" if state.guard.token else "false")
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, not {value!r}") from None


@_of_load
def api_assets(request: Request, views: LoadViews) -> JSONResponse:
    query = request.query_params.get("q", "")
    try:
        found = views.search(query, _int(request, "limit", DEFAULT_SEARCH_LIMIT))
    except SelectionSyntaxError as exc:
        return JSONResponse({"error": str(exc), "pointer": list(exc.pointer)}, 400)
    return JSONResponse(found)


@_of_load
def api_asset(request: Request, views: LoadViews) -> JSONResponse:
    key = request.query_params.get("key", "")
    asset = views.by_key.get(key)
    if asset is None:
        return JSONResponse({"error": f"no asset {key!r}"}, 404)
    source = asset.get("component") or ""
    return JSONResponse(
        {
            "generation": views.generation,
            "asset": views.with_checks(asset),
            "state_key": views.state_key_of_source.get(source),
            "downstream": sorted(views.downstream.get(key, [])),
        }
    )


@_of_load
def api_lineage(request: Request, views: LoadViews) -> JSONResponse:
    key = request.query_params.get("key", "")
    if key not in views.by_key and key not in views.downstream:
        return JSONResponse({"error": f"no asset {key!r}"}, 404)
    return JSONResponse(views.lineage(key, _int(request, "up", 2), _int(request, "down", 2)))


def api_health(request: Request) -> JSONResponse:
    """Health, load errors (file:line), refresh results of the load, schedules."""
    from defstate.loader.schedules import describe_schedules

    state = _state(request)
    load = state.location.current
    document = load.document if load else LoadDocument()
    return JSONResponse(
        {
            "health": state.location.health(),
            "project_root": str(state.location.project_root),
            "errors": document.errors,
            "refreshes": document.refreshes,
            "schedules": describe_schedules(
                state.location.project_root, running=not state.location.dev
            ),
        }
    )


def _worker_answer(call: Callable[[], dict[str, Any]]) -> JSONResponse:
    try:
        return JSONResponse(call())
    except UnknownStateKeyError as exc:
        return JSONResponse({"error": str(exc)}, 404)
    except UsageError as exc:  # a bad argument of the request
        return JSONResponse({"error": str(exc)}, 400)
    except DefstateError as exc:  # the worker failed: storage down, component raised...
        return JSONResponse({"error": str(exc)}, 502)


def api_state(request: Request) -> JSONResponse:
    return _worker_answer(_state(request).panel.overview)


def api_history(request: Request) -> JSONResponse:
    panel, key = _state(request).panel, request.query_params.get("key", "")
    return _worker_answer(lambda: panel.history(key))


def api_diff(request: Request) -> JSONResponse:
    panel, params = _state(request).panel, request.query_params
    key, old, new = params.get("key", ""), params.get("old"), params.get("new")
    return _worker_answer(lambda: panel.diff(key, old or None, new or None))


async def api_events(request: Request) -> StreamingResponse:
    """Server-sent events: ``reload`` with the health document whenever it changes."""
    state = _state(request)

    async def stream() -> AsyncIterator[str]:
        last: Any = None
        quiet = 0.0
        while not state.stopping.is_set() and not await request.is_disconnected():
            health = state.location.health()
            marker = (health["generation"], health["last_reload_at"], health["last_reload_error"])
            if marker != last:
                last = marker
                quiet = 0.0
                yield f"event: reload\ndata: {json.dumps(health)}\n\n"
            elif quiet >= EVENT_HEARTBEAT_SECONDS:
                quiet = 0.0
                yield ": heartbeat\n\n"
            await asyncio.sleep(EVENT_POLL_SECONDS)
            quiet += EVENT_POLL_SECONDS

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _action(
    run: Callable[[ServerState, dict[str, Any]], dict[str, Any]],
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A guarded POST endpoint taking a JSON object body."""

    async def endpoint(request: Request) -> JSONResponse:
        state = _state(request)
        refused = state.guard.check(request.url.scheme, request.headers)
        if refused is not None:
            return JSONResponse({"error": refused.message}, refused.status)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        return await run_in_threadpool(_worker_answer, lambda: run(state, body))

    return endpoint


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name!r} is required (a string)")
    return value


ACTIONS = {
    "refresh": lambda state, body: state.panel.refresh(_text(body, "key")),
    "rollback": lambda state, body: state.panel.rollback(
        _text(body, "key"), _text(body, "version")
    ),
    "reload": lambda state, body: state.panel.reload(),
}


async def _json_errors(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    if status == 404 and not str(detail).startswith("no "):
        detail = f"no such endpoint: {request.url.path}"
    return JSONResponse({"error": detail}, status)


def create_app(location: CodeLocation, guard: ActionGuard) -> Starlette:
    """The ASGI application serving ``location``."""
    routes = [
        Route("/", index),
        Route("/health", health),
        Route("/defs", defs),
        Route("/components", components),
        Route("/state", state_pins),
        Route("/worker/defs", worker_defs),
        Route("/reload", reload, methods=["POST"]),
        Route("/api/assets", api_assets),
        Route("/api/asset", api_asset),
        Route("/api/lineage", api_lineage),
        Route("/api/health", api_health),
        Route("/api/state", api_state),
        Route("/api/state/history", api_history),
        Route("/api/state/diff", api_diff),
        Route("/api/events", api_events),
        *(
            Route(f"/api/actions/{name}", _action(run), methods=["POST"])
            for name, run in ACTIONS.items()
        ),
        Mount("/ui", StaticFiles(directory=UI_DIR), name="ui"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(BodyLimit),
            # /defs is compressed once per load (it sets Content-Encoding, so this skips it)
            Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6),
            Middleware(RedactResponses),  # innermost: it sees bodies before compression
        ],
        exception_handlers={HTTPException: _json_errors},
    )
    app.state.defstate = ServerState(location, guard)
    return app
