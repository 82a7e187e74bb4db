"""sse_kit._h2: one HTTP/2 connection's streams served at once, over a real
socket pair, with the ``h2`` package's client state machine as the peer.

The session's pool is a real thread pool; its requests are answered by a small
serve function writing through the session, as gunicorn's HTTP2Response does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from sse_kit import Client, Hub
from sse_kit._client import DEFERRED, DROPPED, ENDED, EXPIRED, WRITTEN
from sse_kit._connection import Expiry
from sse_kit._h2 import H2Session, RequestHead, StreamTable
from sse_kit._h2serve import layout_problem
from sse_kit._h2stream import H2Handover
from tests._live import wait_for
from tests.test_outlet import allocated_in, fill_until


class Peer:
    """The client end: an h2 client state machine over one end of a socket pair."""

    def __init__(self, sock: socket.socket, window: int = 65535) -> None:
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.body: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.reset: set[int] = set()
        self.stalled: set[int] = set()  # streams whose data is credited to the connection only
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False

    def get(self, path: str) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", "test")], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.body[sid] = b""
        return sid

    def pump(self, until: Callable[[], object], timeout: float = 10.0) -> None:
        def step() -> object:
            if until():
                return True
            self.sock.settimeout(0.05)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            if not data:
                self.closed = True
                return True
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.body[event.stream_id] += event.data
                    if event.stream_id in self.stalled:
                        self.conn.increment_flow_control_window(event.flow_controlled_length)
                    else:
                        self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                            event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended.add(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    self.reset.add(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = event
            with contextlib.suppress(OSError):  # the server may have closed already
                self.sock.sendall(self.conn.data_to_send())
            return until()

        wait_for(step, timeout, interval=0, message=lambda: "the peer; bytes per stream: "
                 f"{ {sid: len(b) for sid, b in self.body.items()} }, ended {self.ended}")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def session_pair(pool: ThreadPoolExecutor, serve: Callable[[StreamTable, RequestHead], None],
                 window: int = 65535, floods: list[int] | None = None
                 ) -> tuple[H2Session, Peer, threading.Event]:
    server_sock, client_sock = socket.socketpair()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    server_sock.sendall(conn.data_to_send())
    closed = threading.Event()

    def submit(job: Callable[[], None]) -> bool:
        pool.submit(job)
        return True

    session = H2Session(server_sock, conn, serve=serve, submit=submit,
                        on_close=lambda s: closed.set(),
                        on_flood=lambda: (floods if floods is not None else []).append(1),
                        idle_timeout=None, stall_timeout=10.0, drain_timeout=5.0)
    session.start()
    return session, Peer(client_sock, window), closed


def answer(body: bytes) -> Callable[[StreamTable, RequestHead], None]:
    def serve(table: StreamTable, head: RequestHead) -> None:
        table.send_response_headers(head.stream_id, 200, [("content-length", str(len(body)))])
        table.send_data(head.stream_id, body)
        table.end_stream(head.stream_id)
        table.finished(head.stream_id)

    return serve


def event_serve(handovers: dict[int, H2Handover], ready: threading.Event
                ) -> Callable[[StreamTable, RequestHead], None]:
    """Answers each request as an event stream's first chunk, then detaches it."""

    def serve(table: StreamTable, head: RequestHead) -> None:
        table.send_response_headers(head.stream_id, 200, [("content-type",
                                                           "text/event-stream")])
        table.send_data(head.stream_id, b": first chunk\n\n")

        class Sent:
            stream_id = head.stream_id
            headers_sent = True

        handover = table.handover(Sent())
        assert handover is not None
        handovers[head.stream_id] = handover
        ready.set()

    return serve


def open_stream(pool: ThreadPoolExecutor, hub: Hub, *, window: int = 65535,
                expires: Expiry | None = None) -> tuple[H2Session, Peer, threading.Event,
                                                       Client, int]:
    """A session with one detached event stream of a client registered with *hub*."""
    handovers: dict[int, H2Handover] = {}
    ready = threading.Event()
    session, peer, closed = session_pair(pool, event_serve(handovers, ready), window=window)
    sid = peer.get("/events")
    assert ready.wait(10)
    client = Client(f"c{sid}", buffer=2)
    hub.register(client)
    handovers[sid].adopt(hub, client, expires=expires, events=0, body_bytes=0,
                         opened=time.monotonic())
    peer.pump(lambda: b"first chunk" in peer.body[sid])
    return session, peer, closed, client, sid


def test_this_gunicorns_http2_layout_is_the_one_sse_kit_takes_over() -> None:
    assert layout_problem() is None


def test_a_large_response_waits_for_window_while_a_sibling_is_answered(
    pool: ThreadPoolExecutor
) -> None:
    big = b"x" * 200_000
    session, peer, closed = session_pair(
        pool, lambda table, head: answer(big if head.get_pseudo_headers()[":path"] == "/big"
                                         else b"small")(table, head))
    large = peer.get("/big")
    peer.stalled.add(large)  # its reader stops: the big response stalls at its window
    peer.pump(lambda: len(peer.body[large]) == 65535)
    small = peer.get("/small")  # its own window: answered at once
    peer.pump(lambda: small in peer.ended)
    assert peer.body[small] == b"small" and large not in peer.ended
    peer.stalled.clear()
    peer.conn.increment_flow_control_window(1 << 20, stream_id=large)
    peer.sock.sendall(peer.conn.data_to_send())
    peer.pump(lambda: large in peer.ended)
    assert peer.body[large] == big
    session.drain()
    assert closed.wait(10)
    peer.sock.close()


