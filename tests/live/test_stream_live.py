"""The core, for real: gunicorn gthread serving the test app, real clients over sockets."""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest

from tests._decoder import decode
from tests._live import RawStream, wait_for
from tests._sseclient import SSEClient
from tests.live._helpers import APP, CONF, Start, publish, start, stats, wait_clients

pytestmark = pytest.mark.live


def test_headers_and_an_immediate_connected_event(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    with RawStream(server.host, server.port, "/events/?cid=user:1") as raw:
        assert raw.status == 200
        assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert raw.headers["cache-control"] == "no-cache"
        assert raw.headers["x-accel-buffering"] == "no"
        assert raw.headers["transfer-encoding"] == "chunked"
        # No broadcast has happened: the connected event must leave on its own.
        body = raw.read_until(b"\n\n", timeout=5)
        (ev,) = decode(body)
        assert ev.event == "connected" and ev.retry == 3000
        assert json.loads(ev.data) == {"client_id": "user:1"}
        assert ev.id  # the position a reconnect resumes from


def test_refusals_are_one_line_4xx(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    r = httpx.post(f"{server.url}/events/?cid=x")
    assert r.status_code == 405
    r = httpx.get(f"{server.url}/events/?cid=x", headers={"Accept": "application/json"})
    assert r.status_code == 406 and r.text.count("\n") == 1
    r = httpx.post(f"{server.url}/publish", json={"pattern": "", "data": "x"})
    assert r.status_code == 400 and "empty" in r.json()["error"]


def test_pattern_routing_multiline_and_json(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    ids = ["job:1:a", "job:1:b", "job:2:a", "user:42"]
    clients = {cid: SSEClient(f"{server.url}/events/?cid={cid}") for cid in ids}
    for c in clients.values():
        c.take(1, event="connected")
    publish(server, "job:1:*", "line one\nline two\r\nline three")
    publish(server, "user:42", {"n": 1, "s": "é"}, event="note")
    publish(server, "*", "all")
    lines = ("message", "line one\nline two\nline three")
    want = {
        "job:1:a": [lines, ("message", "all")],
        "job:1:b": [lines, ("message", "all")],
        "job:2:a": [("message", "all")],
        "user:42": [("note", '{"n":1,"s":"é"}'), ("message", "all")],
    }
    for cid, c in clients.items():
        assert [(e.event, e.data) for e in c.take(len(want[cid]), event=None)] == want[cid]
    publish(server, "*", "last")
    for c in clients.values():  # nothing else arrived in between
        assert c.take(1, event=None)[0].data == "last"
    for c in clients.values():
        c.close()


def test_500_events_arrive_in_order_in_few_chunks(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_BUFFER="1000")
    client = SSEClient(f"{server.url}/events/?cid=c")
    client.take(1, event="connected")
    publish(server, "c", *[str(i) for i in range(500)])
    assert [e.data for e in client.take(500)] == [str(i) for i in range(500)]
    client.close()


def test_disconnect_is_noticed_within_a_keepalive_interval(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_KEEPALIVE="0.5")
    raws = [RawStream(server.host, server.port, f"/events/?cid=c{i}") for i in range(5)]
    for raw in raws:
        raw.read_until(b"event: connected", timeout=5)
    wait_clients(server, 5)
    for raw in raws:
        raw.close()
    wait_clients(server, 0)
    s = stats(server)
    assert s["connects"] == 5 and s["disconnected"] == 5


def test_two_connections_with_one_id(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_KEEPALIVE="0.5")
    a = SSEClient(f"{server.url}/events/?cid=user:7")
    b = SSEClient(f"{server.url}/events/?cid=user:7")
    a.take(1, event="connected")
    b.take(1, event="connected")
    publish(server, "user:7", "both")
    assert a.take(1)[0].data == "both" and b.take(1)[0].data == "both"
    a.close()
    wait_clients(server, 1)
    publish(server, "user:7", "survivor")
    assert b.take(1)[0].data == "survivor"
    b.close()


def test_max_clients_gets_503_with_retry_after(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_MAX_CLIENTS="2", SSE_KEEPALIVE="0.5")
    a = SSEClient(f"{server.url}/events/?cid=a")
    b = SSEClient(f"{server.url}/events/?cid=b")
    r = httpx.get(f"{server.url}/events/?cid=c")
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # ordinary routes still served
    a.close()
    wait_clients(server, 1)
    c = SSEClient(f"{server.url}/events/?cid=c")
    assert c.status == 200
    b.close()
    c.close()


def test_sigterm_with_open_streams_exits_promptly(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)  # graceful_timeout is 30 s
    raws = [RawStream(server.host, server.port, f"/events/?cid=c{i}") for i in range(10)]
    for raw in raws:
        raw.read_until(b"event: connected", timeout=5)
    took = server.terminate(timeout=25)
    assert took < 10, f"the worker waited {took:.1f}s for streams to end"
    for raw in raws:
        body = raw.read_to_end(timeout=5)
        assert body.endswith(b"retry: 250\n\n")  # browsers come back quickly
        assert raw.complete  # the chunked body was terminated properly
        raw.close()


def test_max_requests_restart_ends_streams_promptly(gunicorn_server: Start) -> None:
    server = gunicorn_server(APP, config=CONF, threads=16, graceful_timeout=30,
                             extra_args=("--max-requests", "5"))
    first_worker = server.wait_for_workers(1)[0]
    raws = [RawStream(server.host, server.port, f"/events/?cid=c{i}") for i in range(3)]
    for raw in raws:
        raw.read_until(b"event: connected", timeout=5)
    t0 = time.monotonic()
    # Requests 4 and 5 make the worker leave on its own: no signal is sent.
    for _ in range(2):
        # gunicorn 23 may reset the connection it accepted while leaving
        # (benoitc/gunicorn#3038): the request still counted, or the next one does.
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{server.url}/healthz")
    for raw in raws:
        assert raw.read_to_end(timeout=10).endswith(b"retry: 250\n\n")
        raw.close()
    wait_for(lambda: first_worker not in server.worker_pids() and server.worker_pids(),
             timeout=15, message="a new worker")
    took = time.monotonic() - t0
    assert took < 10, f"streams held the old worker for {took:.1f}s"
    assert httpx.get(f"{server.url}/healthz").status_code == 200
