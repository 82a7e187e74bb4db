"""How sse_kit's worker class hands an HTTP/2 connection to an :class:`H2Session`.

gunicorn (>= 25, with the ``h2`` package) negotiates HTTP/2 and sets up the
connection (TLS and ALPN, or the cleartext preface; its SETTINGS are sent),
then serves its requests one after another on one pool thread. Under
:class:`sse_kit.gunicorn.ThreadWorker`, :func:`take_over` gives the connection
to an :class:`sse_kit._h2.H2Session` instead, and returns the pool thread.
Each complete request is served on the pool by gunicorn's own
``handle_http2_request`` (the same environ, hooks, access log and
``HTTP2Response`` as gunicorn's), writing through the session's
:class:`sse_kit._h2table.StreamTable`.

This relies on gunicorn's layout: ``ThreadWorker.handle_http2(conn)`` and
``handle_http2_request(req, conn, h2_conn)``, ``conn.parser.h2_conn`` (an h2
``H2Connection``), ``HTTP2Request(stream, cfg, peer)`` and ``HTTP2Body``, and
``HTTP2Response`` writing only through ``send_response_headers``,
``send_data`` and ``end_stream``. :func:`layout_problem` checks them once; a
gunicorn that differs keeps its own HTTP/2 handling, with one WARNING.

A cleartext connection upgraded from HTTP/1.1 (``Upgrade: h2c``) is switched by
:func:`take_over_upgrade` as gunicorn's ``handle_h2c_upgrade`` does (the
request's body, ``unreader.take_buffered()``, ``negotiation.UPGRADE_101``,
``http.get_parser(..., http2_connection=True)`` and its ``initiate_upgrade``),
so that the request that asked for it is served by the session too; where
those differ, gunicorn upgrades it and serves that first request itself.
"""

from __future__ import annotations

import inspect
import logging
from functools import partial
from typing import Any, Final

from ._h2 import H2Session, RequestHead, StreamTable

__all__ = ["layout_problem", "take_over", "take_over_upgrade"]

log = logging.getLogger(__name__)

# What HTTP2Response must call on its connection, and nothing else of it.
_WRITES: Final = ("send_response_headers", "send_data", "end_stream")


def layout_problem() -> str | None:
    """Why this gunicorn's HTTP/2 cannot be taken over, or ``None``."""
    try:
        from gunicorn.http2.request import (  # type: ignore[import-untyped]  # noqa: F401
            HTTP2Body,
            HTTP2Request,
        )
        from gunicorn.http2.response import HTTP2Response  # type: ignore[import-untyped]
        from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]
    except ImportError as exc:
        return f"gunicorn has no HTTP/2 support sse_kit knows ({exc})"
    for name in ("handle_http2", "handle_http2_request"):
        if not callable(getattr(ThreadWorker, name, None)):
            return f"gunicorn's gthread worker has no {name}()"
    try:
        source = inspect.getsource(HTTP2Response)
    except (OSError, TypeError):
        return "the source of gunicorn.http2.response.HTTP2Response cannot be read"
    calls = {part.split("(", 1)[0] for part in source.split("self.h2_conn.")[1:]}
    if calls != set(_WRITES):
        return f"gunicorn's HTTP2Response writes through {sorted(calls)}, not {list(_WRITES)}"
    return None


class _Connection:
    """What gunicorn's ``handle_http2_request`` reads of a connection. No socket:
    the session's is its alone (``environ["gunicorn.socket"]`` is ``None``)."""

    __slots__ = ("client", "server", "sock")

    def __init__(self, client: Any, server: Any) -> None:
        self.client = client
        self.server = server
        self.sock = None


