"""The code location's HTTP server: the starlette app (``server/app.py``) on uvicorn.

Both come with the ``serve`` extra (``pip install 'defstate[serve]'``); importing this module
without them raises ``ServeExtraMissingError``, which names the extra. Nothing on the load path
imports this module: ``import defstate`` and ``list defs`` never pay for a web server.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from defstate.errors import DefstateError
from defstate.server.location import CodeLocation


class ServeExtraMissingError(DefstateError):
    """``defstate serve`` / ``dev`` need the ``serve`` extra, which is not installed."""


try:
    import uvicorn

    from defstate.server.app import create_app
except ImportError as exc:  # starlette or uvicorn (or one of theirs) is missing
    raise ServeExtraMissingError(
        f"`defstate serve` and `defstate dev` need the serve extra ({exc.name} is not "
        "installed): pip install 'defstate[serve]'"
    ) from exc

from defstate.server.guard import ActionGuard  # noqa: E402  (after the extra's check)

log = logging.getLogger("defstate.server")


class CodeLocationServer:
    """uvicorn serving the app in a background thread, on a socket bound before it starts."""

    def __init__(self, location: CodeLocation, host: str, port: int) -> None:
        self.guard = ActionGuard(host)
        self.app = create_app(location, self.guard)
        self.socket = _bind(host, port)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # the CLI configured logging; uvicorn must not replace it
            log_level=logging.WARNING,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            h11_max_incomplete_event_size=64 * 1024,  # bounded request line and headers
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self.socket]},
            name="defstate-http",
            daemon=True,
        )

    def start(self, timeout: float = 30.0) -> None:
        if not self.guard.enabled:
            log.warning(
                "serving on %s without DEFSTATE_UI_TOKEN: the UI's actions are disabled",
                self.server_address[0],
            )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DefstateError(f"the HTTP server did not start on {self.server_address}")
            time.sleep(0.01)

    def shutdown(self) -> None:
        """Stop accepting, end event streams, finish requests in flight (at most 3 s)."""
        self.app.state.defstate.stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def server_close(self) -> None:
        self.socket.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise DefstateError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DefstateError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def start_http_server(location: CodeLocation, host: str, port: int) -> CodeLocationServer:
    """Bind and serve in a background thread; returns the server (``server_address``)."""
    server = CodeLocationServer(location, host, port)
    server.start()
    return server
