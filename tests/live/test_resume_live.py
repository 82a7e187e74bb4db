"""Lossless streams for real: Last-Event-ID resume and slow clients under gunicorn gthread."""

from __future__ import annotations

import json
import random
import threading
import time

import httpx
import pytest

from tests._decoder import decode
from tests._live import GunicornServer, RawStream
from tests._sseclient import SSEClient
from tests.live import _helpers
from tests.live._helpers import Start, publish, stats, wait_clients

pytestmark = pytest.mark.live


def start(gunicorn_server: Start, **env: str) -> GunicornServer:
    return _helpers.start(gunicorn_server, threads=48, **env)


def test_resume_with_last_event_id_header_and_query(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    c = SSEClient(f"{server.url}/events/?cid=u")
    c.take(1, event="connected")
    publish(server, "u", "seen")
    (seen,) = c.take(1)
    c.close()
    publish(server, "u", *[f"missed {i}" for i in range(7)])
    by_header = SSEClient(f"{server.url}/events/?cid=u", headers={"Last-Event-ID": seen.id})
    by_query = SSEClient(f"{server.url}/events/?cid=u&last_event_id={seen.id}")
    for again in (by_header, by_query):
        assert [e.data for e in again.take(7)] == [f"missed {i}" for i in range(7)]
    publish(server, "u", "live")
    for again in (by_header, by_query):
        assert again.take(1)[0].data == "live"
        again.close()


@pytest.mark.parametrize("bad", ["", "nonsense", "-5", "9" * 300, "1-2-3", "%00"])
def test_garbage_last_event_id_gets_reset_not_500(gunicorn_server: Start, bad: str) -> None:
    server = start(gunicorn_server)
    c = SSEClient(f"{server.url}/events/?cid=u", headers={"Last-Event-ID": bad})
    assert c.status == 200
    assert c.next().event == "connected"
    assert json.loads(c.next().data)["reason"] in ("malformed", "unknown")
    c.close()


def test_non_ascii_last_event_id_bytes_get_reset(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    with RawStream(server.host, server.port, "/events/?cid=u",
                   headers={"Last-Event-ID": "\u00e9\u00ff"}) as raw:
        assert raw.status == 200
        body = raw.read_until(b"event: reset", timeout=5)
        assert b"event: connected" in body


def test_reconnects_during_concurrent_publishing_lose_nothing(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_HISTORY="10000", SSE_BUFFER="10000")
    rng = random.Random(7)
    total = 3 * 150

    def publisher(tag: str) -> None:
        with httpx.Client() as http:
            for i in range(150):
                http.post(f"{server.url}/publish", json={"pattern": "r", "data": f"{tag}:{i}"})

    c = SSEClient(f"{server.url}/events/?cid=r")
    last = c.next().id
    threads = [threading.Thread(target=publisher, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    seen: list[str] = []
    reconnects = 0
    while len(seen) < total:
        for ev in c.take(min(rng.randint(1, 40), total - len(seen)), timeout=20):
            seen.append(ev.data)
            last = ev.id
        c.close()
        reconnects += 1
        c = SSEClient(f"{server.url}/events/?cid=r", headers={"Last-Event-ID": last})
        assert c.next().event == "connected"
    c.close()
    for t in threads:
        t.join()
    assert reconnects >= 10
    assert len(seen) == len(set(seen)) == total
    for tag in "abc":
        assert [s for s in seen if s[0] == tag] == [f"{tag}:{i}" for i in range(150)]


def test_a_slow_reader_does_not_stall_others_and_catches_up(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_BUFFER="64")
    n, size = 300, 16 * 1024
    datas = [f"{i:04d}" + "x" * (size - 4) for i in range(n)]
    fast = [SSEClient(f"{server.url}/events/?cid=f{i}") for i in range(2)]
    for f in fast:
        f.take(1, event="connected")
    slow = RawStream(server.host, server.port, "/events/?cid=slow", rcvbuf=4096)
    first = slow.read_until(b"event: connected", timeout=5)
    wait_clients(server, 3)
    # The slow reader stops reading now.
    t0 = time.monotonic()
    for k in range(0, n, 20):  # bursts smaller than the outbox: fast readers keep up
        publish(server, "*", *datas[k:k + 20])
    for f in fast:
        assert [e.data[:4] for e in f.take(n, timeout=30)] == [f"{i:04d}" for i in range(n)]
    fast_done = time.monotonic() - t0
    ping = time.monotonic()
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    responsive = time.monotonic() - ping
    s = stats(server)
    assert s["slow_disconnects"] == 1 and s["dropped"] == 0
    # It reads again: the queued events, then the end of the stream.
    body = first + slow.read_to_end(timeout=30)
    slow.close()
    got = [e for e in decode(body) if e.event == "message"]
    assert got, "the slow reader got nothing before it was cut"
    again = SSEClient(f"{server.url}/events/?cid=slow", headers={"Last-Event-ID": got[-1].id})
    rest = again.take(n - len(got), timeout=30)
    again.close()
    ids = [e.data[:4] for e in got] + [e.data[:4] for e in rest]
    assert ids == [f"{i:04d}" for i in range(n)]
    for f in fast:
        f.close()
    print(f"fast clients done in {fast_done:.2f}s; /healthz in {responsive * 1000:.1f} ms;"
          f" slow got {len(got)} before the cut, {len(rest)} on resume")
