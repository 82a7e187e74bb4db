"""serve_sse(): the WSGI response around one stream (gokit ``sse.ServeSSE``).

A stream request goes through named steps, each once, the first refusal
answering: :func:`check_request` (method, ``Accept``, origin, preflight), the
connection-rate limit (:mod:`sse_kit._admission`), then the application's
authorization and identification (the caller's, :mod:`sse_kit.flask`'s
``authorize`` and ``client_id``, or a stream ticket), the identity's expiry,
:func:`make_client`, :func:`register` (the hub's limits) and
:func:`stream_response`. :func:`serve_sse` and the Flask blueprint compose the
same steps; every refusal is built by :func:`sse_kit._refusal.refuse`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any, Final

from werkzeug.datastructures import Headers, MIMEAccept
from werkzeug.http import parse_accept_header
from werkzeug.wrappers import Request, Response

from ._admission import check_expiry, earliest, limit_rate, query_param, redeem_ticket
from ._advice import parked_advice, thread_limit
from ._client import Client, ClientOption
from ._connection import DETACH_KEY, Stream
from ._cors import CORSPolicy
from ._exceptions import HubFull, HubNotRunning
from ._history import MAX_EVENT_ID_LENGTH
from ._hub import Hub
from ._options import check_type, type_error
from ._ratelimit import RateLimit
from ._refusal import note_refusal, refuse, with_cors
from ._socket import guard, peer_probe
from ._tickets import StreamTickets, epoch_of

__all__ = ["serve_sse"]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
# Headers of every stream. No hop-by-hop header (Connection, Transfer-Encoding):
# PEP 3333 leaves those to the server.
STREAM_HEADERS: Final = (
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # nginx: do not buffer this response
)
_EVENT_STREAM_ACCEPTS: Final = frozenset({"text/event-stream", "*/*"})
# The fix a refusal's one-time WARNING names, by HubFull.limit.
_REFUSAL_FIX: Final = {
    "max_clients": "Raise Hub(max_clients=...) if the worker can take more",
    "max_clients_per_id": "One client ID has that many tabs open; raise "
                          "Hub(max_clients_per_id=...) if that is expected",
    "threads": "Streams here cannot detach and hold a worker thread each: make them detach "
               "(docs/deployment.md), or raise --threads",
}
_FROM_REQUEST: Final[Any] = object()  # sentinel: read Last-Event-ID from the request
# Set in the environ of every request an sse_kit endpoint sees, answered or refused,
# so that sse_kit.gunicorn.AccessLogger leaves its query string out of the log.
ENVIRON_MARK: Final = "sse_kit.stream_request"


def check_request(
    hub: Hub, environ: Mapping[str, Any], cors: CORSPolicy | None = None
) -> Response | None:
    """Step 1 of every stream request: the answer to one that cannot open a
    stream, whoever sends it: a CORS preflight, a wrong method (``405``), an
    ``Accept`` that excludes ``text/event-stream`` (``406``), or a disallowed
    origin (``403``); ``None`` for a request that may go on to authorization.
    Refusals carry the CORS headers *cors* gives the request; a preflight
    answer carries its own. It marks *environ* (:data:`ENVIRON_MARK`)."""
    if isinstance(environ, MutableMapping):
        environ[ENVIRON_MARK] = True
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "OPTIONS" and cors is not None:
        answer = cors.preflight(environ)
        if answer.status_code != 204:
            reason = answer.get_data(as_text=True).strip()
            note_refusal(hub, environ, answer.status_code, reason, "rejected")
        return answer
    if method != "GET":
        allow = "GET, OPTIONS" if cors is not None else "GET"
        return refuse(hub, environ, 405, f"an event stream is opened with GET, not {method}",
                      counter="rejected", cors=cors, Allow=allow)
    if (accept := environ.get("HTTP_ACCEPT")) and not _accepts_event_stream(accept):
        return refuse(hub, environ, 406, "this endpoint only serves text/event-stream",
                      counter="rejected", cors=cors)
    if cors is not None and (why := cors.refusal(environ)) is not None:
        return refuse(hub, environ, 403, why, counter="rejected", cors=cors)
    return None


def _accepts_event_stream(accept: str) -> bool:
    # What EventSource sends is answered without werkzeug's parser (whose
    # nested classes are the deepest stack a stream's thread would otherwise
    # reach and keep; see sse_kit._router.signal).
    if accept in _EVENT_STREAM_ACCEPTS:
        return True
    return parse_accept_header(accept, MIMEAccept).quality("text/event-stream") > 0


def last_event_id_of(environ: Mapping[str, Any]) -> str | None:
    """The ``Last-Event-ID`` header, else the ``last_event_id`` query parameter
    (for clients that cannot set headers), else ``None``."""
    value = environ.get("HTTP_LAST_EVENT_ID")
    if value is None:
        value = query_param(environ, "last_event_id")
    if value is None:
        return None
    # One character more than an ID can have, so that a longer one is still
    # too long (and answered with a reset) without keeping all of it.
    return str(value)[:MAX_EVENT_ID_LENGTH + 1]


def serve_sse(
    hub: Hub,
    request_or_environ: Request | Mapping[str, Any],
    client_id: str | None = None,
    *options: ClientOption,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    last_event_id: str | None = _FROM_REQUEST,
    cors: CORSPolicy | None = None,
    expires_at: datetime | float | None = None,
    tickets: StreamTickets | None = None,
    rate_limit: RateLimit | None = None,
) -> Response:
    """Open an SSE stream for *client_id* and return it as a WSGI response.

    Return the result from a Flask view, or call it as a WSGI application
    (``serve_sse(hub, environ, cid)(environ, start_response)``) from any other
    framework. The stream starts with a ``connected`` event, resumes from
    ``Last-Event-ID`` when the request has one, and ends when the client goes
    away, the client is unregistered, the hub stops, or its identity expires.

    :param hub: a running :class:`Hub`.
    :param request_or_environ: a werkzeug/Flask request or a WSGI environ.
    :param client_id: the ID broadcast patterns match. Derive it from your own
        session or auth; never take it from the request as sent. Leave it out
        with *tickets*: the ticket names the client.
    :param options: :class:`ClientOption` values.
    :param last_event_id: overrides the request's ``Last-Event-ID``.
    :param cors: a :class:`CORSPolicy` to let other origins read the stream; it
        also answers ``OPTIONS`` preflights (call :meth:`CORSPolicy.preflight`
        yourself before authenticating, since a preflight carries no cookies).
    :param expires_at: when the identity you authenticated expires (an aware
        datetime or seconds since the epoch): the stream ends then with a
        short ``retry:`` hint, and the browser comes back through your
        authentication and resumes; already past: ``401``.
    :param tickets: authenticate the request by its ``?ticket=`` instead
        (:class:`StreamTickets`): the stream gets the ticket's client ID and
        identity expiry; a missing, bad, expired or used ticket gets ``401``.
    :param rate_limit: a :class:`RateLimit` on how often one source may open a
        stream (``429`` with ``Retry-After`` beyond it).
    :returns: ``200`` streaming ``text/event-stream``; ``405`` for a method other
        than GET, ``406`` when ``Accept`` excludes ``text/event-stream``, ``403``
        for an origin *cors* does not allow, ``429`` with ``Retry-After`` from
        *rate_limit* or when the client ID has ``max_clients_per_id`` streams,
        ``401`` for a refused ticket or an expired identity, ``503`` with
        ``Retry-After`` when the hub is full or was stopped (the worker is
        shutting down). A hub that never ran starts here. Each refusal is one
        line of text.
    :raises TypeError: if *hub* is not a :class:`Hub`, *request_or_environ* is
        neither a request nor a mapping, *client_id* is not a ``str`` (or is
        given along with *tickets*), or *tickets*, *rate_limit* or *expires_at*
        has the wrong type.
    :raises ValueError: if *client_id* is empty.
    """
    environ = _environ_of(hub, request_or_environ, cors)
    _check_types(client_id, tickets, rate_limit)
    identity_end = epoch_of("expires_at", expires_at)
    refusal = check_request(hub, environ, cors)
    if refusal is None:
        refusal = limit_rate(hub, environ, rate_limit, cors)
    if refusal is not None:
        return refusal
    if tickets is not None:
        identity = redeem_ticket(hub, environ, tickets, cors)
        if isinstance(identity, Response):
            return identity
        client_id, identity_end = identity.client_id, earliest(identity_end, identity.expires_at)
    refusal = check_expiry(hub, environ, identity_end, cors)
    if refusal is not None:
        return refusal
    if client_id is None:  # neither it nor tickets: as Client says of any other non-str
        raise type_error("client id", "a str", client_id)
    client = make_client(hub, environ, client_id, *options, metadata=metadata,
                         session_id=session_id, user_id=user_id, last_event_id=last_event_id)
    return open_stream(hub, environ, client, cors, expires_at=identity_end)


def _check_types(client_id: object, tickets: object, rate_limit: object) -> None:
    """serve_sse's identity and limit arguments are of the types it takes."""
    check_type("tickets", tickets, StreamTickets, optional=True)
    check_type("rate_limit", rate_limit, RateLimit, optional=True)
    if tickets is not None and client_id is not None:  # (a wrong client_id: Client says so)
        raise TypeError("pass client_id or tickets, not both: the ticket names the client")


