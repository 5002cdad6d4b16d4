"""A moto S3 server on loopback for the benchmarks (the approach of tests/storage_servers.py)."""

from __future__ import annotations

import contextlib
import logging
import urllib.request
from collections.abc import Iterator

_HOST = "127.0.0.1"


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment variables that point boto3/s3fs in a child process at ``endpoint``."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
    }


def _http(method: str, url: str) -> None:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def create_bucket(endpoint: str, name: str) -> None:
    _http("PUT", f"{endpoint}/{name}")


def reset(endpoint: str) -> None:
    """Empty the whole moto server (every bucket and object)."""
    _http("POST", f"{endpoint}/moto-api/reset")


class RequestLog(logging.Handler):
    """The requests moto's server answered (werkzeug logs one line per request)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def counted_requests() -> Iterator[RequestLog]:
    """Count the requests the in-process moto server answers inside the block (from any
    process: the children of the runner talk to it too)."""
    logger = logging.getLogger("werkzeug")
    handler = RequestLog()
    level, propagate, handlers = logger.level, logger.propagate, logger.handlers[:]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers[:] = [handler]  # werkzeug adds a console handler of its own
    try:
        yield handler
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto in a thread of this process on a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=_HOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
