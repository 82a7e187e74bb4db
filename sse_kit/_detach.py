"""How a gunicorn gthread worker hands a stream's connection to sse_kit.

:func:`detaching` wraps the worker's WSGI app. For each request it may detach
(plain HTTP/1.1 over TCP, gunicorn's own ``Response``), it offers the stream a
:data:`sse_kit._connection.Detach` under ``environ[DETACH_KEY]``. The stream
calls it when gunicorn asks for the second chunk, so the headers and the first
chunk are on the wire. Then:

1. the connection's descriptor is duplicated: the copy is sse_kit's;
2. an unconnected socket is ``dup2()``-ed over gunicorn's descriptor, so
   everything gunicorn does with "its" socket afterwards (a graceful close with
   ``shutdown()``, a stray write) touches only that stand-in, never the client's
   TCP connection;
3. the response is told it is not chunked (so it writes no last-chunk: the hub
   side writes it when the stream ends) and must close (so gunicorn closes
   its descriptor, releases its ``worker_connections`` slot and never keeps
   the connection alive);
4. the stream ends its iteration; the worker thread returns to the pool.

What gunicorn still does: it logs the request in its access log (status 200,
the bytes of the first chunk) and calls ``post_request``. It never sees the
connection again. This relies on four things gunicorn's ``Response`` has had
since long before 23.0 (``start_response`` is its bound method, ``chunked``,
``headers_sent``, ``force_close()``; ``close()`` writes the last-chunk only when
``chunked``); :func:`layout_problem` checks them once per worker, and a worker
whose gunicorn differs serves streams on the parked path instead, with a WARNING.

The access log: gunicorn writes each request line, query string included, and
a stream URL may carry a token; :func:`detaching` leaves the query string of
stream requests out of what gunicorn logs (as :class:`sse_kit.gunicorn.AccessLogger`
does for the config-file form).
"""

from __future__ import annotations

import inspect
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final

from gunicorn.http.wsgi import Response  # type: ignore[import-untyped]

from ._advice import PARKED_KEY, SERVER_KEY, THREADS_KEY
from ._connection import DETACH_KEY
from ._wsgi import ENVIRON_MARK

__all__ = ["REDACTED", "detaching", "is_stream_request", "layout_problem", "redact"]

# What a stream request's query string is logged as.
REDACTED: Final = "<redacted>"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def layout_problem() -> str | None:
    """Why this gunicorn's ``Response`` cannot be detached from, or ``None``."""
    for name in ("start_response", "force_close", "close"):
        if not callable(getattr(Response, name, None)):
            return f"gunicorn.http.wsgi.Response has no {name}()"
    try:
        init, close = inspect.getsource(Response.__init__), inspect.getsource(Response.close)
    except (OSError, TypeError):
        return "the source of gunicorn.http.wsgi.Response cannot be read"
    for attribute in ("self.chunked", "self.headers_sent"):
        if attribute not in init:
            return f"gunicorn.http.wsgi.Response does not set {attribute}"
    if "if self.chunked" not in close:
        return "gunicorn.http.wsgi.Response.close() does not end the body only when chunked"
    return None


def _plain_tcp(sock: object) -> bool:
    """A plain TCP socket: not TLS (whose bytes gunicorn's SSL object encrypts),
    not a cooperative (gevent, eventlet) socket."""
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return False
    cls = type(sock)
    if cls.__module__ != "socket" or cls.__qualname__ != "socket":
        return False
    try:
        return sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET,
                                                                    socket.AF_INET6)
    except OSError:
        return False


def _cannot_detach(environ: Mapping[str, Any], resp: object, sock: object) -> str | None:
    """Why a stream of this request could not detach (for the advice its first
    parked stream logs), or ``None`` if it can."""
    protocol = str(environ.get("SERVER_PROTOCOL", ""))
    if protocol.startswith("HTTP/2"):
        return "HTTP/2"
    if protocol != "HTTP/1.1":
        return f"{protocol or 'an unknown protocol'} (no chunked encoding)"
    if isinstance(sock, ssl.SSLSocket):
        return "TLS terminated by gunicorn itself (certfile)"
    if type(resp) is not Response:
        return f"gunicorn's {type(resp).__name__} responses"
    if not isinstance(sock, socket.socket) or not _plain_tcp(sock):
        return "a socket that is not plain TCP"
    return None


