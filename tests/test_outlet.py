"""Detached streams (sse_kit._outlet) over real loopback TCP, without gunicorn.

Each test plays the server's part by hand: serve_sse() is given an environ that
offers a Detach (returning a dup of the server side of a real connected socket
pair), the first chunk is written framed as gunicorn frames it, and the next
next() must detach (StopIteration). The browser's end reads the raw bytes and
decodes the HTTP/1.1 chunked framing and the event stream.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sse_kit import Hub, serve_sse
from sse_kit._connection import DETACH_KEY, Stream
from sse_kit._wire import LAST_CHUNK, encode_retry, frame_chunk
from tests._decoder import DecodedEvent, decode
from tests._live import ChunkedDecoder, wait_for
from tests._streams import TestLog, entry, environ

OUTLET_THREAD = "sse_kit-outlet"
# A payload a little under 1 KiB: a few fill a small socket buffer and tail.
FILLER = "x" * 1000


def tcp_pair(rcvbuf: int | None = None, sndbuf: int | None = None) -> tuple[socket.socket,
                                                                           socket.socket]:
    """A connected loopback pair: (the browser's end, the server's end).

    *rcvbuf* is set on the browser's end before it connects (so its window is
    small from the start), *sndbuf* on the listener (the server's end inherits it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        if sndbuf is not None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        peer.connect(listener.getsockname())
        server, _ = listener.accept()
    return peer, server


class Peer:
    """The browser's end of one connection: reads and decodes the chunked body."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.wire = bytearray()  # every byte received, framing included
        self.chunks: list[bytes] = []  # each chunk's data, in order
        self.decoder = ChunkedDecoder()
        self.eof = False

    @property
    def ended(self) -> bool:
        """The last-chunk has arrived."""
        return self.decoder.done

    def events(self, event: str | None = "message") -> list[DecodedEvent]:
        """The events of the complete chunks so far (of type *event*; None: all)."""
        return [e for e in decode(b"".join(self.chunks)) if event is None or e.event == event]

    def data(self) -> list[str]:
        return [e.data for e in self.events()]

    def read_until(self, condition: Callable[[], object], timeout: float = 10.0,
                   what: str = "the condition") -> None:
        """Receive until *condition()* holds; fails on EOF or after *timeout* seconds."""

        def holds() -> bool:
            if condition():
                return True
            if self.eof:
                raise EOFError(f"the connection closed before {what}; chunks: {self.chunks!r}")
            self._receive(0.2)
            return bool(condition())

        wait_for(holds, timeout, interval=0, message=lambda: f"{what}; chunks: {self.chunks!r}")

    def read_to_end(self, timeout: float = 10.0) -> None:
        """Receive until the server closes the connection."""
        self.read_until(lambda: self.eof, timeout, "the end of the connection")

    def _receive(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.wire += data
        self.chunks += self.decoder.feed(data)


class _HookedSocket(socket.socket):
    """A socket that runs a hook the first time it is made non-blocking: the
    first thing the outlet does with a socket it adopts (to pin a race down)."""

    hook: Callable[[], None] | None = None

    def setblocking(self, flag: bool) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        super().setblocking(flag)


class Conn:
    """One stream, served by hand as a server that can hand its connection over.

    On construction the stream is registered and its first chunk written; call
    :meth:`detach` to ask for the second chunk (the stream detaches).
    """

    def __init__(self, hub: Hub, client_id: str, *, rcvbuf: int | None = None,
                 sndbuf: int | None = None,
                 on_detach: Callable[[], None] | None = None,
                 on_adopt: Callable[[], None] | None = None) -> None:
        peer, self.server = tcp_pair(rcvbuf, sndbuf)
        self.peer = Peer(peer)
        self.offered = 0  # times the stream called the Detach
        self._on_detach = on_detach
        self._on_adopt = on_adopt
        env = environ()
        assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
        env[DETACH_KEY] = self._detach
        response = serve_sse(hub, env, client_id)
        assert response.status_code == 200, response.get_data()
        self.stream: Stream = response.response  # type: ignore[assignment]
        self.client = self.stream.client
        self.body = iter(self.stream)
        self.first = next(self.body)
        self.server.sendall(frame_chunk(self.first))  # as gunicorn writes a yielded chunk

    def _detach(self) -> socket.socket:
        self.offered += 1
        if self._on_detach is not None:
            self._on_detach()
        if self._on_adopt is None:
            return self.server.dup()
        mine = _HookedSocket(fileno=self.server.dup().detach())
        mine.hook = self._on_adopt
        return mine

    def detach(self) -> None:
        """The server asks for the next chunk: the stream detaches instead."""
        with pytest.raises(StopIteration):
            next(self.body)
        self.stream.close()  # what a server does once the body has ended
        self.server.close()  # the server's own descriptor; sse_kit holds the dup
        assert self.offered == 1 and self.client.detached

    def serve_rest(self) -> None:
        """Go on as the server would, whatever the stream does: write each further
        chunk; end the body unless the stream detached."""
        for chunk in self.body:
            self.server.sendall(frame_chunk(chunk))
        self.stream.close()
        if not self.client.detached:
            self.server.sendall(LAST_CHUNK)
        self.server.close()

    def close(self) -> None:
        self.peer.sock.close()
        self.server.close()


@pytest.fixture
def conns() -> Iterator[Callable[..., Conn]]:
    """Factory: ``conns(hub, client_id, **options)`` -> a :class:`Conn`, closed after the test."""
    made: list[Conn] = []

    def make(hub: Hub, client_id: str, **options: Any) -> Conn:
        conn = Conn(hub, client_id, **options)
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close()


@pytest.fixture
def hubs() -> Iterator[Callable[..., Hub]]:
    """Factory: ``hubs(**options)`` -> a started hub, stopped after the test."""
    made: list[Hub] = []

    def make(**options: Any) -> Hub:
        options.setdefault("keepalive_interval", 3600)
        hub = Hub(**options).start()
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.stop()


def outlet_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == OUTLET_THREAD}


@contextlib.contextmanager
def hub_held(hub: Hub) -> Iterator[None]:
    """Keep the hub thread busy, so that broadcasts made meanwhile wait in its
    inbox together (and are routed as one batch once it is released)."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(30)

    holder = threading.Thread(target=hub._call, args=(hold, None), daemon=True)
    holder.start()
    assert entered.wait(10), "the hub thread did not run the call"
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def close_lines(caplog: pytest.LogCaptureFixture, client_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"sse_kit: client {client_id!r} disconnected (")]


