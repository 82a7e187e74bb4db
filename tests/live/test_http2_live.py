"""HTTP/2 served by sse_kit's worker class: many event streams and ordinary
requests on ONE connection, flow control, resume, SIGTERM, cleartext HTTP/2.

Real gunicorn (``-k sse_kit.gunicorn.ThreadWorker --http-protocols h2,h1``,
TLS with a certificate the test makes), real clients: httpx with
``http2=True``, and where a test needs to stop reading one stream or to see
RST_STREAM and GOAWAY, a client built on the ``h2`` package's state machine
(tests.live._h2client).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._browser import Browser
from tests._decoder import decode
from tests._live import GunicornServer, wait_for
from tests.live._h2client import H2Client
from tests.live._helpers import APP, WORKER_CLASS, Start

pytestmark = pytest.mark.live

STREAM = {"Accept": "text/event-stream"}


def serve_h2(gunicorn_server: Start, certificate: tuple[Path, Path], *, threads: int = 4,
             extra: tuple[str, ...] = (), **env: str) -> GunicornServer:
    """The test app under sse_kit's worker class, speaking HTTP/2 over TLS."""
    cert, key = certificate
    return gunicorn_server(APP, threads=threads, worker_class=WORKER_CLASS, health_path=None,
                           graceful_timeout=20, env=env,
                           extra_args=["--certfile", str(cert), "--keyfile", str(key),
                                       "--http-protocols", "h2,h1", *extra])


def https(server: GunicornServer) -> str:
    return f"https://{server.host}:{server.port}"


def h1_client(server: GunicornServer) -> httpx.Client:
    """A separate HTTP/1.1 client, for publishing and reading stats beside the
    connection under test."""
    return httpx.Client(base_url=https(server), verify=False, timeout=20)


def datas(body: bytes) -> list[str]:
    return [e.data for e in decode(body) if e.event == "message"]


