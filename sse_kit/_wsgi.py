"""serve_sse(): the WSGI response around one stream (gokit ``sse.ServeSSE``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header
from werkzeug.wrappers import Request, Response

from ._client import Client, ClientOption
from ._connection import Stream
from ._exceptions import HubFull, HubNotRunning
from ._fastpath import direct_socket
from ._hub import Hub

__all__ = ["serve_sse"]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
# Headers of every stream. No hop-by-hop header (Connection, Transfer-Encoding):
# PEP 3333 leaves those to the server.
STREAM_HEADERS: Final = (
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # nginx: do not buffer this response
)
# A Last-Event-ID longer than this is not read (it is answered with a reset).
MAX_LAST_EVENT_ID: Final = 256
_FROM_REQUEST: Final[Any] = object()  # sentinel: read Last-Event-ID from the request


def _refuse(status: int, reason: str, **headers: str) -> Response:
    """A one-line plain-text refusal; no stream is opened."""
    return Response(reason + "\n", status=status, mimetype="text/plain", headers=headers)


def last_event_id_of(environ: Mapping[str, Any]) -> str | None:
    """The ``Last-Event-ID`` header, else the ``last_event_id`` query parameter
    (for clients that cannot set headers), else ``None``."""
    value = environ.get("HTTP_LAST_EVENT_ID")
    if value is None:
        query = environ.get("QUERY_STRING", "")
        if "last_event_id" in query:
            values = parse_qs(query, keep_blank_values=True).get("last_event_id")
            value = values[0] if values else None
    if value is None:
        return None
    return str(value)[:MAX_LAST_EVENT_ID + 1]


def serve_sse(
    hub: Hub,
    request_or_environ: Request | Mapping[str, Any],
    client_id: str,
    *options: ClientOption,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    last_event_id: str | None = _FROM_REQUEST,
) -> Response:
    """Open an SSE stream for *client_id* and return it as a WSGI response.

    Return the result from a Flask view, or call it as a WSGI application
    (``serve_sse(hub, environ, cid)(environ, start_response)``) from any other
    framework. The stream starts with a ``connected`` event, resumes from
    ``Last-Event-ID`` when the request has one, and ends when the client goes
    away, the client is unregistered, or the hub stops.

    :param hub: a running :class:`Hub`.
    :param request_or_environ: a werkzeug/Flask request or a WSGI environ.
    :param client_id: the ID broadcast patterns match. Derive it from your own
        session or auth; never take it from the request as sent.
    :param options: :class:`ClientOption` values.
    :param last_event_id: overrides the request's ``Last-Event-ID``.
    :returns: ``200`` streaming ``text/event-stream``; ``405`` for a method other
        than GET, ``406`` when ``Accept`` excludes ``text/event-stream``, ``503``
        with ``Retry-After`` when the hub is full or not running.
    """
    environ: Mapping[str, Any] = (
        request_or_environ.environ
        if isinstance(request_or_environ, Request)
        else request_or_environ
    )
    method = environ.get("REQUEST_METHOD", "GET")
    if method != "GET":
        return _refuse(405, f"an event stream is opened with GET, not {method}", Allow="GET")
    accept = environ.get("HTTP_ACCEPT")
    if accept and parse_accept_header(accept, MIMEAccept).quality("text/event-stream") <= 0:
        return _refuse(406, "this endpoint only serves text/event-stream")
    if last_event_id is _FROM_REQUEST:
        last_event_id = last_event_id_of(environ)
    client = Client(
        client_id,
        *options,
        metadata=metadata,
        session_id=session_id,
        user_id=user_id,
        buffer=hub.client_buffer,
        last_event_id=last_event_id,
    )
    retry_after = str(max(1, round(hub.retry / 1000)))
    try:
        reg = hub._register(client)
    except HubFull as exc:
        log.warning("sse_kit: refused client %r: %s", client_id, exc)
        return _refuse(503, str(exc), **{"Retry-After": retry_after})
    except HubNotRunning as exc:
        log.error("sse_kit: refused client %r: %s", client_id, exc)
        return _refuse(503, "the event hub is not running", **{"Retry-After": retry_after})
    direct = direct_socket(environ) if hub.fast_path and hub._server_frames_chunks else None
    response = Response(
        Stream(hub, reg, direct), status=200, headers=STREAM_HEADERS, direct_passthrough=True
    )
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