def _environ_of(
    hub: object, request_or_environ: object, cors: object
) -> Mapping[str, Any]:
    """The WSGI environ of *request_or_environ*, once serve_sse's arguments are
    of the types it takes."""
    check_type("hub", hub, Hub)
    check_type("cors", cors, CORSPolicy, optional=True)
    if isinstance(request_or_environ, Request):
        return request_or_environ.environ
    if isinstance(request_or_environ, Mapping):
        return request_or_environ
    raise type_error("request_or_environ", "a werkzeug Request or a WSGI environ",
                     request_or_environ)


def make_client(
    hub: Hub,
    environ: Mapping[str, Any],
    client_id: str,
    *options: ClientOption,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    last_event_id: str | None = _FROM_REQUEST,
) -> Client:
    """The step after authorization and identification: the :class:`Client` of
    an accepted request, resuming from its ``Last-Event-ID`` (unless
    *last_event_id* overrides it) and watching its peer for a hang-up."""
    if last_event_id is _FROM_REQUEST:
        last_event_id = last_event_id_of(environ)
    client = Client(client_id, *options, metadata=metadata, session_id=session_id,
                    user_id=user_id, buffer=hub.client_buffer, last_event_id=last_event_id)
    client._watch_peer(peer_probe(environ))
    return client