def test_fifty_streams_and_a_hundred_requests_share_one_connection(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    # Four pool threads for 50 streams: streams on HTTP/2 hold none. Keep-alives
    # every second: httpcore's HTTP/2 reader holds its connection's read lock
    # while it waits on the socket, so with idle streams a response already read
    # waits for traffic before its own request sees it (a client-side effect).
    server = serve_h2(gunicorn_server, certificate, threads=4, SSE_KEEPALIVE="1")
    n_streams, n_events, n_gets = 50, 20, 80
    latencies: list[float] = []
    bodies: dict[int, list[str]] = {}

    async def scenario() -> set[str]:
        limits = httpx.Limits(max_connections=1)  # ONE connection for everything
        async with httpx.AsyncClient(base_url=https(server), http2=True, verify=False,
                                     timeout=30, limits=limits) as client:
            versions: set[str] = set()

            async def stream(i: int) -> None:
                bodies[i] = []
                async with client.stream("GET", f"/events/?cid=h2:{i}", headers=STREAM) as r:
                    versions.add(r.http_version)
                    async for line in r.aiter_lines():
                        if line.startswith("data: e"):
                            bodies[i].append(line[6:])
                            if line == f"data: e{n_events - 1}":
                                return

            async def ordinary(k: int) -> None:
                started = time.perf_counter()
                r = await client.get("/healthz")
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200 and r.text == "ok"
                versions.add(r.http_version)

            async def publisher() -> None:
                for k in range(n_events):  # one after another: the order is known
                    r = await client.post("/publish", json={"pattern": "h2:*", "data": f"e{k}"})
                    assert r.status_code == 200
                    versions.add(r.http_version)

            streams = [asyncio.create_task(stream(i)) for i in range(n_streams)]
            deadline = time.monotonic() + 30
            while (await client.get("/stats")).json()["clients"] < n_streams:
                assert time.monotonic() < deadline, "50 streams did not open"
            gets = [asyncio.create_task(ordinary(k)) for k in range(n_gets)]
            await asyncio.wait_for(asyncio.gather(publisher(), *gets), 60)
            await asyncio.wait_for(asyncio.gather(*streams), 60)
            stats: dict[str, Any] = (await client.get("/stats")).json()
            assert stats["parked"] == 0 and stats["detached"] >= n_streams
            return versions

    versions = asyncio.run(scenario())
    assert versions == {"HTTP/2"}
    expected = [f"e{k}" for k in range(n_events)]
    assert all(bodies[i] == expected for i in range(n_streams)), {
        i: b for i, b in bodies.items() if b != expected}
    p50, worst = statistics.median(latencies), max(latencies)
    print(f"\nHTTP/2, {n_streams} streams open on one connection: {n_gets} GETs "
          f"p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms (httpx)")
    assert worst < 10.0  # generous: the machine is shared; the figure is printed


def test_requests_beside_fifty_open_streams_are_answered_at_once(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    # The latency of an ordinary request on a connection that carries 50 open
    # streams, as the server gives it (one request at a time, no client-side
    # queueing; the issue asks for 100 ms: the figure is printed, the bound is
    # generous because the machine is shared).
    server = serve_h2(gunicorn_server, certificate, threads=4)
    h2c = H2Client(server.host, server.port)
    latencies = []
    try:
        streams = h2c.open_streams("lat", 50)
        with h1_client(server) as other:
            for k in range(100):
                if k % 5 == 0:
                    other.post("/publish", json={"pattern": "lat:*", "data": f"e{k}"})
                started = time.perf_counter()
                sid = h2c.get("/healthz")
                h2c.pump(lambda: sid in h2c.ended)  # noqa: B023 (called here, at once)
                latencies.append(time.perf_counter() - started)
                assert h2c.status[sid] == "200"
        expected = [f"e{k}" for k in range(0, 100, 5)]
        h2c.pump(lambda: all(datas(h2c.body[s]) == expected for s in streams))
    finally:
        h2c.close()
    latencies.sort()
    print(f"\nHTTP/2, 50 streams open on one connection: 100 GETs p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {latencies[98] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")
    assert latencies[-1] < 5.0


@pytest.mark.parametrize("policy", ["disconnect", "drop"])
def test_a_stream_whose_reader_stops_is_cut_or_dropped_and_its_siblings_get_everything(
    gunicorn_server: Start, certificate: tuple[Path, Path], policy: str
) -> None:
    server = serve_h2(gunicorn_server, certificate, SSE_SLOW=policy, SSE_BUFFER="4")
    h2c = H2Client(server.host, server.port, window=512)
    try:
        stalled = h2c.get("/events/?cid=slow:stalled", accept="text/event-stream")
        siblings = [h2c.get(f"/events/?cid=slow:{i}", accept="text/event-stream")
                    for i in range(3)]
        h2c.stalled.add(stalled)  # this reader never takes more than its first 512 bytes
        h2c.widen(siblings, 1 << 20)  # its siblings read everything
        h2c.pump(lambda: all(b"event: connected" in h2c.body[s] for s in [stalled, *siblings]))
        last = "029" + "x" * 100
        with h1_client(server) as other:
            for k in range(30):
                event = {"pattern": "slow:*", "data": f"{k:03d}" + "x" * 100}
                assert other.post("/publish", json=event).status_code == 200
            h2c.pump(lambda: all(datas(h2c.body[s])[-1:] == [last] for s in siblings))
            for s in siblings:
                assert [d[:3] for d in datas(h2c.body[s])] == [f"{k:03d}" for k in range(30)]
            if policy == "disconnect":
                h2c.pump(lambda: stalled in h2c.reset)
                assert h2c.reset[stalled] == 0x8  # CANCEL: cut as a slow client
                assert other.get("/stats").json()["slow_disconnects"] == 1
            else:
                wait_for(lambda: other.get("/stats").json()["dropped"] > 0,
                         message="events dropped for the stalled stream")
                assert stalled not in h2c.reset and other.get("/stats").json()["clients"] == 4
            assert not h2c.closed and h2c.goaway is None  # the connection lives on
    finally:
        h2c.close()
    if policy == "disconnect":
        assert "cut slow client 'slow:stalled'" in server.log_text()


def test_a_full_hub_refuses_a_stream_over_http2_and_the_connection_lives_on(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    server = serve_h2(gunicorn_server, certificate, SSE_MAX_CLIENTS="2")
    h2c = H2Client(server.host, server.port)
    try:
        streams = h2c.open_streams("full", 2)
        third = h2c.get("/events/?cid=full:2", accept="text/event-stream")
        h2c.pump(lambda: third in h2c.ended)
        assert h2c.status[third] == "503"
        ping = h2c.get("/stats")
        h2c.pump(lambda: ping in h2c.ended)
        stats = json.loads(h2c.body[ping])
        assert stats["refused"] == 1 and stats["clients"] == 2
        with h1_client(server) as other:
            other.post("/publish", json={"pattern": "full:*", "data": "still here"})
        h2c.pump(lambda: all(datas(h2c.body[s]) == ["still here"] for s in streams))
    finally:
        h2c.close()


def test_resume_over_http2_replays_what_was_missed(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    server = serve_h2(gunicorn_server, certificate)

    def h2_client() -> httpx.Client:
        return httpx.Client(base_url=https(server), http2=True, verify=False, timeout=20)

    with h1_client(server) as other:
        seen = []
        # httpx does not reset a stream it stops reading: closing the client
        # closes the connection, which ends the stream on the server.
        with h2_client() as client, client.stream("GET", "/events/?cid=resume:1",
                                                  headers=STREAM) as r:
            assert r.http_version == "HTTP/2"
            for line in r.iter_lines():
                if line.startswith("id: "):
                    seen.append(line[4:])
                if line == "event: connected":
                    for k in range(3):
                        other.post("/publish", json={"pattern": "resume:*", "data": f"a{k}"})
                if line == "data: a2":
                    break
        last_id = seen[-1]
        wait_for(lambda: other.get("/stats").json()["clients"] == 0, message="the stream closed")
        for k in range(2):
            other.post("/publish", json={"pattern": "resume:*", "data": f"b{k}"})
        got = []
        with h2_client() as client, client.stream(
                "GET", "/events/?cid=resume:1", headers={**STREAM, "Last-Event-ID": last_id}) as r:
            for line in r.iter_lines():
                if line.startswith("data: b"):
                    got.append(line[6:])
                if len(got) == 2:
                    break
        assert got == ["b0", "b1"]
        assert other.get("/stats").json()["resumed"] == 1


def test_sigterm_ends_every_stream_then_goaway_and_the_master_exits(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    server = serve_h2(gunicorn_server, certificate)
    h2c = H2Client(server.host, server.port)
    try:
        streams = h2c.open_streams("term", 5)
        took = server.terminate(timeout=30)
        h2c.pump(lambda: h2c.goaway is not None or h2c.closed, timeout=10)
    finally:
        h2c.close()
    for s in streams:
        assert s in h2c.ended and s not in h2c.reset  # a clean END_STREAM
        # After the connected event's own retry: field, the shutdown's short hint.
        assert b"retry: " in h2c.body[s].split(b"event: connected")[-1]
    assert h2c.goaway is not None and h2c.goaway.error_code == 0
    assert took < 15, f"the master took {took:.1f}s to exit"


def test_cleartext_http2_with_prior_knowledge(gunicorn_server: Start) -> None:
    server = gunicorn_server(APP, threads=2, worker_class=WORKER_CLASS, health_path=None,
                             extra_args=["--http-protocols", "h2,h1",
                                         "--http2-cleartext", "both"])
    h2c = H2Client(server.host, server.port, tls=False)
    try:
        streams = h2c.open_streams("h2c", 3)
        ping = h2c.get("/healthz")
        h2c.pump(lambda: ping in h2c.ended)
        assert h2c.status[ping] == "200" and h2c.body[ping] == b"ok"
        httpx.post(f"{server.url}/publish", json={"pattern": "h2c:*", "data": "hello"})
        h2c.pump(lambda: all(datas(h2c.body[s]) == ["hello"] for s in streams))
    finally:
        h2c.close()


@pytest.mark.browser
def test_a_browser_opens_ten_event_sources_and_fetches_over_one_origin(
    gunicorn_server: Start, certificate: tuple[Path, Path], browser: Callable[..., Browser]
) -> None:
    # Over HTTP/1.1 a browser opens at most six connections per origin: the
    # seventh EventSource, and every fetch() after it, would wait.
    server = serve_h2(gunicorn_server, certificate, threads=4)
    page = browser(flags=["--ignore-certificate-errors"])
    page.open(f"{https(server)}/healthz")
    page.js("""
        window.seen = {};
        for (let i = 0; i < 10; i++) {
            const source = new EventSource(`/events/?cid=tab:${i}`);
            window.seen[i] = [];
            source.addEventListener('connected', () => window.seen[i].push('connected'));
            source.onmessage = (e) => window.seen[i].push(e.data);
        }""")
    page.wait_js("Object.values(window.seen).every((s) => s.includes('connected'))",
                 timeout=30, what="10 EventSource streams connected")
    page.js("""
        window.fetched = [];
        for (let k = 0; k < 10; k++) {
            fetch('/healthz').then((r) => r.text()).then((t) => window.fetched.push(t));
        }""")
    page.wait_js("window.fetched.length === 10", timeout=30, what="10 fetch() answers")
    assert page.js("return window.fetched") == ["ok"] * 10
    with h1_client(server) as other:
        assert other.get("/stats").json()["clients"] == 10
        other.post("/publish", json={"pattern": "tab:*", "data": "hello"})
    page.wait_js("Object.values(window.seen).every((s) => s.includes('hello'))",
                 timeout=30, what="every stream got the event")
    protocols = page.js("""return [
        performance.getEntriesByType('navigation')[0].nextHopProtocol,
        ...performance.getEntriesByType('resource').map((e) => e.nextHopProtocol)]""")
    assert set(protocols) == {"h2"}, protocols
