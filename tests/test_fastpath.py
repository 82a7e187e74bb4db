"""The fast path over a real loopback TCP connection, driven as gunicorn drives it.

The "server" thread iterates the stream and writes every yielded chunk with
gunicorn's own ``util.write_chunk`` (then the terminating chunk, as
``Response.close`` does), while the hub thread writes to the same socket on the
fast path; the reader decodes the chunked framing strictly.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gunicorn import util as gunicorn_util
from werkzeug.test import EnvironBuilder

from sse_kit import Client, Hub, serve_sse
from sse_kit._connection import Stream
from sse_kit._fastpath import direct_socket, direct_writer, frame_chunk
from sse_kit._wire import SSEDecoder, decode
from tests._live import ChunkedDecoder, wait_for


@pytest.mark.parametrize("frame", [b"", b"x", b"data: a\n\n", b"z" * 255, b"y" * 4096])
def test_frame_chunk_is_gunicorns_framing(frame: bytes) -> None:
    class Capture:
        sent = b""

        def sendall(self, data: bytes) -> None:
            self.sent += data

    capture = Capture()
    gunicorn_util.write_chunk(capture, frame)
    assert frame_chunk(frame) == capture.sent


def _pair() -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (server end, client end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for end in (server, client):  # as gunicorn's listener (inherited on accept)
        end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server, client


def _environ(sock: object, protocol: str = "HTTP/1.1") -> dict[str, Any]:
    env = EnvironBuilder(path="/events", headers={"Accept": "text/event-stream"}).get_environ()
    env["gunicorn.socket"] = sock
    env["SERVER_PROTOCOL"] = protocol
    return env


# serve_sse() sets gunicorn's write timeout (Hub.write_timeout) on the socket, as it
# does under gunicorn: the fast path must work with it.


def test_direct_socket_only_for_plain_http11_tcp() -> None:
    server, client = _pair()
    with server, client:
        assert direct_socket(_environ(server)) is server
        assert direct_socket(_environ(server, "HTTP/1.0")) is None  # not chunked
        assert direct_socket(_environ(server, "HTTP/2")) is None
        assert direct_socket(_environ(None)) is None  # not gunicorn
        assert direct_socket(_environ(object())) is None
        server.settimeout(5.0)  # the write timeout sse_kit._socket.guard sets
        assert direct_socket(_environ(server)) is server
        server.settimeout(None)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls = ctx.wrap_socket(socket.socket(), server_side=True, do_handshake_on_connect=False)
        with tls:
            assert direct_socket(_environ(tls)) is None


@pytest.mark.parametrize("timeout", [None, 30.0, 0.0])
def test_the_direct_writer_never_waits_for_room(timeout: float | None) -> None:
    server, client = _pair()
    with server, client:
        server.settimeout(timeout)
        write = direct_writer(server)
        sent = 0
        with pytest.raises(BlockingIOError):  # the peer does not read: the socket fills
            while True:
                n = write(b"x" * 65536)
                assert 0 < n <= 65536
                sent += n
        assert sent > 0 and server.gettimeout() == timeout
    with pytest.raises(OSError):
        write(b"after close")  # EBADF, never another descriptor


class GunicornLikeServer:
    """Serves one stream on *sock* as gunicorn's gthread worker does."""

    def __init__(self, hub: Hub, sock: socket.socket, client_id: str) -> None:
        response = serve_sse(hub, _environ(sock), client_id)
        assert response.status_code == 200
        self.stream = response.response
        assert isinstance(self.stream, Stream)
        self.sock = sock
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for item in self.stream:
                gunicorn_util.write_chunk(self.sock, item)
            gunicorn_util.write_chunk(self.sock, b"")  # Response.close()
        except OSError as exc:
            self.error = exc
        finally:
            self.stream.close()


