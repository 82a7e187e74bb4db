"""sse_kit._h2guard: HTTP/2 floods close their connection with GOAWAY
ENHANCE_YOUR_CALM, counted and told once; a browser-like client is never cut.

Each flood is sent by the ``h2`` package's client state machine (raw frames
where h2 would refuse to build them) over a real socket pair to a real
:class:`~sse_kit._h2.H2Session` on a real thread pool (tests.test_h2's harness).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import h2.connection
import h2.errors
import h2.settings
import hpack
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from sse_kit._h2 import RequestHead, StreamTable
from sse_kit._h2guard import CONTROL_LIMIT, QUEUE_FACTOR, RESET_LIMIT
from tests.test_h2 import Peer, answer, session_pair

ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
HEADERS = [(":method", "GET"), (":path", "/x"), (":scheme", "http"), (":authority", "test")]


POOL = 4  # the session's pool threads


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(POOL) as executor:
        yield executor


# Each sends one flood over a client connection (its h2 state machine, its socket).
Flood = Callable[[h2.connection.H2Connection, socket.socket], None]


def ping_flood(conn: h2.connection.H2Connection, sock: socket.socket) -> None:
    for k in range(CONTROL_LIMIT + 1):
        conn.ping(k.to_bytes(8, "big"))
    sock.sendall(conn.data_to_send())


def settings_flood(conn: h2.connection.H2Connection, sock: socket.socket) -> None:
    for _ in range(CONTROL_LIMIT + 1):
        conn.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0})
    sock.sendall(conn.data_to_send())


def empty_data_flood(conn: h2.connection.H2Connection, sock: socket.socket) -> None:
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), *HEADERS[1:]])
    for _ in range(CONTROL_LIMIT + 1):
        conn.send_data(sid, b"")
    sock.sendall(conn.data_to_send())


def rapid_reset(conn: h2.connection.H2Connection, sock: socket.socket) -> None:
    for _ in range(RESET_LIMIT + 1):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, HEADERS, end_stream=True)
        conn.reset_stream(sid)
    sock.sendall(conn.data_to_send())


def continuation_flood(conn: h2.connection.H2Connection, sock: socket.socket) -> None:
    # h2 builds no such header block: the frames are made by hand.
    sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    block = hpack.Encoder().encode(HEADERS)
    frames = [HeadersFrame(sid, data=block[:1])]  # no END_HEADERS: CONTINUATION follows
    frames += [ContinuationFrame(sid, data=block[1:2]) for _ in range(65)]
    sock.sendall(b"".join(f.serialize() for f in frames))


FLOODS: dict[str, Flood] = {
    "PING flood": ping_flood,
    "SETTINGS flood": settings_flood,
    "empty DATA flood": empty_data_flood,
    "rapid reset": rapid_reset,
    "CONTINUATION flood": continuation_flood,
}


def assert_calmed(peer: Peer, closed: threading.Event, floods: list[int]) -> None:
    """The peer got GOAWAY ENHANCE_YOUR_CALM, then the connection closed, counted once."""
    peer.pump(lambda: peer.closed)
    assert peer.goaway is not None and peer.goaway.error_code == ENHANCE_YOUR_CALM
    assert closed.wait(10)
    assert floods == [1]


@pytest.mark.parametrize("kind", list(FLOODS))
def test_a_flood_gets_goaway_enhance_your_calm_and_a_sibling_connection_keeps_working(
    pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    floods: list[int] = []
    _, peer, closed = session_pair(pool, answer(b"ok"), floods=floods)
    other, ordinary, other_closed = session_pair(pool, answer(b"ok"))
    try:
        with caplog.at_level(logging.WARNING, logger="sse_kit._h2"):
            FLOODS[kind](peer.conn, peer.sock)
            assert_calmed(peer, closed, floods)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"ENHANCE_YOUR_CALM): {kind}" in warnings[0], warnings
        sid = ordinary.get("/after")
        ordinary.pump(lambda: sid in ordinary.ended)
        assert ordinary.body[sid] == b"ok"
    finally:
        other.drain()
        assert other_closed.wait(10)
        peer.sock.close()
        ordinary.sock.close()


def test_requests_left_waiting_for_the_pool_by_resets_are_a_flood(
    pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    # Four requests hold the pool's four threads; then every request the peer
    # opens and resets stays queued: its stream slot is free again at once,
    # the pool's work is not.
    release = threading.Event()
    holding = threading.Semaphore(0)

    def held(table: StreamTable, head: RequestHead) -> None:
        holding.release()
        release.wait(30)
        answer(b"late")(table, head)

    floods: list[int] = []
    _, peer, closed = session_pair(pool, held, floods=floods)
    limit = QUEUE_FACTOR * 100  # h2's MAX_CONCURRENT_STREAMS: 100
    try:
        with caplog.at_level(logging.WARNING, logger="sse_kit._h2"):
            for _ in range(POOL):
                peer.get("/hold")
            for _ in range(POOL):
                assert holding.acquire(timeout=10)
            for _ in range(limit - POOL):  # opened and reset, one after another
                sid = peer.conn.get_next_available_stream_id()
                peer.conn.send_headers(sid, HEADERS, end_stream=True)
                peer.conn.reset_stream(sid)
            peer.sock.sendall(peer.conn.data_to_send())
            assert limit - POOL <= RESET_LIMIT  # so that it is the queue that overflows
            peer.get("/one-more")
            assert_calmed(peer, closed, floods)
        assert "request flood" in caplog.text
    finally:
        release.set()
        peer.sock.close()


def test_a_browser_that_cancels_some_of_its_streams_is_not_cut(
    pool: ThreadPoolExecutor
) -> None:
    floods: list[int] = []
    session, peer, closed = session_pair(pool, answer(b"ok"), floods=floods)
    try:
        for _ in range(3):  # three page loads: ten requests each, four cancelled
            sids = [peer.get(f"/asset/{k}") for k in range(10)]
            for sid in sids[:4]:
                peer.conn.reset_stream(sid)
            peer.conn.ping(b"12345678")
            peer.sock.sendall(peer.conn.data_to_send())
            peer.pump(lambda: all(s in peer.ended for s in sids[4:]))  # noqa: B023
            assert all(peer.body[s] == b"ok" for s in sids[4:])
        assert peer.goaway is None and not peer.closed and floods == []
    finally:
        session.drain()
        assert closed.wait(10)
        peer.sock.close()