def allocated_in(filename: str, action: Callable[[], object]) -> int:
    """Bytes that code in files matching *filename* allocated, and kept, during *action()*."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        action()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    where = [tracemalloc.Filter(True, filename)]
    return sum(stat.size_diff for stat in after.filter_traces(where).compare_to(
        before.filter_traces(where), "filename"))


def fill_until(hub: Hub, pattern: str, done: Callable[[], object],
               timeout: float = 30.0) -> list[str]:
    """Broadcast ~1 KiB events to *pattern*, one at a time, until *done()*; return them."""
    sent: list[str] = []

    def one_more() -> bool:
        if done():
            return True
        sent.append(f"{len(sent):05d} {FILLER}")
        hub.broadcast_to_pattern(pattern, sent[-1])
        hub.flush()
        return False

    wait_for(one_more, timeout, interval=0, message=lambda: f"the fill to end ({len(sent)} sent)")
    return sent


# -- delivery ------------------------------------------------------------------------------


def test_events_after_detach_arrive_in_order_one_chunk_per_batch(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs()
    conn = conns(hub, "a")
    conn.detach()
    assert hub.stats()["detached"] == 1
    for i in range(10):
        hub.broadcast_to_pattern("a", f"one {i}")
        hub.flush()  # routed alone: one chunk
    with hub_held(hub):
        for i in range(3):
            hub.broadcast_to_pattern("a", f"batch {i}")
    hub.flush()
    peer = conn.peer
    peer.read_until(lambda: len(peer.chunks) == 1 + 10 + 1, what="12 chunks")
    assert peer.chunks[0] == conn.first
    assert [decode(c)[0].data for c in peer.chunks[1:11]] == [f"one {i}" for i in range(10)]
    assert [e.data for e in decode(peer.chunks[11])] == [f"batch {i}" for i in range(3)]
    ids = [int(e.id.rsplit("-", 1)[1]) for e in peer.events()]  # "<epoch>-<seq>"
    assert ids == sorted(ids) and len(set(ids)) == 13
    assert not peer.ended and conn.client.end_reason is None
    stats = hub.stats()
    assert stats["fast_writes"] == stats["delivered"] == 13
    assert stats["queued_writes"] == stats["fast_would_block"] == 0


def test_a_backplane_batch_reaches_a_detached_stream_in_one_chunk_per_pattern_run(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    log = TestLog()
    hub = hubs(backplane=log)
    conn = conns(hub, "a")
    conn.detach()
    assert log.feed is not None
    log.feed.deliver([entry(2, "a"), entry(3, "a"), entry(4, "b"), entry(5, "a"), entry(6, "a")])
    hub.flush()
    peer = conn.peer
    peer.read_until(lambda: len(peer.chunks) == 3, what="3 chunks")
    assert [[e.id for e in decode(c)] for c in peer.chunks[1:]] == [["2-0", "3-0"], ["5-0", "6-0"]]
    stats = hub.stats()
    assert (stats["published"], stats["fast_writes"], stats["delivered"]) == (5, 4, 4)


def test_events_queued_before_the_detach_are_written_first(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs()
    conn = conns(hub, "a")
    for i in range(3):  # after the first chunk, before the server asks for the next
        hub.broadcast_to_pattern("a", f"early {i}")
    hub.flush()
    conn.detach()
    hub.broadcast_to_pattern("a", "late")
    hub.flush()
    peer = conn.peer
    peer.read_until(lambda: "late" in peer.data(), what="the late event")
    assert peer.data() == ["early 0", "early 1", "early 2", "late"]
    assert len(peer.chunks) == 3  # the first chunk, the outbox as one chunk, the late event
    stats = hub.stats()
    # The late event is written at once, or after the outbox if that still waits.
    assert (stats["delivered"], stats["detached"]) == (4, 1)
    assert stats["queued_writes"] - stats["fast_would_block"] == 3  # the outbox's three


def test_client_send_writes_to_a_detached_stream(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs()
    conn = conns(hub, "a")
    conn.detach()
    assert conn.client.send({"n": 1}, event="note")
    peer = conn.peer
    peer.read_until(lambda: len(peer.chunks) == 2, what="the sent event")
    assert peer.chunks[1] == b'event: note\ndata: {"n":1}\n\n'  # no id: not in the history
    assert hub.disconnect("a") == 1
    assert not conn.client.send("too late")


def test_a_stream_that_ended_before_the_second_chunk_does_not_detach(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs()
    conn = conns(hub, "a")
    assert hub.disconnect("a") == 1
    with pytest.raises(StopIteration):  # ended on the server's thread, as usual
        next(conn.body)
    conn.stream.close()
    assert conn.offered == 0 and not conn.client.detached
    assert hub.stats()["detached"] == 0


def test_fast_path_off_never_detaches(hubs: Callable[..., Hub], conns: Callable[..., Conn]) -> None:
    hub = hubs(fast_path=False)
    conn = conns(hub, "a")
    hub.broadcast_to_pattern("a", "parked")
    assert decode(next(conn.body))[0].data == "parked"  # the server's thread writes it
    conn.stream.close()
    assert conn.offered == 0 and hub.stats()["detached"] == 0


# -- how a detached stream ends ------------------------------------------------------------


def test_disconnect_ends_with_the_last_chunk_and_no_retry_hint(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    hub = hubs()
    conn, other = conns(hub, "user:1"), conns(hub, "user:2")
    conn.detach()
    other.detach()
    hub.broadcast_to_pattern("user:*", "before")
    assert hub.disconnect("user:1") == 1
    peer = conn.peer
    peer.read_to_end()
    assert peer.ended and peer.wire.endswith(LAST_CHUNK)
    assert peer.data() == ["before"]
    assert not any(b"retry:" in chunk for chunk in peer.chunks[1:])
    wait_for(lambda: hub.get_client_count() == 1, message="user:1 unregistered")
    assert conn.client.end_reason == "disconnected"
    wait_for(lambda: close_lines(caplog, "user:1"), message="the close line")
    [line] = close_lines(caplog, "user:1")
    assert " disconnected (disconnected) after " in line
    # The other stream is untouched.
    hub.broadcast_to_pattern("user:*", "after")
    other.peer.read_until(lambda: other.peer.data() == ["before", "after"], what="both events")
    assert hub.stats()["kicked"] == 1


def test_stop_ends_every_stream_with_the_retry_hint_and_the_outlet_thread(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    before = outlet_threads()
    hub = hubs(shutdown_retry=123)
    streams = [conns(hub, f"c{i}") for i in range(3)]
    for conn in streams:
        conn.detach()
    outlets = outlet_threads() - before
    assert len(outlets) == 1  # one per hub, however many streams
    hub.stop()
    assert not any(t.is_alive() for t in outlets)
    for conn in streams:
        conn.peer.read_to_end()
        assert conn.peer.ended
        assert conn.peer.chunks[-1] == encode_retry(123)
        assert conn.peer.wire.endswith(frame_chunk(encode_retry(123)) + LAST_CHUNK)
        assert conn.client.end_reason == "shutdown"
        assert len(close_lines(caplog, conn.client.id)) == 1
        assert "(shutdown)" in close_lines(caplog, conn.client.id)[0]


def test_max_age_ends_a_detached_stream_with_the_retry_hint(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs(max_age=1.0, shutdown_retry=77)
    conn = conns(hub, "a")
    conn.detach()
    conn.peer.read_to_end(timeout=20)
    assert conn.peer.ended and conn.peer.chunks[-1] == encode_retry(77)
    assert conn.client.end_reason == "max_age"
    wait_for(lambda: hub.get_client_count() == 0, message="the expired stream unregistered")
    assert hub.stats()["expired"] == 1


def test_keepalive_comments_arrive_while_idle(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs(keepalive_interval=0.2)
    conn = conns(hub, "a")
    conn.detach()
    peer = conn.peer

    def keepalives() -> list[bytes]:
        return [c for c in peer.chunks[1:] if c.startswith(b": keepalive ")]

    peer.read_until(lambda: len(keepalives()) >= 2, timeout=20, what="two keep-alives")
    assert all(c.endswith(b"\n\n") and c.count(b"\n") == 2 for c in keepalives())
    assert peer.events(None)[1:] == []  # comments dispatch nothing
    wait_for(lambda: hub.stats()["keepalives"] >= 2, message="keep-alives counted")
    assert hub.stats()["fast_writes"] == 0  # a keep-alive is not a delivery


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_a_peer_that_closes_is_unregistered_without_a_keepalive(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    hub = hubs(keepalive_interval=3600)
    conn = conns(hub, "a")
    conn.detach()
    assert hub.get_client_count() == 1
    if how == "fin":
        conn.peer.read_until(lambda: conn.peer.chunks, what="the first chunk")
    else:  # an abortive close: RST
        conn.peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.peer.sock.close()
    wait_for(lambda: hub.get_client_count() == 0, message="the closed stream unregistered")
    assert conn.client.end_reason == "gone"
    stats = hub.stats()
    assert (stats["keepalives"], stats["disconnected"]) == (0, 1)
    wait_for(lambda: close_lines(caplog, "a"), message="the close line")
    assert [r.getMessage() for r in caplog.records].count("sse_kit: client 'a' went away") == 1
    [line] = close_lines(caplog, "a")
    assert " disconnected (client gone) after " in line


# -- slow clients ---------------------------------------------------------------------------

# A browser's end that never reads, and a server end that holds little: a few
# KiB fill both, and the rest waits in the stream's tail.
SLOW = {"rcvbuf": 4096, "sndbuf": 4096}


def test_a_client_that_never_reads_is_cut_under_disconnect(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    hub = hubs(slow_client="disconnect", client_buffer_bytes=8192, write_timeout=None)
    conn = conns(hub, "slow", **SLOW)
    conn.detach()
    sent = fill_until(hub, "slow", lambda: hub.stats()["slow_disconnects"])
    stats = hub.stats()
    assert stats["slow_disconnects"] == 1 and stats["fast_would_block"] > 0
    assert stats["dropped"] == 0
    assert conn.client.end_reason == "slow"
    wait_for(lambda: close_lines(caplog, "slow"), message="the slow stream closed")
    conn.peer.read_to_end(timeout=20)  # what the kernel took, then the close
    received = conn.peer.data()
    assert 0 < len(received) < len(sent)
    assert received == sent[: len(received)]  # nothing lost in between: a cut, not drops
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "sse_kit: cut slow client 'slow'; it resumes from history"]
    assert len(close_lines(caplog, "slow")) == 1 and "(slow)" in close_lines(caplog, "slow")[0]


@pytest.mark.parametrize(
    ("limits", "bound"),
    [
        pytest.param({"client_buffer_bytes": 8192}, "bytes", id="bytes"),
        pytest.param({"client_buffer": 4}, "events", id="events"),
    ],
)
def test_under_drop_the_tail_stays_bounded_and_the_stream_recovers(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], limits: dict[str, int], bound: str
) -> None:
    hub = hubs(slow_client="drop", write_timeout=None, **limits)
    conn = conns(hub, "slow", **SLOW)
    conn.detach()
    sink = conn.client._sink
    assert sink is not None
    # One event's chunk is under 1100 bytes; four of them may wait under client_buffer=4.
    limit = 8192 if bound == "bytes" else 4 * 1100
    largest = 0

    def dropped_enough() -> bool:
        nonlocal largest
        largest = max(largest, sink.tail_size)
        return hub.stats()["dropped"] >= 20

    sent = fill_until(hub, "slow", dropped_enough)
    assert 0 < largest <= limit  # what waits for the socket is bounded
    assert conn.client.end_reason is None and conn.client.detached
    stats = hub.stats()
    assert stats["fast_would_block"] > 0 and stats["slow_disconnects"] == 0
    # The browser catches up: the tail drains, and the stream goes on.
    conn.peer.read_until(lambda: sink.tail_size == 0, timeout=20, what="the tail drained")
    hub.broadcast_to_pattern("slow", "after")
    conn.peer.read_until(lambda: "after" in conn.peer.data(), what="the event after the drops")
    received = conn.peer.data()[:-1]
    assert len(received) == len(sent) - hub.stats()["dropped"]
    assert received == [s for s in sent if s in set(received)]  # in order, with gaps


def test_stalled_streams_share_the_fan_outs_chunks_instead_of_copying_them(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    # Ten streams that stopped reading, each tail full (64 KiB): what the
    # outlet itself allocated for them is a reference and a view per chunk,
    # far under one tail's bytes, because every tail holds the hub's chunks.
    limit = 65536
    hub = hubs(slow_client="drop", client_buffer_bytes=limit, write_timeout=None)
    stalled = [conns(hub, f"s:{i}", **SLOW) for i in range(10)]
    for conn in stalled:
        conn.detach()
    sinks = [conn.client._sink for conn in stalled]
    grown = allocated_in("*/sse_kit/_outlet.py", lambda: fill_until(
        hub, "s:*", lambda: hub.stats()["dropped"] >= 10 * 20))
    held = sum(sink.tail_size for sink in sinks if sink is not None)
    assert held > 5 * limit  # the tails are (nearly) full ...
    assert grown < limit // 4  # ... and the outlet copied none of their bytes


def test_client_send_to_a_full_tail_refuses_without_cutting(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs(slow_client="disconnect", client_buffer_bytes=8192, write_timeout=None)
    conn = conns(hub, "slow", **SLOW)
    conn.detach()
    client = conn.client
    wait_for(lambda: not client.send(FILLER), timeout=30, interval=0,
             message="Client.send() to refuse")
    sink = client._sink
    assert sink is not None and 0 < sink.tail_size <= 8192
    assert client.end_reason is None  # not in the history: a cut could not bring it back
    assert hub.stats()["slow_disconnects"] == 0


def test_write_timeout_cuts_a_client_that_stopped_reading(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], caplog: pytest.LogCaptureFixture
) -> None:
    hub = hubs(slow_client="drop", client_buffer_bytes=8192, write_timeout=0.5)
    conn = conns(hub, "slow", **SLOW)
    conn.detach()
    # Until the tail is full (a drop) or the cut came first: either way a tail
    # waits that the socket will never take.
    fill_until(hub, "slow", lambda: hub.stats()["dropped"] or conn.client.closed)
    wait_for(lambda: hub.get_client_count() == 0, timeout=20,
             message="the stalled stream cut by write_timeout")
    assert conn.client.end_reason == "write_timeout"
    assert hub.stats()["write_timeouts"] == 1
    assert any("write_timeout" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)


# -- the close log line ---------------------------------------------------------------------


def test_the_close_line_is_logged_once_with_what_was_written(
    hubs: Callable[..., Hub], conns: Callable[..., Conn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    hub = hubs()
    conn = conns(hub, "a")
    hub.broadcast_to_pattern("a", "early")  # waits in the outbox until the detach
    hub.flush()
    conn.detach()
    for i in range(2):
        hub.broadcast_to_pattern("a", f"live {i}")
    assert hub.disconnect("a") == 1
    conn.peer.read_to_end()
    wait_for(lambda: close_lines(caplog, "a"), message="the close line")
    conn.stream.close()  # a second close by the server logs nothing more
    [line] = close_lines(caplog, "a")
    # The body's bytes, framing included after the first chunk, the end not included.
    framed_first = len(frame_chunk(conn.first))
    body = len(conn.peer.wire) - framed_first + len(conn.first) - len(LAST_CHUNK)
    assert line.endswith(f": 3 event(s), {body} byte(s)"), line


# Two moments a stop may come while a stream detaches (a SIGTERM while a
# request thread hands a connection over): while the server swaps its
# descriptor (before the stream asks the hub for its outlet), and once the
# outlet has been chosen but before it holds the socket.


def test_a_stop_during_the_detach_ends_the_stream_and_leaves_no_outlet_running(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    before = outlet_threads()
    hub = hubs(shutdown_retry=55)
    conn = conns(hub, "a", on_detach=hub.stop)
    conn.serve_rest()
    conn.peer.read_to_end()
    assert conn.peer.ended and conn.peer.chunks[-1] == encode_retry(55)
    wait_for(lambda: not {t for t in outlet_threads() - before if t.is_alive()}, timeout=15,
             message="no outlet thread left running after the hub stopped")


def test_a_stop_while_the_outlet_adopts_the_socket_still_ends_the_stream(
    hubs: Callable[..., Hub], conns: Callable[..., Conn]
) -> None:
    hub = hubs(shutdown_retry=55)
    conn = conns(hub, "a", on_adopt=hub.stop)
    conn.serve_rest()
    conn.peer.read_to_end()
    assert conn.peer.ended and conn.peer.chunks[-1] == encode_retry(55)