def test_an_event_stream_queues_within_its_limits_and_ends_cleanly(
    pool: ThreadPoolExecutor
) -> None:
    hub = Hub(keepalive_interval=60)
    hub.start()
    session, peer, closed, client, sid = open_stream(pool, hub, window=100)
    try:
        peer.stalled.add(sid)
        queue = session.table.queue_event
        # 100 bytes of window: the first event fills it, the rest wait within 2 events.
        assert queue(sid, b"data: " + b"a" * 200 + b"\n\n", 1, 10_000, 2) == WRITTEN
        assert queue(sid, b"data: b\n\n", 1, 10_000, 2) == DEFERRED
        assert queue(sid, b"data: c\n\n", 1, 10_000, 2) == DROPPED
        client.close()  # its end goes after what waits
        peer.stalled.clear()
        peer.conn.increment_flow_control_window(1 << 16, stream_id=sid)
        peer.sock.sendall(peer.conn.data_to_send())
        peer.pump(lambda: sid in peer.ended)
        assert peer.body[sid].endswith(b"data: b\n\n") and sid not in peer.reset
        wait_for(lambda: hub.get_client_count() == 0, message="the client unregistered")
        assert queue(sid, b"data: d\n\n", 1, 10_000, 2) == ENDED
    finally:
        session.drain()
        hub.stop()
    assert closed.wait(10)
    peer.sock.close()


def test_disconnect_ends_the_stream_cleanly_without_a_retry_hint(
    pool: ThreadPoolExecutor
) -> None:
    hub = Hub(keepalive_interval=60)
    hub.start()
    session, peer, closed, client, sid = open_stream(pool, hub)
    try:
        hub.broadcast_to_pattern(client.id, "hello")
        peer.pump(lambda: b"data: hello" in peer.body[sid])
        hub.disconnect(client.id)
        peer.pump(lambda: sid in peer.ended)
        assert sid not in peer.reset and b"retry:" not in peer.body[sid]
        wait_for(lambda: hub.get_client_count() == 0, message="the client unregistered")
        assert hub.stats()["kicked"] == 1
    finally:
        session.drain()
        hub.stop()
    assert closed.wait(10)
    peer.sock.close()


def test_an_idle_stream_gets_keepalives(pool: ThreadPoolExecutor) -> None:
    hub = Hub(keepalive_interval=0.2)
    hub.start()
    session, peer, closed, _, sid = open_stream(pool, hub)
    try:
        peer.pump(lambda: peer.body[sid].count(b": keepalive ") >= 2)
        assert hub.stats()["keepalives"] >= 2
    finally:
        session.drain()
        hub.stop()
    assert closed.wait(10)
    peer.sock.close()


def test_max_age_ends_the_stream_with_a_retry_hint(pool: ThreadPoolExecutor) -> None:
    hub = Hub(keepalive_interval=60, shutdown_retry=250)
    hub.start()
    session, peer, closed, _, sid = open_stream(pool, hub,
                                                expires=Expiry(time.monotonic() + 0.5, EXPIRED))
    try:
        peer.pump(lambda: sid in peer.ended)
        assert peer.body[sid].endswith(b"retry: 250\n\n") and sid not in peer.reset
        wait_for(lambda: hub.get_client_count() == 0, message="the client unregistered")
        assert hub.stats()["expired"] == 1
    finally:
        session.drain()
        hub.stop()
    assert closed.wait(10)
    peer.sock.close()


def test_a_stream_the_peer_resets_unregisters_its_client(pool: ThreadPoolExecutor) -> None:
    hub = Hub(keepalive_interval=60)
    hub.start()
    session, peer, closed, client, sid = open_stream(pool, hub)
    try:
        peer.conn.reset_stream(sid)
        peer.sock.sendall(peer.conn.data_to_send())
        wait_for(lambda: hub.get_client_count() == 0, message="the client unregistered")
        assert client.end_reason == "gone"
    finally:
        session.drain()
        hub.stop()
    assert closed.wait(10)
    peer.sock.close()


def test_stalled_http2_streams_share_the_fan_outs_chunks_instead_of_copying_them(
    pool: ThreadPoolExecutor
) -> None:
    # Ten event streams on one connection whose reader stopped (100 bytes of
    # window each), each holding its 64 KiB of events: what the connection's
    # table allocated for them is a reference per event (and the first DATA
    # frame's bytes), far under one stream's bytes, because every stream holds
    # the hub's chunk of each broadcast (as the HTTP/1.1 outlet's tails do).
    limit = 65536
    hub = Hub(keepalive_interval=60, slow_client="drop", client_buffer=10_000,
              client_buffer_bytes=limit, write_timeout=None)
    hub.start()
    handovers: dict[int, H2Handover] = {}
    ready = threading.Event()
    session, peer, closed = session_pair(pool, event_serve(handovers, ready), window=100)
    try:
        sids = [peer.get("/events") for _ in range(10)]
        wait_for(lambda: len(handovers) == 10, message="ten streams to detach")
        for sid in sids:
            client = Client(f"s:{sid}", buffer=10_000)
            hub.register(client)
            handovers[sid].adopt(hub, client, expires=None, events=0, body_bytes=0,
                                 opened=time.monotonic())
            peer.stalled.add(sid)
        peer.pump(lambda: all(b"first chunk" in peer.body[s] for s in sids))
        grown = allocated_in("*/sse_kit/_h2*.py", lambda: fill_until(
            hub, "s:*", lambda: hub.stats()["dropped"] >= 10 * 20))
        held = sum(waiting[0] for sid in sids
                   if (waiting := session.table.waiting(sid)) is not None)
        assert held > 5 * limit  # the streams' queues are (nearly) full ...
        assert grown < limit // 4  # ... and the connection copied none of their bytes
    finally:
        session.drain()
        hub.stop()
    assert closed.wait(10)
    peer.sock.close()