def open_stream(
    hub: Hub, environ: Mapping[str, Any], client: Client, cors: CORSPolicy | None,
    *, expires_at: float | None = None,
) -> Response:
    """The last steps: register *client* and answer with its stream, or with
    the hub's refusal (``429``/``503``) when it has no room. The stream ends
    at *expires_at* (seconds since the epoch), the identity's expiry, if given."""
    stream = register(hub, environ, client, cors, expires_at=expires_at)
    if isinstance(stream, Response):
        return stream
    return with_cors(stream_response(stream), environ, cors)


def register(
    hub: Hub, environ: Mapping[str, Any], client: Client, cors: CORSPolicy | None,
    *, expires_at: float | None = None,
) -> Stream | Response:
    """Register *client* with *hub* and build its :class:`Stream` (detached by
    the server when it offers to, else holding its thread, said once per process);
    the refusal when the hub is full or not running."""
    # The server's offer to hand the connection over after the first chunk
    # (sse_kit.gunicorn puts it there), unless the hub says never.
    detach = environ.get(DETACH_KEY) if hub.fast_path else None
    holds_thread = None if detach is not None else thread_limit(environ, hub.max_clients)
    try:
        reg = hub._register(client, holds_thread)
    except (HubFull, HubNotRunning) as exc:
        return _hub_refusal(hub, environ, client, exc, cors)
    if detach is None:  # this stream will hold its thread: say why, once, with the fix
        hub.counters.add("parked")
        hub.advise_once(*parked_advice(environ, hub.fast_path))
    try:
        return Stream(hub, reg, on_abort=guard(environ, hub.write_timeout), detach=detach,
                      expires_at=expires_at)
    except BaseException:  # e.g. metadata that cannot be sent: do not leak the registration
        hub.unregister(client)
        raise


def _hub_refusal(
    hub: Hub, environ: Mapping[str, Any], client: Client, exc: HubFull | HubNotRunning,
    cors: CORSPolicy | None,
) -> Response:
    # The hub counted it; said here with the fix, once per limit.
    retry_after = str(max(1, round(hub.retry / 1000)))
    if isinstance(exc, HubNotRunning):
        # Ordinary while a worker shuts down (SIGTERM, a SIGHUP reload, max_requests):
        # the browser retries and reaches a live worker.
        log.info("sse_kit: refused client %r: %s", client.id, exc)
        return refuse(hub, environ, 503, "the event hub is shutting down", counter=None,
                      cors=cors, **{"Retry-After": retry_after})
    log.info("sse_kit: refused client %r: %s", client.id, exc)
    hub.advise_once(f"refused:{exc.limit}", logging.WARNING,
                    "sse_kit: refused a stream (%s): %s. %s", exc.limit, exc,
                    _REFUSAL_FIX.get(exc.limit, ""))
    status = 429 if exc.limit == "max_clients_per_id" else 503
    return refuse(hub, environ, status, str(exc), counter=None, cors=cors,
                  **{"Retry-After": retry_after})


def stream_response(stream: Stream) -> Response:
    """The ``200`` response that streams *stream*."""
    # Built flat (headers added one by one, the status as text): werkzeug's own
    # Headers(list) and int-status paths nest generators and enum lookups, and
    # the deepest point of the request is stack a parked stream thread keeps.
    headers = Headers()
    for name, value in STREAM_HEADERS:
        headers.add(name, value)
    return Response(stream, status="200 OK", headers=headers, content_type=CONTENT_TYPE,
                    direct_passthrough=True)