def _detach(resp: Any, sock: socket.socket) -> socket.socket | None:
    """Take the connection from gunicorn (see the module docstring); ``None``
    if this response cannot be detached now, and then nothing was changed."""
    if not resp.headers_sent or not resp.chunked:
        return None
    try:
        fd = sock.fileno()
        copy = os.dup(fd)
    except OSError:
        return None
    try:
        stand_in = socket.socket(sock.family, socket.SOCK_STREAM)
        try:
            os.dup2(stand_in.fileno(), fd, inheritable=False)
        finally:
            stand_in.close()
    except OSError:  # gunicorn's descriptor is untouched: drop only the copy
        os.close(copy)
        return None
    mine = socket.socket(fileno=copy)
    resp.chunked = False
    resp.force_close()
    return mine


def is_stream_request(environ: Mapping[str, Any], response_headers: Any = ()) -> bool:
    """Whether a request went to an sse_kit endpoint (answered or refused), asked
    for an event stream (``Accept`` names ``text/event-stream``, as ``EventSource``
    always sends), or got one (*response_headers*, when known)."""
    if environ.get(ENVIRON_MARK) or "text/event-stream" in str(environ.get("HTTP_ACCEPT", "")):
        return True
    items = response_headers.items() if hasattr(response_headers, "items") else response_headers
    return any(
        str(name).lower() == "content-type" and str(value).startswith("text/event-stream")
        for name, value in items
    )


def redact(environ: dict[str, Any]) -> None:
    """Leave a stream request's query string out of what gunicorn logs (the
    ``RAW_URI`` and ``QUERY_STRING`` its access log reads)."""
    query = environ.get("QUERY_STRING")
    if query and is_stream_request(environ):
        environ["RAW_URI"] = str(environ.get("RAW_URI", "")).split("?", 1)[0] + "?" + REDACTED
        environ["QUERY_STRING"] = REDACTED


class _Detaching:
    """The WSGI app :func:`detaching` returns; other attributes are the app's."""

    def __init__(self, app: WSGIApp, redact_queries: bool, threads: int | None) -> None:
        self.sse_kit_app = app
        self._redact = redact_queries
        self._threads = threads

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        resp = getattr(start_response, "__self__", None)
        sock = environ.get("gunicorn.socket")
        environ[SERVER_KEY] = "sse_kit.gunicorn"
        if self._threads is not None:
            environ[THREADS_KEY] = self._threads
        # An HTTP/2 stream that sse_kit's worker class serves (sse_kit._h2):
        # its session takes the stream over.
        handover = getattr(getattr(resp, "h2_conn", None), "handover", None)
        why = None if callable(handover) else _cannot_detach(environ, resp, sock)
        if callable(handover):
            environ[DETACH_KEY] = partial(handover, resp)
        elif why is None and isinstance(sock, socket.socket):
            environ[DETACH_KEY] = partial(_detach, resp, sock)
        else:
            environ[PARKED_KEY] = why
        result = self.sse_kit_app(environ, start_response)
        if self._redact:
            redact(environ)  # the app has read the query string by now
        return result

    def __getattr__(self, name: str) -> Any:
        # Code that looks at gunicorn's worker.wsgi (app.extensions, a Flask
        # app's config) sees the app it wraps.
        return getattr(self.sse_kit_app, name)


def detaching(
    app: WSGIApp, *, redact_queries: bool = True, threads: int | None = None
) -> WSGIApp:
    """*app*, offering each stream that may detach the means to (see the module
    docstring); with *redact_queries*, stream query strings stay out of the log;
    *threads* (the worker's pool size) lets a stream that cannot detach be
    refused before it takes the last threads. The result has *app*'s
    attributes (``extensions``, ``sse_kit_hubs``, ...)."""
    return _Detaching(app, redact_queries, threads)
