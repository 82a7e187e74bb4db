"""sse_kit._detach, the gunicorn adapter, with gunicorn's own objects over real TCP.

Requests are parsed by gunicorn's RequestParser from a real socket and answered
through the ``Response`` that ``gunicorn.http.wsgi.create()`` builds, as the
gthread worker does; only the worker's thread pool and poller are left out.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flask import Flask
from gunicorn import util  # type: ignore[import-untyped]
from gunicorn.config import Config  # type: ignore[import-untyped]
from gunicorn.http import wsgi  # type: ignore[import-untyped]
from gunicorn.http.parser import RequestParser  # type: ignore[import-untyped]

from sse_kit import Hub, serve_sse
from sse_kit._connection import DETACH_KEY
from sse_kit._detach import REDACTED, _detach, detaching, layout_problem
from sse_kit._wire import LAST_CHUNK, encode_retry, frame_chunk
from sse_kit.flask import create_blueprint
from sse_kit.gunicorn import find_hubs
from tests._decoder import decode
from tests._live import RawStream, wait_for

STREAM_REQUEST = (b"GET /events?token=secret HTTP/1.1\r\nHost: test\r\n"
                  b"Accept: text/event-stream\r\n\r\n")
PAGE_REQUEST = b"GET /page?x=1 HTTP/1.1\r\nHost: test\r\nAccept: text/html\r\n\r\n"
HTTP10_REQUEST = b"GET /events HTTP/1.0\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"
SSE_HEADERS = [("Content-Type", "text/event-stream")]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Exchange:
    """One request over a real loopback connection, parsed and answered by
    gunicorn's own code: :attr:`resp` and :attr:`environ` come from
    ``gunicorn.http.wsgi.create()``."""

    def __init__(self, request: bytes, *, wrap: Callable[[socket.socket], socket.socket]
                 | None = None) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.peer = socket.create_connection(listener.getsockname())
            self.sock, self.addr = listener.accept()
        self.peer.sendall(request)
        self.cfg = Config()
        self.req = next(RequestParser(self.cfg, self.sock, self.addr))
        if wrap is not None:
            self.sock = wrap(self.sock)
        self.resp, self.environ = wsgi.create(
            self.req, self.sock, self.addr, ("127.0.0.1", "8000"), self.cfg)

    def read_to_end(self, timeout: float = 10.0) -> bytes:
        """Everything the browser's end receives until the connection closes."""
        received = bytearray()

        def closed() -> bool:
            self.peer.settimeout(0.2)
            try:
                data = self.peer.recv(65536)
            except TimeoutError:
                return False
            received.extend(data)
            return not data

        wait_for(closed, timeout, interval=0, message=lambda: f"EOF; got {bytes(received)!r}")
        return bytes(received)

    def close(self) -> None:
        self.peer.close()
        self.sock.close()


@pytest.fixture
def exchanges() -> Iterator[Callable[..., Exchange]]:
    """Factory: ``exchanges(request_bytes, wrap=None)`` -> an :class:`Exchange`, closed after."""
    made: list[Exchange] = []

    def make(request: bytes, **options: Any) -> Exchange:
        made.append(Exchange(request, **options))
        return made[-1]

    yield make
    for exchange in made:
        exchange.close()


def test_layout_problem_is_none_on_the_installed_gunicorn() -> None:
    assert layout_problem() is None


# -- _detach ----------------------------------------------------------------------------------


def test_detach_hands_the_connection_over_and_leaves_gunicorn_a_stand_in(
    exchanges: Callable[..., Exchange]
) -> None:
    ex = exchanges(STREAM_REQUEST)
    resp, sock = ex.resp, ex.sock
    resp.start_response("200 OK", SSE_HEADERS)
    resp.write(b"data: first\n\n")  # the headers and the first chunk
    fd = sock.fileno()
    mine = _detach(resp, sock)
    assert mine is not None
    with mine:
        assert mine.fileno() != fd and sock.fileno() == fd
        assert mine.getpeername() == ex.peer.getsockname()
        assert (resp.chunked, resp.should_close()) == (False, True)
        assert resp.must_close  # force_close(): never kept alive, whatever gunicorn's rules
        # gunicorn's descriptor now names an unconnected socket: nothing it does reaches the peer.
        with pytest.raises(OSError):
            sock.getpeername()
        with pytest.raises(OSError):
            sock.send(b"stray")
        with pytest.raises(OSError):
            sock.shutdown(socket.SHUT_WR)
        # What the gthread worker does next: end the response, then close gracefully.
        resp.close()  # not chunked any more: no last-chunk
        sock.setblocking(True)
        util.close_graceful(sock)  # shutdown(SHUT_WR) on the stand-in: no FIN to the peer
        assert sock.fileno() == -1
        mine.sendall(b"after")  # the connection is still open, and sse_kit's
    wire = ex.read_to_end()
    head, body = wire.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert body == frame_chunk(b"data: first\n\n") + b"after"


