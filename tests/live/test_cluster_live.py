"""One identity across the cluster, for real: two gunicorn masters (two "hosts"),
three sse_kit ThreadWorker workers each, one redis-server; logout with
disconnect(), max_clients_per_id across workers and hosts, presence, and what a
SIGKILLed worker leaves behind (it lapses within presence_ttl)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from httpx_sse import ServerSentEvent

from tests._live import GunicornServer, RedisServer, process_alive, wait_for
from tests._sseclient import SSEClient
from tests.live._helpers import APP, CONF, WORKER_CLASS

pytestmark = [pytest.mark.live, pytest.mark.redis]

StartGunicorn = Callable[..., GunicornServer]
TTL = 2.0  # presence_ttl of every worker here: a killed worker lapses this long after its last beat
# Generous: on a busy 2-core machine a worker may beat late; what must hold is
# that the slot comes back, not how fast.
LAPSE_DEADLINE = 30.0


@pytest.fixture
def cluster(
    redis_server: Callable[..., RedisServer], gunicorn_server: StartGunicorn
) -> tuple[GunicornServer, GunicornServer]:
    """Two gunicorn masters, 3 workers each, following one Redis: six hubs."""
    server = redis_server()
    env = {"SSE_REDIS_URL": server.url, "SSE_META_PID": "1", "SSE_PER_ID": "2",
           "SSE_PRESENCE_TTL": str(TTL), "SSE_PRESENCE_EVENTS": "watch:*"}
    hosts = tuple(
        gunicorn_server(APP, config=CONF, threads=16, workers=3, graceful_timeout=5, env=env,
                        worker_class=WORKER_CLASS)
        for _ in range(2))
    for host in hosts:
        host.wait_for_workers()
    with redis.Redis(host=server.host, port=server.port) as admin:
        wait_for(lambda: sum(c["name"] == "sse_kit:reader" for c in admin.client_list()) == 6,
                 timeout=30, message="six hub readers connected")
    return hosts[0], hosts[1]


def connect(host: GunicornServer, cid: str, opened: list[SSEClient]) -> tuple[SSEClient, int]:
    """Open a stream; return it and the pid of the worker serving it."""
    client = SSEClient(f"{host.url}/events/?cid={cid}")
    opened.append(client)
    assert client.status == 200, client.status
    (connected,) = client.take(1, event="connected")
    return client, json.loads(connected.data)["metadata"]["pid"]


def refused(host: GunicornServer, cid: str) -> httpx.Response:
    """A stream request that must be answered at once (a refusal), not streamed."""
    return httpx.get(f"{host.url}/events/?cid={cid}", headers={"Accept": "text/event-stream"},
                     timeout=10)


def publish(host: GunicornServer, pattern: str, *datas: Any) -> None:
    r = httpx.post(f"{host.url}/publish", json={"pattern": pattern, "datas": list(datas)},
                   timeout=10)
    assert r.status_code == 200, r.text


def presence(host: GunicornServer, pattern: str = "*") -> dict[str, int]:
    r = httpx.get(f"{host.url}/presence", params={"pattern": pattern}, timeout=10)
    assert r.status_code == 200, r.text
    result: dict[str, int] = r.json()
    return result


def until_end(client: SSEClient) -> list[ServerSentEvent]:
    """Every event the stream still carries, once it has ended (fails if it does not)."""
    events = []
    while True:
        try:
            events.append(client.next(timeout=30))
        except EOFError:
            return events


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), message=f"worker {pid} to die")


def test_disconnect_from_one_worker_ends_every_matching_stream_on_both_hosts_in_order(
    cluster: tuple[GunicornServer, GunicornServer], clients: list[SSEClient]
) -> None:
    one, two = cluster
    # Streams until every one of the six workers holds some (which worker takes a
    # connection is the kernel's choice): 30 at least, 300 at most.
    streams: list[tuple[SSEClient, int]] = []
    pids: set[int] = set()
    while len(streams) < 30 or (len(pids) < 6 and len(streams) < 300):
        streams.append(connect(one if len(streams) % 2 else two, f"d:{len(streams)}", clients))
        pids.add(streams[-1][1])
    assert len(pids) == 6, f"{len(streams)} streams landed on {len(pids)} workers only"
    bystander, _ = connect(one, "other:1", clients)
    publish(two, "d:*", "before")
    asked = time.monotonic()
    r = httpx.post(f"{one.url}/disconnect", json={"pattern": "d:*"}, timeout=30)
    assert r.status_code == 200, r.text
    # Published right after disconnect() returned, from another host.
    publish(two, "*", "after")
    for client, pid in streams:
        assert [ev.data for ev in until_end(client) if ev.event == "message"] == ["before"], pid
    print(f"disconnect ended {len(streams)} streams on 6 workers of 2 hosts within "
          f"{time.monotonic() - asked:.3f}s of the request")
    # The worker that wrote the entry counted its own streams (all ended).
    on_that_worker = sum(pid == r.json()["pid"] for _, pid in streams)
    assert r.json()["ended"] == on_that_worker
    # A stream the pattern did not match goes on, and got the event.
    assert [ev.data for ev in bystander.take(1)] == ["after"]
    assert presence(two, "d:*") == {}


def test_max_clients_per_id_holds_across_workers_and_hosts_and_a_killed_workers_slots_lapse(
    cluster: tuple[GunicornServer, GunicornServer], clients: list[SSEClient]
) -> None:
    one, two = cluster
    _, first_pid = connect(one, "u:1", clients)
    connect(two, "u:1", clients)
    for host in (one, two):  # the third lands on another worker (or host) than one of them
        r = refused(host, "u:1")
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert "across the cluster" in r.text
    assert presence(one, "u:1") == {"u:1": 2}
    kill(first_pid)  # no clean stop: its slot is held until its roster entry lapses
    killed = time.monotonic()

    wait_for(lambda: presence(two, "u:1") == {"u:1": 1}, timeout=LAPSE_DEADLINE,
             message=lambda: f"the killed worker's slot to lapse: {presence(two, 'u:1')}")
    lapsed = time.monotonic() - killed
    connect(two, "u:1", clients)  # the slot is back
    assert refused(one, "u:1").status_code == 429  # and the limit holds again
    print(f"a SIGKILLed worker's slot came back {lapsed:.2f}s after the kill (ttl {TTL}s)")


def test_presence_lists_the_connected_set_across_hosts_and_forgets_a_killed_worker(
    cluster: tuple[GunicornServer, GunicornServer], clients: list[SSEClient]
) -> None:
    one, two = cluster
    watcher, _ = connect(one, "watch:1", clients)
    opened = {(cid, host.port): connect(host, cid, clients)
              for cid, host in (("p:a", one), ("p:a", two), ("p:b", one), ("p:c", two))}
    expected = {"p:a": 2, "p:b": 1, "p:c": 1}
    for host in (one, two):
        assert presence(host, "p:*") == expected
        assert presence(host, "p:a") == {"p:a": 2}
    assert presence(one) == {**expected, "watch:1": 1}
    opened.pop(("p:b", one.port))[0].close()
    wait_for(lambda: presence(two, "p:*") == {"p:a": 2, "p:c": 1}, timeout=LAPSE_DEADLINE,
             message=lambda: f"p:b to leave: {presence(two, 'p:*')}")
    c_pid = opened[("p:c", two.port)][1]
    survivors: dict[str, int] = {}
    for (cid, _), (_, pid) in opened.items():
        if pid != c_pid:
            survivors[cid] = survivors.get(cid, 0) + 1
    killed = time.monotonic()
    kill(c_pid)
    wait_for(lambda: presence(one, "p:*") == survivors, timeout=LAPSE_DEADLINE,
             message=lambda: f"the killed worker's streams to lapse: {presence(one, 'p:*')}")
    print(f"a SIGKILLed worker's client left presence {time.monotonic() - killed:.2f}s after "
          f"the kill (ttl {TTL}s)")
    # Join and leave events, cluster-wide: p:a joined once (its second stream is no
    # join), p:b left when its stream closed, p:c when a live worker reaped the dead one.
    seen = [json.loads(ev.data) for ev in watcher.take(5, event="presence")]
    assert sorted((e["client_id"], e["state"]) for e in seen) == [
        ("p:a", "join"), ("p:b", "join"), ("p:b", "leave"), ("p:c", "join"), ("p:c", "leave")]
    assert seen.index({"client_id": "p:b", "state": "join"}) < seen.index(
        {"client_id": "p:b", "state": "leave"})