class Reader:
    """Reads the client end: strict chunked decoding, then SSE decoding."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = ChunkedDecoder()
        self.sse = SSEDecoder()
        self.wire = bytearray()
        self.body = bytearray()
        self.events = 0  # events decoded so far (connected included)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)

    def read_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bytes:
        """Read until *predicate()* holds or the body ends; return the body."""
        self.sock.settimeout(timeout)
        while not predicate() and not self.decoder.done:
            data = self.sock.recv(65536)
            if not data:
                break
            self.wire += data
            for chunk in self.decoder.feed(data):
                self.body += chunk
                self.events += len(self.sse.feed(chunk))
        return bytes(self.body)


def _datas(body: bytes) -> list[str]:
    return [ev.data for ev in decode(body) if ev.event == "message"]


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub(client_buffer=100_000, keepalive_interval=60)
    hub._server_frames_chunks = True  # as sse_kit.gunicorn's hooks do in a gthread worker
    with hub:
        yield hub


def _connect(hub: Hub, cid: str = "c") -> tuple[GunicornLikeServer, Reader]:
    server_end, client_end = _pair()
    served = GunicornLikeServer(hub, server_end, cid)
    reader = Reader(client_end)
    reader.read_until(lambda: reader.events >= 1)
    wait_for(lambda: served.stream.client._direct is not None, message="the fast path")
    return served, reader


def test_events_written_by_the_hub_thread_once_the_first_chunk_is_out(hub: Hub) -> None:
    served, reader = _connect(hub)
    for i in range(50):
        hub.broadcast_to_pattern("*", f"e{i}")
    hub.flush()
    body = reader.read_until(lambda: reader.events == 51)
    assert _datas(body) == [f"e{i}" for i in range(50)]
    stats = hub.stats()
    assert stats["fast_writes"] == 50 and stats["queued_writes"] == 0
    # Every chunk was framed as gunicorn frames one (the reader decodes strictly).
    assert reader.decoder.chunks >= 2
    served.sock.close()
    reader.sock.close()


def _hold_hub_thread(hub: Hub) -> threading.Event:
    """Keep the hub thread busy until the returned event is set, so that what is
    published meanwhile waits in its inbox."""
    from sse_kit._hub import _CALL, _Call

    release, busy = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        release.wait(20)

    hub._inbox.put((_CALL, _Call(hold, None), None))
    assert busy.wait(20)
    return release


def test_broadcasts_waiting_together_go_out_in_one_write(hub: Hub) -> None:
    served, reader = _connect(hub)
    chunks_before = reader.decoder.chunks
    release = _hold_hub_thread(hub)
    for i in range(20):
        hub.broadcast_to_pattern("*", f"a{i}")
    hub.broadcast_to_pattern("c", "to-me")  # another pattern: the batch ends here
    for i in range(5):
        hub.broadcast_to_pattern("*", f"b{i}")
    release.set()
    hub.flush()
    body = reader.read_until(lambda: reader.events == 1 + 26)
    assert _datas(body) == [f"a{i}" for i in range(20)] + ["to-me"] + [f"b{i}" for i in range(5)]
    assert reader.decoder.chunks - chunks_before == 3  # three batches, one chunk each
    stats = hub.stats()
    assert stats["fast_writes"] == 26 and stats["delivered"] == 26
    assert stats["published"] == 26
    # Each event keeps its own ID, in order, so a resume starts exactly after any.
    ids = [ev.id for ev in decode(body) if ev.event == "message"]
    assert len(set(ids)) == 26 and ids == sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1]))
    served.sock.close()
    reader.sock.close()


def test_a_registration_between_broadcasts_ends_the_batch(hub: Hub) -> None:
    first, first_reader = _connect(hub, "a")
    release = _hold_hub_thread(hub)
    hub.broadcast_to_pattern("*", "before")
    server_end, client_end = _pair()
    joined: list[GunicornLikeServer] = []
    opener = threading.Thread(  # blocks until the hub thread answers the registration
        target=lambda: joined.append(GunicornLikeServer(hub, server_end, "b")), daemon=True)
    opener.start()
    wait_for(lambda: hub._inbox.qsize() >= 2, message="the registration to be queued")
    hub.broadcast_to_pattern("*", "after")
    release.set()
    opener.join(20)
    second_reader = Reader(client_end)
    second = second_reader.read_until(lambda: second_reader.events >= 2)
    assert _datas(second) == ["after"]  # not "before": it was routed before b joined
    assert _datas(first_reader.read_until(lambda: first_reader.events >= 3)) == ["before",
                                                                                  "after"]
    for sock in (first.sock, first_reader.sock, joined[0].sock, client_end):
        sock.close()


def test_a_batch_respects_the_queue_paths_limits_event_by_event() -> None:
    hub = Hub(slow_client="drop", fast_path=False)
    with hub:
        client = Client("q", buffer=3)
        hub.register(client)
        release = _hold_hub_thread(hub)
        for i in range(5):
            hub.broadcast_to_pattern("*", f"e{i}")
        release.set()
        hub.flush()
        frames, _ = client._take(0)
        assert [ev.data for f in frames for ev in decode(f)] == ["e0", "e1", "e2"]
        stats = hub.stats()
        assert stats["delivered"] == 3 and stats["dropped"] == 2


def test_order_survives_a_full_socket_partial_writes_and_the_way_back(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    spills: list[int] = []
    real = Stream._write_spill

    def counting(self: Stream, spill: bytes) -> None:  # a spy: the real write still runs
        spills.append(len(spill))
        real(self, spill)

    monkeypatch.setattr(Stream, "_write_spill", counting)
    server_end, client_end = _pair()
    # A small send buffer and events up to 5x its size, so direct writes go partial.
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    served = GunicornLikeServer(hub, server_end, "slow")
    reader = Reader(client_end)
    reader.read_until(lambda: reader.events >= 1)
    wait_for(lambda: served.stream.client._direct is not None, message="the fast path")
    # The reader does not read yet. The first event is far larger than the send
    # buffer: one non-blocking send() takes part of it and the stream thread must
    # write the rest (the spill) before the events queued behind it.
    sizes = [200_000] + [i * 7919 % 2000 for i in range(1, 400)]
    for i, size in enumerate(sizes):
        hub.broadcast_to_pattern("*", f"{i}:" + "x" * size)
    hub.flush()
    total = len(sizes)
    body = reader.read_until(lambda: reader.events >= total + 1)
    got = [int(d.split(":")[0]) for d in _datas(body)]
    assert got == list(range(total))  # each exactly once, in order
    assert [len(d) for d in _datas(body)] == [len(f"{i}:") + s for i, s in enumerate(sizes)]
    hub.flush()  # the hub counts a write after making it: the reader can be first
    stats = hub.stats()
    assert stats["fast_would_block"] >= 1
    assert stats["fast_writes"] + stats["queued_writes"] == total
    assert spills and spills[0] < len(frame_chunk(b"x" * 200_000)), spills
    # Drained: the stream hands the socket back to the hub.
    wait_for(lambda: served.stream.client._direct is not None, message="the fast path again")
    before = hub.stats()["fast_writes"]
    hub.broadcast_to_pattern("*", "after")
    hub.flush()
    assert hub.stats()["fast_writes"] == before + 1
    assert _datas(reader.read_until(lambda: reader.events >= total + 2))[-1] == "after"
    served.sock.close()
    reader.sock.close()


def test_ending_switches_the_fast_path_off_before_the_terminator(hub: Hub) -> None:
    served, reader = _connect(hub)
    for i in range(20):
        hub.broadcast_to_pattern("*", f"e{i}")
    hub.disconnect("c")
    body = reader.read_until(lambda: False)
    assert reader.decoder.done  # 0\r\n\r\n came last, after every event
    assert _datas(body) == [f"e{i}" for i in range(20)]
    served.thread.join(10)
    assert served.error is None and served.stream.client._direct is None
    served.sock.close()
    reader.sock.close()


def test_shutdown_after_fast_writes_ends_with_a_retry_hint(hub: Hub) -> None:
    served, reader = _connect(hub)
    hub.broadcast_to_pattern("*", "one")
    hub.stop()
    body = reader.read_until(lambda: False)
    assert reader.decoder.done
    assert _datas(body) == ["one"]
    assert body.endswith(b"retry: %d\n\n" % hub.shutdown_retry)
    served.sock.close()
    reader.sock.close()


def test_a_failed_direct_write_ends_the_stream_without_a_keepalive(hub: Hub) -> None:
    served, reader = _connect(hub)
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reader.sock.close()  # RST: the next send fails

    def gone() -> bool:
        hub.broadcast_to_pattern("*", "anyone?")
        hub.flush()
        return hub.get_client_count() == 0

    wait_for(gone, message="the hub to notice the client went away")
    served.thread.join(10)
    assert not served.thread.is_alive()
    served.sock.close()


def test_fast_path_off_writes_the_same_bytes() -> None:
    def run(fast: bool) -> tuple[bytes, dict[str, int]]:
        hub = Hub(fast_path=fast)
        hub._server_frames_chunks = True
        with hub:
            server_end, client_end = _pair()
            served = GunicornLikeServer(hub, server_end, "c")
            reader = Reader(client_end)
            reader.read_until(lambda: reader.events >= 1)
            if fast:
                wait_for(lambda: served.stream.client._direct is not None, message="fast path")
            for i in range(10):
                hub.broadcast_to_pattern("*", {"i": i, "pad": "p" * i}, event="tick")
                reader.read_until(lambda i=i: reader.events >= i + 2)  # type: ignore[misc]
            hub.disconnect("c")
            reader.read_until(lambda: False)
            served.sock.close()
            reader.sock.close()
            # Event IDs start with a random epoch; the rest must match byte for byte.
            return re.sub(rb"id: [0-9a-f]+-", b"id: X-", bytes(reader.wire)), hub.stats()

    queued, queued_stats = run(False)
    fast, fast_stats = run(True)
    assert (queued_stats["fast_writes"], fast_stats["fast_writes"]) == (0, 10)
    assert fast == queued


def _worker(cls: type, **settings: Any) -> Any:
    """A real gunicorn worker object of *cls* with a real Config (not started)."""
    from gunicorn.config import Config

    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    worker = cls.__new__(cls)
    worker.cfg = cfg
    return worker


def test_the_hooks_vouch_only_for_workers_that_frame_chunks_themselves(tmp_path: Any) -> None:
    from gunicorn.workers.gthread import ThreadWorker
    from gunicorn.workers.sync import SyncWorker

    from sse_kit.gunicorn import _frames_chunks

    cert = tmp_path / "cert.pem"
    cert.write_text("not read here")
    assert _frames_chunks(_worker(ThreadWorker))
    assert _frames_chunks(_worker(SyncWorker))
    assert not _frames_chunks(_worker(ThreadWorker, certfile=str(cert)))  # TLS
    assert not _frames_chunks(_worker(ThreadWorker, protocol="uwsgi"))  # no chunk framing

    class OtherWorker(ThreadWorker):  # e.g. a subclass that frames differently
        pass

    assert not _frames_chunks(_worker(OtherWorker))
    assert not _frames_chunks(object())


def test_no_fast_path_unless_the_server_was_vouched_for() -> None:
    hub = Hub()
    with hub:
        server_end, client_end = _pair()
        with server_end, client_end:
            response = serve_sse(hub, _environ(server_end), "c")
            assert isinstance(response.response, Stream)
            assert response.response._direct is None  # no hook said gunicorn frames chunks
            response.response.close()
            hub._server_frames_chunks = True
            hub.fast_path = False
            response = serve_sse(hub, _environ(server_end), "c")
            assert isinstance(response.response, Stream)
            assert response.response._direct is None  # turned off
            response.response.close()
            hub.fast_path = True
            response = serve_sse(hub, _environ(server_end), "c")
            assert isinstance(response.response, Stream)
            assert response.response._direct is server_end
            response.response.close()


def test_fast_path_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="fast_path"):
        Hub(fast_path=1)  # type: ignore[arg-type]


def test_set_thread_stack_size() -> None:
    from sse_kit.gunicorn import MIN_THREAD_STACK, set_thread_stack_size

    with pytest.raises(ValueError, match="size"):
        set_thread_stack_size(MIN_THREAD_STACK - 1)
    with pytest.raises(ValueError, match="size"):
        set_thread_stack_size(True)
    previous = set_thread_stack_size(256 * 1024)
    try:
        # (threading.stack_size() without an argument would reset it: read by setting.)
        assert set_thread_stack_size(512 * 1024) == 256 * 1024
    finally:
        threading.stack_size(previous)


def test_keepalives_interleave_with_fast_writes_in_order() -> None:
    hub = Hub(keepalive_interval=0.2)
    hub._server_frames_chunks = True
    with hub:
        served, reader = _connect(hub)
        for i in range(3):
            # A keep-alive takes the socket back, writes, and hands it back to the hub.
            reader.read_until(lambda i=i: reader.body.count(b": keepalive") > i)  # type: ignore[misc]
            wait_for(lambda: served.stream.client._direct is not None, message="the fast path")
            hub.broadcast_to_pattern("*", f"e{i}")
            reader.read_until(lambda i=i: reader.events >= i + 2)  # type: ignore[misc]
        body = bytes(reader.body)
        assert _datas(body) == ["e0", "e1", "e2"]
        hub.flush()  # the hub counts a write after making it: the reader can be first
        stats = hub.stats()
        # (A keep-alive due between the wait and the publish sends that one event
        # through the queue instead: either way it arrives once, in order.)
        assert stats["fast_writes"] >= 1 and stats["fast_writes"] + stats["queued_writes"] == 3
        assert stats["keepalives"] >= 3
        served.sock.close()
        reader.sock.close()