def _finish_normally(ex: Exchange) -> None:
    ex.resp.write(b"hello")
    ex.resp.close()
    ex.peer.shutdown(socket.SHUT_WR)  # the browser is done sending: no linger to wait out
    util.close_graceful(ex.sock)


@pytest.mark.parametrize(
    ("request_bytes", "headers", "write", "body"),
    [
        pytest.param(STREAM_REQUEST, SSE_HEADERS, False, b"5\r\nhello\r\n" + LAST_CHUNK,
                     id="headers-not-sent"),
        pytest.param(STREAM_REQUEST, [*SSE_HEADERS, ("Content-Length", "10")], True,
                     b"first" + b"hello", id="content-length"),
        pytest.param(HTTP10_REQUEST, SSE_HEADERS, True, b"first" + b"hello", id="http-1.0"),
    ],
)
def test_detach_changes_nothing_when_it_cannot_detach(
    exchanges: Callable[..., Exchange], request_bytes: bytes, headers: list[tuple[str, str]],
    write: bool, body: bytes,
) -> None:
    ex = exchanges(request_bytes)
    ex.resp.start_response("200 OK", headers)
    if write:
        ex.resp.write(b"first")
    before = (ex.resp.chunked, ex.resp.should_close(), ex.sock.fileno())
    assert _detach(ex.resp, ex.sock) is None
    assert (ex.resp.chunked, ex.resp.should_close(), ex.sock.fileno()) == before
    assert ex.sock.getpeername() == ex.peer.getsockname()  # still the connection
    _finish_normally(ex)  # and the response ends as gunicorn would end it
    assert ex.read_to_end().split(b"\r\n\r\n", 1)[1] == body


# -- detaching() ------------------------------------------------------------------------------


def _recording_app(seen: list[dict[str, Any]]) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", SSE_HEADERS)
        return [b"data: x\n\n"]

    return app


def test_detaching_offers_the_detach_for_plain_http_1_1_over_tcp(
    exchanges: Callable[..., Exchange]
) -> None:
    seen: list[dict[str, Any]] = []
    ex = exchanges(STREAM_REQUEST)
    detaching(_recording_app(seen))(ex.environ, ex.resp.start_response)
    assert callable(seen[0].get(DETACH_KEY))


class _Cooperative(socket.socket):
    """Stands for a gevent/eventlet socket: a socket.socket subclass."""


class _OtherResponse(wsgi.Response):  # type: ignore[misc]
    """Stands for another protocol's writer (gunicorn's HTTP/2 response)."""


def _tls(sock: socket.socket) -> socket.socket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, do_handshake_on_connect=False)


def _cooperative(sock: socket.socket) -> socket.socket:
    return _Cooperative(fileno=sock.detach())


def _foreign_start_response(ex: Exchange) -> Callable[..., Any]:
    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        return ex.resp.start_response(status, headers, exc_info)

    return start_response


def _other_response(ex: Exchange) -> Callable[..., Any]:
    ex.resp = _OtherResponse(ex.req, ex.sock, ex.cfg)
    return ex.resp.start_response  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("request_bytes", "wrap", "start_response"),
    [
        pytest.param(HTTP10_REQUEST, None, None, id="http-1.0"),
        pytest.param(STREAM_REQUEST, _tls, None, id="tls"),
        pytest.param(STREAM_REQUEST, _cooperative, None, id="socket-subclass"),
        pytest.param(STREAM_REQUEST, None, _foreign_start_response, id="foreign-start_response"),
        pytest.param(STREAM_REQUEST, None, _other_response, id="response-subclass"),
    ],
)
def test_detaching_offers_nothing_where_the_connection_cannot_be_taken(
    exchanges: Callable[..., Exchange],
    request_bytes: bytes,
    wrap: Callable[[socket.socket], socket.socket] | None,
    start_response: Callable[[Exchange], Callable[..., Any]] | None,
) -> None:
    seen: list[dict[str, Any]] = []
    ex = exchanges(request_bytes, wrap=wrap)
    respond = ex.resp.start_response if start_response is None else start_response(ex)
    detaching(_recording_app(seen))(ex.environ, respond)
    assert DETACH_KEY not in seen[0]


