"""The code location's HTTP JSON API (standard library server, loopback by default)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from defstate.errors import DefstateError
from defstate.server.location import CodeLocation

log = logging.getLogger("defstate.server")


class CodeLocationServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], location: CodeLocation) -> None:
        super().__init__(address, CodeLocationHandler)
        self.location = location


class CodeLocationHandler(BaseHTTPRequestHandler):
    """``GET /health /defs /components /state /worker/defs``, ``POST /reload``."""

    server: CodeLocationServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        location = self.server.location
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == "/health":
            health = location.health()
            self._send(200 if health["generation"] is not None else 503, health)
            return
        load = location.current  # one read: the whole answer comes from this load
        if load is None:
            self._send(503, {"error": "no load yet", "health": location.health()})
            return
        document = load.document
        if path == "/defs":
            self._send(
                200,
                {
                    "generation": load.generation,
                    "assets": document["assets"],
                    "asset_checks": document["asset_checks"],
                    "state": document["state"],
                    "errors": document["errors"],
                },
            )
        elif path == "/components":
            self._send(200, {"generation": load.generation, "components": document["components"]})
        elif path == "/state":
            rows = {}
            for key, version in document["state"].items():
                rows[key] = {
                    "version": version["version"],
                    "created_at": version["created_at"],
                    "management_type": version["management_type"],
                }
            self._send(200, {"generation": load.generation, "state": rows})
        elif path == "/worker/defs":
            try:
                reconstructed = location.reconstruct()
            except DefstateError as exc:
                self._send(500, {"error": str(exc)})
                return
            self._send(200, {"generation": load.generation, **reconstructed})
        else:
            self._send(404, {"error": f"no such endpoint: {path}"})

    def do_POST(self) -> None:
        location = self.server.location
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != "/reload":
            self._send(404, {"error": f"no such endpoint: {parts.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if "wait=1" in parts.query:
            load = location.reload()
            status = 200 if load is not None else 500
            self._send(status, location.health())
        else:
            location.request_reload()
            self._send(202, {"reloading": True})


def start_http_server(location: CodeLocation, host: str, port: int) -> CodeLocationServer:
    """Bind and serve in a background thread; returns the server (``server_address``)."""
    server = CodeLocationServer((host, port), location)
    threading.Thread(target=server.serve_forever, name="defstate-http", daemon=True).start()
    return server