def take_over(worker: Any, conn: Any, upgraded: RequestHead | None = None,
              early: bytes = b"") -> H2Session | None:
    """Give gunicorn's HTTP/2 connection *conn* to a new :class:`H2Session`
    (started, with :meth:`H2Session.start`'s *upgraded* and *early*); ``None``
    if this connection is not in the state sse_kit knows (then gunicorn serves
    it as usual)."""
    import h2.connection

    parser = conn.parser
    machine = getattr(parser, "h2_conn", None)
    if not isinstance(machine, h2.connection.H2Connection) or getattr(
            parser, "pending_requests", None):
        return None
    cfg = worker.cfg
    session = H2Session(
        conn.sock, machine,
        serve=partial(_serve, worker, _Connection(conn.client, conn.server)),
        submit=partial(_submit, worker),
        on_close=partial(_closed, worker),
        on_flood=partial(_count_flood, worker),
        idle_timeout=float(cfg.keepalive) or None,
        stall_timeout=float(cfg.timeout or 30),
        drain_timeout=max(1.0, float(cfg.graceful_timeout) - 1.0),
    )
    worker.method_queue.defer(worker.sse_kit_h2_sessions.add, session)
    session.start(upgraded, early)
    if not worker.alive:
        session.drain()
    return session


def take_over_upgrade(worker: Any, conn: Any, req: Any, settings: Any) -> H2Session | None:
    """Switch an HTTP/1.1 connection that asked for ``Upgrade: h2c`` to
    HTTP/2, as gunicorn's ``handle_h2c_upgrade`` does, and give it to a new
    :class:`H2Session`, which serves the request that asked (stream 1) on the
    pool like any other: an event stream among them detaches, and the
    connection's later requests are not held behind it."""
    from gunicorn import http, util  # type: ignore[import-untyped]
    from gunicorn.http2 import negotiation  # type: ignore[import-untyped]

    if not (hasattr(negotiation, "UPGRADE_101") and hasattr(conn.parser, "unreader")
            and callable(getattr(http, "get_parser", None))):
        return None
    body = (req.body.read() or b"") if req.body is not None else b""
    early = conn.parser.unreader.take_buffered()  # frames behind the request
    util.write(conn.sock, negotiation.UPGRADE_101)
    parser = http.get_parser(worker.cfg, conn.sock, conn.client, http2_connection=True)
    upgraded = parser.initiate_upgrade(settings, req, body)  # stream 1, its SETTINGS sent
    conn.parser = parser
    conn.is_http2 = True
    head = RequestHead(1, list(upgraded.stream.request_headers), body)
    # take_over() cannot decline this one: its parser is the one just made,
    # with no request pending.
    return take_over(worker, conn, head, early or b"")


def _submit(worker: Any, job: Any) -> bool:
    try:
        worker.tpool.submit(job)
    except RuntimeError:  # the pool is shut down: the worker is leaving
        return False
    return True


def _count_flood(worker: Any) -> None:
    """A session closed its connection as a flood: every hub of the worker counts it."""
    for hub in getattr(worker, "sse_kit_hubs", None) or []:
        hub.counters.add("h2_floods")


def _closed(worker: Any, session: H2Session) -> None:
    """The session thread closed the connection: gunicorn forgets it (main thread)."""

    def forget() -> None:
        worker.sse_kit_h2_sessions.discard(session)
        worker.nr_conns -= 1

    worker.method_queue.defer(forget)


def _serve(worker: Any, conn: _Connection, table: StreamTable, head: RequestHead) -> None:
    """One request, on a pool thread, as gunicorn serves an HTTP/2 request."""
    from gunicorn.http2.errors import (  # type: ignore[import-untyped]
        HTTP2ConnectionError,
        HTTP2StreamError,
    )
    from gunicorn.http2.request import HTTP2Body, HTTP2Request

    stream_id = head.stream_id
    try:
        try:
            req = HTTP2Request(head, worker.cfg, conn.client)
        except Exception as exc:  # a bad request is a stream error (RFC 9113 section 8.1.1)
            log.debug("sse_kit HTTP/2: bad request on stream %d: %s", stream_id, exc)
            table.send_error(stream_id, 400)
            return
        req.body = HTTP2Body(head.body)
        try:
            worker.handle_http2_request(req, conn, table)
        except (HTTP2StreamError, HTTP2ConnectionError) as exc:
            log.debug("sse_kit HTTP/2: stream %d closed: %s", stream_id, exc)
        except Exception:
            worker.log.exception("Error handling HTTP/2 request")
            table.send_error(stream_id, 500)
    finally:
        table.finished(stream_id)
