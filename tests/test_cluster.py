"""Hubs following one real redis-server (no gunicorn): control entries, the
roster behind max_clients_per_id and presence, and what happens when Redis is
lost. The same across processes and hosts: tests/live/test_cluster_live.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

from sse_kit import EVENT_TYPE_PRESENCE, BackplaneUnavailable, Hub, serve_sse
from sse_kit._redis_roster import _admission, _beat, _count, _counts
from tests._live import RedisServer, wait_for
from tests._streams import Reader, environ

pytestmark = pytest.mark.redis


@pytest.fixture
def server(redis_server: Callable[[], RedisServer]) -> RedisServer:
    return redis_server()


@pytest.fixture
def hubs(redis_hubs: Callable[..., Hub]) -> Callable[..., Hub]:
    """Factory: a started hub on the test server's stream, quick to notice a loss."""

    def make(**options: object) -> Hub:
        return redis_hubs(bp={"timeout": 0.5, "reconnect_max": 0.2},
                          **{"presence_ttl": 1.0, **options})

    return make


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    opened: list[Reader] = []
    yield opened
    for reader in opened:
        reader.close()


def roster_keys(server: RedisServer) -> list[bytes]:
    with redis.Redis(host=server.host, port=server.port) as admin:
        return sorted(admin.keys("sse_kit:roster*"))


def test_disconnect_ends_matching_streams_on_every_hub_between_events(
    hubs: Callable[..., Hub], readers: list[Reader]
) -> None:
    a, b = hubs(), hubs()
    here, there, bystander = Reader(a, "user:1"), Reader(b, "user:2"), Reader(b, "room:7")
    readers += [here, there, bystander]
    a.broadcast_to_pattern("*", "before")
    assert a.disconnect("user:*") == 1  # the stream on this hub; b's is ended by b
    b.broadcast_to_pattern("*", "after")
    for reader in (here, there):
        assert [ev.data for ev in reader.rest() if ev.event == "message"] == ["before"]
    assert [ev.data for ev in bystander.take(2, event="message")] == ["before", "after"]
    wait_for(lambda: b.stats()["kicked"] == 1, message="b to count its kick")
    assert a.stats()["kicked"] == 1


def test_disconnect_and_presence_raise_when_redis_cannot_be_reached(
    hubs: Callable[..., Hub], server: RedisServer, readers: list[Reader]
) -> None:
    hub = hubs()
    reader = Reader(hub, "user:1")
    readers.append(reader)
    server.kill()
    with pytest.raises(BackplaneUnavailable):
        hub.disconnect("user:*")
    assert not reader.ended(timeout=0.2)  # never a silent local-only logout
    assert hub.get_client_count() == 1
    with pytest.raises(BackplaneUnavailable):
        hub.presence()  # never this worker's part passed off as the cluster's


def test_max_clients_per_id_counts_the_streams_of_every_hub(
    hubs: Callable[..., Hub], readers: list[Reader]
) -> None:
    a, b = hubs(max_clients_per_id=2), hubs(max_clients_per_id=2)
    readers += [Reader(a, "user:1"), Reader(b, "user:1")]
    refusal = serve_sse(a, environ(), "user:1")
    assert refusal.status_code == 429
    assert int(refusal.headers["Retry-After"]) >= 1
    assert "across the cluster" in refusal.get_data(as_text=True)
    assert a.stats()["refused_per_id"] == 1
    readers.pop().close()  # b's stream ends: its slot is free, for a as well
    wait_for(lambda: a.presence("user:1") == {"user:1": 1}, message="b's stream to leave")
    readers.append(Reader(a, "user:1"))
    assert a.presence() == {"user:1": 2}


def test_presence_across_hubs_and_a_clean_stop_leaves_at_once(
    hubs: Callable[..., Hub], server: RedisServer, readers: list[Reader]
) -> None:
    a, b = hubs(), hubs()
    readers += [Reader(a, "user:1"), Reader(b, "user:1"), Reader(b, "user:2"),
                Reader(a, "room:7")]
    for hub in (a, b):
        assert hub.presence() == {"room:7": 1, "user:1": 2, "user:2": 1}
        assert hub.presence("user:*") == {"user:1": 2, "user:2": 1}
        assert hub.presence("user:2") == {"user:2": 1}
    assert a.get_client_ids() == ["room:7", "user:1"]  # this hub's own
    b.stop()
    assert a.presence() == {"room:7": 1, "user:1": 1}  # at once: no TTL to wait out
    a.stop()
    assert roster_keys(server) == []  # nothing left behind


def test_join_and_leave_are_announced_once_for_the_whole_cluster(
    hubs: Callable[..., Hub], readers: list[Reader]
) -> None:
    def route(client_id: str) -> str | None:
        return None if client_id.startswith("watch:") else "watch:*"

    a, b = hubs(presence_events=route), hubs(presence_events=route)
    watcher = Reader(a, "watch:1")
    first = Reader(a, "user:1")
    second = Reader(b, "user:1")
    readers += [watcher, first, second]
    first.close()
    second.close()
    events = [json.loads(ev.data) for ev in watcher.take(2, event=EVENT_TYPE_PRESENCE)]
    assert events == [{"client_id": "user:1", "state": "join"},
                      {"client_id": "user:1", "state": "leave"}]


def test_while_redis_is_lost_streams_are_admitted_and_the_roster_is_rewritten_after(
    hubs: Callable[..., Hub], server: RedisServer, readers: list[Reader]
) -> None:
    hub = hubs(max_clients_per_id=2)
    readers.append(Reader(hub, "user:1"))
    server.kill()
    readers.append(Reader(hub, "user:1"))  # admitted on this hub's own count
    wait_for(lambda: hub.stats()["cluster_errors"] >= 1, message="the failure to be counted")
    refusal = serve_sse(hub, environ(), "user:1")  # the per-worker limit still holds
    assert refusal.status_code == 429
    server.restart()  # empty: the roster is gone with it
    wait_for(lambda: hub.presence() == {"user:1": 2}, timeout=30,
             message="the roster to be rewritten from this hub's count")


@pytest.mark.parametrize(
    ("parse", "reply"),
    [(_admission, [1]), (_admission, 7), (_count, [1, 2]), (_count, b"OK"), (_beat, 3),
     (_counts, [b"user:1"])],
)
def test_a_roster_reply_of_another_shape_is_refused(parse: Callable[[object], object],
                                                     reply: object) -> None:
    # After a timeout a pooled connection may hold another command's reply; read
    # as this one's it must fail (and the connections are dropped), not count wrong.
    with pytest.raises((TypeError, ValueError)):
        parse(reply)
