"""A plain WSGI app (no sse_kit) that the harness self-test serves with gunicorn.

Routes: ``/healthz`` answers ``ok``; ``/stream`` sends :data:`STREAM_LINES`, one
write each, so gunicorn frames them as chunks; ``/env/<NAME>`` answers the value
of an environment variable of the worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

STREAM_LINES = (b"line 1\n", b"line 2\n", b"line 3\n")


def _stream() -> Iterator[bytes]:
    yield from STREAM_LINES


def _plain(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point: ``tests.live.hello:app``."""
    path: str = environ.get("PATH_INFO", "")
    if path == "/healthz":
        return _plain(start_response, "200 OK", b"ok")
    if path == "/stream":
        # No Content-Length: an HTTP/1.1 server must use chunked transfer coding.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path.startswith("/env/"):
        value = os.environ.get(path.removeprefix("/env/"))
        if value is not None:
            return _plain(start_response, "200 OK", value.encode())
    return _plain(start_response, "404 Not Found", b"not found")