def test_detaching_offers_nothing_over_a_unix_socket() -> None:
    peer, sock = socket.socketpair()
    with peer, sock:
        peer.sendall(STREAM_REQUEST)
        cfg = Config()
        req = next(RequestParser(cfg, sock, ""))
        resp, environ = wsgi.create(req, sock, "", "unix:/tmp/s.sock", cfg)
        seen: list[dict[str, Any]] = []
        detaching(_recording_app(seen))(environ, resp.start_response)
        assert DETACH_KEY not in seen[0]


@pytest.mark.parametrize("redact_queries", [True, False])
def test_detaching_redacts_stream_query_strings_only(
    exchanges: Callable[..., Exchange], redact_queries: bool
) -> None:
    seen: list[dict[str, Any]] = []
    app = detaching(_recording_app(seen), redact_queries=redact_queries)
    stream, page = exchanges(STREAM_REQUEST), exchanges(PAGE_REQUEST)
    app(stream.environ, stream.resp.start_response)
    app(page.environ, page.resp.start_response)
    assert seen[0]["QUERY_STRING"] == "token=secret"  # the app read the real one
    if redact_queries:
        assert stream.environ["RAW_URI"] == f"/events?{REDACTED}"
        assert stream.environ["QUERY_STRING"] == REDACTED
    else:
        assert stream.environ["RAW_URI"] == "/events?token=secret"
    assert (page.environ["RAW_URI"], page.environ["QUERY_STRING"]) == ("/page?x=1", "x=1")


def test_find_hubs_sees_through_the_wrapper() -> None:
    hub, other = Hub(), Hub()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return []

    app.sse_kit_hubs = [hub]  # type: ignore[attr-defined]
    wrapped = detaching(app)
    assert wrapped.sse_kit_app is app  # type: ignore[attr-defined]
    assert find_hubs(wrapped) == [hub]
    flask_app = Flask(__name__)
    flask_app.register_blueprint(create_blueprint(other), url_prefix="/e")
    assert find_hubs(detaching(flask_app)) == [other]


# -- the whole hand-over, as the gthread worker runs a request ---------------------------------


def _serve_one_like_gthread(listener: socket.socket, app: WSGIApp,
                            done: list[dict[str, Any]]) -> None:
    """Accept one connection and handle one request the way
    ``gunicorn.workers.gthread.ThreadWorker.handle_request`` does."""
    sock, addr = listener.accept()
    cfg = Config()
    req = next(RequestParser(cfg, sock, addr))
    resp, environ = wsgi.create(req, sock, addr, listener.getsockname(), cfg)
    environ["wsgi.multithread"] = True
    respiter = app(environ, resp.start_response)
    try:
        for item in respiter:
            resp.write(item)
        resp.close()
    finally:
        if hasattr(respiter, "close"):
            respiter.close()
    if resp.should_close():
        sock.setblocking(True)  # TConn.close(graceful=True)
        util.close_graceful(sock)
    done.append(environ)


def test_a_stream_detaches_under_gunicorns_request_handling() -> None:
    hub = Hub(keepalive_interval=3600, shutdown_retry=99).start()
    try:

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            return serve_sse(hub, environ, "user:1")(environ, start_response)

        done: list[dict[str, Any]] = []
        with socket.create_server(("127.0.0.1", 0)) as listener:
            server = threading.Thread(target=_serve_one_like_gthread,
                                      args=(listener, detaching(app), done), daemon=True)
            server.start()
            host, port = listener.getsockname()
            with RawStream(host, port, "/events?token=secret") as raw:
                server.join(10)  # the request ended: its thread is free, the stream goes on
                assert not server.is_alive() and done
                assert raw.status == 200 and raw.headers["transfer-encoding"] == "chunked"
                assert done[0]["RAW_URI"] == f"/events?{REDACTED}"
                assert hub.stats()["detached"] == 1 and hub.get_client_count() == 1
                raw.read_until(b"event: connected")
                hub.broadcast_to_pattern("user:*", "hello")
                raw.read_until(b"data: hello")
                hub.stop()
                raw.read_to_end()
        assert raw.complete  # the last-chunk came, written by sse_kit
        assert raw.chunks[-1] == encode_retry(99)
        assert [e.data for e in decode(raw.body) if e.event == "message"] == ["hello"]
        assert raw.wire.count(LAST_CHUNK) == 1 and raw.wire.endswith(LAST_CHUNK)
    finally:
        hub.stop()
