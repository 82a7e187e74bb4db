"""Stream tickets, identity expiry and the connection-rate limit for real: gunicorn
with sse_kit's worker class, a real redis-server for single use across workers,
httpx and raw-socket clients, and a headless Chromium running sse_kit.js."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sse_kit._tickets import EXPIRED_TICKET, SPENT_TICKET
from sse_kit.redis import RedisBackplane
from tests._browser import Browser
from tests._live import GunicornServer, RawStream, RedisServer, wait_for
from tests._sseclient import SSEClient
from tests.live._helpers import WORKER_CLASS

pytestmark = [pytest.mark.live]

APP = "tests.live.ticket_app:create_app()"
Start = Callable[..., GunicornServer]


def serve(gunicorn_server: Start, *, workers: int = 1, **env: str) -> GunicornServer:
    """The ticket app under ``-k sse_kit.gunicorn.ThreadWorker``, access log on."""
    server = gunicorn_server(APP, worker_class=WORKER_CLASS, threads=16, workers=workers,
                             graceful_timeout=10, env=env,
                             extra_args=["--access-logfile", "-"])
    server.wait_for_workers()
    return server


def mint(server: GunicornServer, cid: str, **params: str) -> str:
    r = httpx.get(f"{server.url}/events/ticket", params={"cid": cid, **params}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    ticket: str = r.json()["ticket"]
    return ticket


def stream_url(server: GunicornServer, ticket: str) -> str:
    return f"{server.url}/events/?ticket={ticket}"


def open_stream(server: GunicornServer, ticket: str, opened: list[SSEClient],
                **headers: str) -> tuple[SSEClient, int]:
    """A stream opened with *ticket*; it and the pid of the worker serving it."""
    client = SSEClient(stream_url(server, ticket), headers=headers)
    opened.append(client)
    assert client.status == 200, client.status
    (connected,) = client.take(1, event="connected")
    return client, json.loads(connected.data)["metadata"]["pid"]


def stats(server: GunicornServer) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{server.url}/stats", timeout=10).json()
    return result


@pytest.mark.redis
def test_a_ticket_opens_one_stream_on_any_worker_and_never_shows_in_a_log(
    gunicorn_server: Start, redis_server: Callable[[], RedisServer], clients: list[SSEClient]
) -> None:
    redis = redis_server()
    server = serve(gunicorn_server, workers=3, SSE_REDIS_URL=redis.url)
    used: list[str] = []
    another_worker_refused = False
    # Until a replay has been refused by a worker other than the one that let the
    # ticket in (the kernel spreads the connections over the three workers).
    for i in range(30):
        ticket = mint(server, f"user:{i}")
        used.append(ticket)
        _, pid = open_stream(server, ticket, clients)
        for _ in range(10):
            replay = httpx.get(stream_url(server, ticket), timeout=10)
            assert (replay.status_code, replay.text) == (401, SPENT_TICKET + "\n")
            if int(replay.headers["x-worker-pid"]) != pid:
                another_worker_refused = True
                break
        if another_worker_refused:
            break
    assert another_worker_refused, "every replay landed on the worker that took the ticket"
    # A ticket that expired (signed with the same secret an hour ago) is refused too.
    stale = httpx.get(f"{server.url}/expired-ticket", params={"cid": "user:x"}).json()["ticket"]
    used.append(stale)
    expired = httpx.get(stream_url(server, stale), timeout=10)
    assert (expired.status_code, expired.text) == (401, EXPIRED_TICKET + "\n")
    # The streams let in still stream: a broadcast reaches them.
    assert httpx.post(f"{server.url}/publish", json={"pattern": "user:*", "datas": ["hi"]},
                      timeout=10).status_code == 200
    for client in clients:
        assert [ev.data for ev in client.take(1)] == ["hi"]
    # gunicorn's access log and the app's (sse_kit's) log lines are in this file.
    for client in clients:
        client.close()
    wait_for(lambda: "GET /events/?<redacted>" in server.log_text(),
             message="the access log's stream lines")
    text = server.log_text()
    assert "sse_kit: refused GET '/events/': 401" in text
    # The whole ticket, or its signature (unique to it).
    leaked = [t for t in used if t in text or t.rsplit(".", 1)[-1] in text]
    assert not leaked, "a ticket reached the log"


def test_a_stream_ends_at_its_identity_expiry_and_says_come_back(
    gunicorn_server: Start, clients: list[SSEClient]
) -> None:
    server = serve(gunicorn_server)
    # 4 s: minting and connecting must fit in it on a busy machine.
    ticket = mint(server, "user:1", life="4")
    with RawStream(server.host, server.port, f"/events/?ticket={ticket}",
                   headers={"Accept": "text/event-stream"}) as raw:
        assert raw.status == 200
        body = raw.read_to_end(timeout=30)  # ends by itself, about 4 s in
        assert raw.complete, body
    assert b"event: connected\n" in body
    assert body.endswith(b"retry: 250\n\n"), body[-200:]
    assert stats(server)["identity_expired"] == 1
    # An identity that has expired already gets no ticket.
    r = httpx.get(f"{server.url}/events/ticket", params={"cid": "user:1", "life": "-1"})
    assert (r.status_code, r.text) == (401, "the identity of this request has expired\n")
    # One worker, no backplane: single use is this process's, and holds.
    ticket = mint(server, "user:2")
    open_stream(server, ticket, clients)
    assert httpx.get(stream_url(server, ticket)).status_code == 401


def test_without_a_backplane_several_workers_are_told_single_use_is_per_worker(
    gunicorn_server: Start, clients: list[SSEClient]
) -> None:
    server = serve(gunicorn_server, workers=2)
    open_stream(server, mint(server, "user:1"), clients)
    wait_for(lambda: "stream tickets are spent in this worker only" in server.log_text(),
             message="the WARNING naming the backplane")
    assert "RedisBackplane" in server.log_text()


def test_a_reconnect_storm_from_one_source_gets_429_and_others_still_connect(
    gunicorn_server: Start, clients: list[SSEClient]
) -> None:
    # One worker: the buckets are per worker (docs/security.md). A token every 100 s:
    # none comes back while the test runs, however slowly.
    server = serve(gunicorn_server, SSE_RATE="0.01", SSE_BURST="3")
    storm = {"X-Forwarded-For": "203.0.113.9"}
    for i in range(3):
        open_stream(server, mint(server, f"storm:{i}"), clients, **storm)
    answers = [httpx.get(stream_url(server, mint(server, "storm:x")), headers=storm,
                         timeout=10) for _ in range(5)]
    for answer in answers:
        assert answer.status_code == 429, answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 100
        assert answer.text == "too many stream requests from this source; retry later\n"
    # Every other source still gets in, storm or not.
    for i in range(5):
        open_stream(server, mint(server, f"calm:{i}"), clients,
                    **{"X-Forwarded-For": f"198.51.100.{i}"})
    s = stats(server)
    assert (s["rate_limited"], s["clients"]) == (5, 8), s


@pytest.mark.redis
@pytest.mark.browser
def test_the_browser_resumes_with_fresh_tickets_across_expiries_and_a_restart(
    gunicorn_server: Start, redis_server: Callable[[], RedisServer],
    browser: Callable[[], Browser],
) -> None:
    redis = redis_server()
    env = {"SSE_REDIS_URL": redis.url, "SSE_RETRY": "200"}
    first = serve(gunicorn_server, **env)
    page = browser()
    # Each identity lives 2 s: the stream ends and the page comes back for a ticket.
    page.open(f"{first.url}/page?cid=user:1&life=2")
    page.wait_js("window.seen.some((e) => e.type === 'connected')", timeout=30,
                 what="the first stream")
    # A publisher with no hub, straight into Redis: it goes on while no server runs.
    backplane = RedisBackplane(redis.url)
    published: list[str] = []
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.wait(0.05):
            backplane.broadcast_to_pattern("user:1", f"event {n}")
            published.append(f"event {n}")
            n += 1

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        page.wait_js("window.seen.filter((e) => e.type === 'connected').length >= 3",
                     timeout=60, what="two identity expiries and reconnects")
        assert stats(first)["identity_expired"] >= 2
        first.terminate(timeout=30)
        down_from = len(published)
        second = gunicorn_server(APP, worker_class=WORKER_CLASS, threads=16, graceful_timeout=10,
                                 env=env, extra_args=["-b", f"{first.host}:{first.port}"])
        down_to = len(published)
        page.wait_js("window.seen.filter((e) => e.type === 'connected').length >= 5",
                     timeout=60, what="reconnects to the new server")
    finally:
        stop.set()
        publisher.join(10)
        backplane.close()
    total = len(published)
    page.wait_js(f"window.seen.filter((e) => e.type === 'message').length >= {total}",
                 timeout=30, what=f"all {total} events")
    seen = page.js("return window.seen")
    assert [e["data"] for e in seen if e["type"] == "message"] == published  # once, in order
    assert [e for e in seen if e["type"] == "reset"] == []
    assert down_to > down_from  # events were published while no server ran, and arrived
    tickets = page.js("return window.tickets")
    connects = [e for e in seen if e["type"] == "connected"]
    assert len(set(tickets)) == len(tickets) >= len(connects)  # a fresh ticket each time
    for ticket in tickets:
        assert ticket not in first.log_text() and ticket not in second.log_text()
