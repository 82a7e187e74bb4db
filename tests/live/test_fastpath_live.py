"""The fast path under a real gunicorn gthread worker, checked on the wire."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import pytest

from tests._decoder import decode
from tests._live import GunicornServer, RawStream, wait_for
from tests.live.test_stream_live import APP, CONF, publish, stats, wait_clients

pytestmark = pytest.mark.live

Start = Callable[..., GunicornServer]


def start(gunicorn_server: Start, **env: str) -> GunicornServer:
    return gunicorn_server(APP, config=CONF, threads=16, graceful_timeout=30, env=env)


def datas(body: bytes) -> list[str]:
    return [ev.data for ev in decode(body) if ev.event == "message"]


def open_direct(server: GunicornServer, cid: str, **kwargs: int) -> RawStream:
    """A stream whose events the hub thread writes itself (the fast path is on)."""
    raw = RawStream(server.host, server.port, f"/events/?cid={cid}", **kwargs)
    raw.read_until(b"\n\n")
    wait_for(lambda: stats(server)["direct"] >= 1, message=lambda: f"fast path: {stats(server)}")
    return raw


def test_events_leave_on_the_fast_path_framed_as_gunicorn_frames_them(
    gunicorn_server: Start,
) -> None:
    server = start(gunicorn_server)
    with open_direct(server, "a") as raw:
        for i in range(5):
            publish(server, "a", f"e{i}")
            raw.read_until(f"data: e{i}\n\n".encode())
        s = stats(server)
        assert (s["fast_writes"], s["queued_writes"]) == (5, 0)
        # One chunk per event, upper-case hex size, as gunicorn.util.write_chunk.
        for chunk in raw.chunks[1:]:
            assert b"%X\r\n%b\r\n" % (len(chunk), chunk) in raw.wire


def test_a_reader_that_stops_then_resumes_gets_everything_once_in_order(
    gunicorn_server: Start,
) -> None:
    server = start(gunicorn_server, SSE_BUFFER="100000")
    with open_direct(server, "slow") as raw:
        # Not reading: the socket buffers fill mid-stream and the outbox takes over.
        n = 0
        while stats(server)["fast_would_block"] == 0:
            assert n < 20_000, f"{n} events and the socket never filled: {stats(server)}"
            publish(server, "slow", *[f"{i}:{'x' * (i * 7919 % 4000)}" for i in range(n, n + 500)])
            n += 500
        publish(server, "slow", *[f"{i}:{'x' * (i % 100)}" for i in range(n, n + 500)])
        n += 500
        body = raw.read_until(lambda b: b.count(b"\n\n") >= n + 1, timeout=60)
        got = [int(d.split(":")[0]) for d in datas(body)]
        assert got == list(range(n))  # every event exactly once, in order
        s = stats(server)
        assert s["fast_writes"] >= 1 and s["fast_writes"] + s["queued_writes"] == n
        # Drained: back on the fast path.
        wait_for(lambda: stats(server)["direct"] == 1, message="the fast path again")
        before = stats(server)["fast_writes"]
        publish(server, "slow", "again")
        assert datas(raw.read_until(b"data: again\n\n"))[-1] == "again"
        assert stats(server)["fast_writes"] == before + 1


def test_shutdown_after_fast_writes_ends_the_chunked_body_properly(
    gunicorn_server: Start,
) -> None:
    server = start(gunicorn_server)
    with open_direct(server, "a") as raw:
        publish(server, "a", "one", "two")
        raw.read_until(b"data: two\n\n")
        assert stats(server)["fast_writes"] == 2
        server.terminate()
        body = raw.read_to_end()
        assert raw.complete  # the 0-size chunk came last, after every event
        assert datas(body) == ["one", "two"]
        assert body.endswith(b"retry: 250\n\n")


def test_a_client_that_goes_away_is_noticed_by_the_next_write(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)  # keep-alives every 30 s: not what notices here
    raw = open_direct(server, "gone")
    raw._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()  # RST

    def noticed() -> bool:
        publish(server, "gone", "anyone?")
        return stats(server)["clients"] == 0

    wait_for(noticed, message=lambda: f"the stream to end: {stats(server)}")
    assert stats(server)["keepalives"] == 0


def test_fast_path_off_writes_identical_bytes(gunicorn_server: Start) -> None:
    def wire(fast: str) -> tuple[bytes, dict[str, int]]:
        server = start(gunicorn_server, SSE_FAST_PATH=fast)
        with RawStream(server.host, server.port, "/events/?cid=same") as raw:
            raw.read_until(b"\n\n")
            if fast == "1":
                wait_for(lambda: stats(server)["direct"] == 1, message="the fast path")
            for i in range(10):
                publish(server, "same", {"i": i, "pad": "p" * i}, event="tick")
                raw.read_until(f'"i":{i},'.encode())
            result = stats(server)
            server.terminate()
            raw.read_to_end()
            assert raw.complete
            # Event IDs start with a random epoch; everything else must match.
            return re.sub(rb"id: [0-9a-f]+-", b"id: X-", bytes(raw.wire)), result

    queued, queued_stats = wire("0")
    fast, fast_stats = wire("1")
    assert (queued_stats["fast_writes"], fast_stats["fast_writes"]) == (0, 10)
    assert queued_stats["queued_writes"] == 10
    assert fast == queued


def test_http_1_0_is_not_chunked_and_stays_on_the_queue_path(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /events/?cid=old HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        wait_clients(server, 1)
        publish(server, "old", "plain")
        data = b""
        while b"data: plain\n\n" not in data:
            received = sock.recv(65536)
            assert received, data
            data += received
        head, body = data.split(b"\r\n\r\n", 1)
        assert b"transfer-encoding" not in head.lower()
        assert body.startswith(b"id: ") and datas(body) == ["plain"]
        s = stats(server)
        assert (s["fast_writes"], s["queued_writes"], s["direct"]) == (0, 1, 0)
