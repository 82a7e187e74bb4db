"""RedisBackplane and a Hub following it, against a real redis-server (no gunicorn)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from sse_kit import (
    Backplane,
    BackplaneUnavailable,
    Broadcaster,
    Hub,
    InvalidPattern,
    StreamTickets,
    serve_sse,
)
from sse_kit._backplane import ClaimingBackplane
from sse_kit._commands import AHEAD_MAX_MS
from sse_kit._wire import encode_fields
from sse_kit.redis import RedisBackplane
from tests._decoder import SSEDecoder
from tests._live import LOOPBACK, RedisServer, free_port, wait_for
from tests._streams import Reader, environ

pytestmark = pytest.mark.redis

StartRedis = Callable[[], RedisServer]


@pytest.fixture
def server(redis_server: StartRedis) -> RedisServer:
    return redis_server()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=server.host, port=server.port, single_connection_client=True)
    yield client
    client.close()


@pytest.fixture
def hubs(redis_hubs: Callable[..., Hub]) -> Callable[..., Hub]:
    return redis_hubs


def position(hub: Hub) -> str:
    """The stream position the hub's connected events carry ("" while unknown)."""
    stream_history = hub._core.router.stream_history
    assert stream_history is not None
    return hub._call(lambda: stream_history.last_id, "")


def messages(reader: Reader, n: int) -> list[tuple[str, str]]:
    return [(ev.id, ev.data) for ev in reader.take(n, event="message")]


# -- the package -----------------------------------------------------------------


def test_import_sse_kit_does_not_import_redis() -> None:
    code = "import sys, sse_kit; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sse_kit_redis_without_redis_installed_says_what_to_install() -> None:
    code = "import sys; sys.modules['redis'] = None; import sse_kit.redis"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install 'sse_kit[redis]'" in result.stderr


def test_it_is_a_broadcaster_and_a_backplane() -> None:
    backplane = RedisBackplane("redis://localhost:6379/0")
    assert isinstance(backplane, Broadcaster) and isinstance(backplane, Backplane)


# -- publishing ------------------------------------------------------------------


def test_a_broadcast_is_one_entry_with_the_pattern_and_the_body_encoded_once(
    server: RedisServer, admin: redis.Redis
) -> None:
    with RedisBackplane(server.url) as backplane:
        backplane.broadcast_to_pattern("job:7:*", {"pct": 50}, event="progress")
    (_, genesis), (_, fields) = admin.xrange("sse_kit")
    assert genesis == {b"g": b"1"}  # the stream began with this backplane
    assert fields == {b"p": b"job:7:*", b"b": encode_fields('{"pct":50}', event="progress")}


def test_broadcast_many_is_pipelined_in_order(server: RedisServer, admin: redis.Redis) -> None:
    with RedisBackplane(server.url) as backplane:
        ids = backplane.broadcast_many([("a", "1"), ("b", "2", "note"), ("c", {"n": 3})])
        assert backplane.broadcast_many([]) == []
        with pytest.raises(InvalidPattern):
            backplane.broadcast_many([("ok", "x"), ("", "y")])  # nothing is sent
    rows = admin.xrange("sse_kit")[1:]
    assert [r[0].decode() for r in rows] == ids == sorted(ids, key=lambda i: tuple(
        map(int, i.split("-"))))
    assert [r[1][b"p"] for r in rows] == [b"a", b"b", b"c"]
    assert rows[1][1][b"b"] == b"event: note\ndata: 2\n\n"


def test_maxlen_bounds_the_stream(server: RedisServer, admin: redis.Redis) -> None:
    with RedisBackplane(server.url, maxlen=50) as backplane:
        for _ in range(10):
            backplane.broadcast_many([("x", str(i)) for i in range(100)])
    # Approximate trimming keeps whole nodes (100 entries each by default).
    assert 50 <= admin.xlen("sse_kit") <= 250


def test_bad_input_raises_before_anything_is_sent(server: RedisServer, admin: redis.Redis) -> None:
    with RedisBackplane(server.url) as backplane:
        with pytest.raises(InvalidPattern):
            backplane.broadcast_to_pattern("", "x")
        with pytest.raises(ValueError, match="event"):
            backplane.broadcast_to_pattern("x", "x", event="a\nb")
        with pytest.raises(TypeError):
            backplane.broadcast_to_pattern("x", 5)
    assert admin.exists("sse_kit") == 0


def test_broadcast_while_redis_is_down_raises_backplane_unavailable(server: RedisServer) -> None:
    backplane = RedisBackplane(server.url, timeout=0.5)
    backplane.broadcast_to_pattern("x", "before")
    server.kill()
    with pytest.raises(BackplaneUnavailable, match="unreachable"):
        backplane.broadcast_to_pattern("x", "during")
    server.start()
    backplane.broadcast_to_pattern("x", "after")  # the pool replaces dead connections
    backplane.close()


def test_claim_once_is_first_come_for_every_backplane_and_kept_for_its_ttl(
    server: RedisServer, admin: redis.Redis
) -> None:
    one, other = RedisBackplane(server.url, stream="{app}:sse"), RedisBackplane(server.url,
                                                                              stream="{app}:sse")
    assert isinstance(one, ClaimingBackplane)
    assert one.claim_once("ticket:n1", 30) is True
    assert other.claim_once("ticket:n1", 30) is False  # another worker or host
    assert one.claim_once("ticket:n2", 30) is True
    # Beside the stream's key (one hash slot with a hash tag), and kept no longer than asked.
    assert 0 < admin.pttl("{app}:sse:once:ticket:n1") <= 30_000
    one.close()
    other.close()


def test_a_ticket_that_cannot_be_checked_gets_503(server: RedisServer) -> None:
    tickets = StreamTickets("secret")
    with Hub(backplane=RedisBackplane(server.url, timeout=0.5)) as hub:
        ticket = tickets.mint("user:1")
        server.kill()
        response = serve_sse(hub, environ(f"/events?ticket={ticket}"), tickets=tickets)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.get_data(as_text=True) == (
            "the stream ticket cannot be checked now; retry later\n")
        stats = hub.stats()
        assert stats["tickets_refused"] == 1 and stats["backplane_errors"] >= 1
        with pytest.raises(BackplaneUnavailable):
            tickets.redeem(ticket, backplane=hub.backplane)
        server.start()
        assert tickets.redeem(ticket, backplane=hub.backplane).client_id == "user:1"


# -- hubs following the stream -----------------------------------------------------


def test_every_hub_delivers_every_broadcast_with_the_same_id(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    a, b = hubs(), hubs()
    ra, rb = Reader(a, "user:1"), Reader(b, "user:2")
    ra.next(), rb.next()
    a.broadcast_to_pattern("user:*", "from a")
    with RedisBackplane(server.url) as standalone:  # a process with no hub
        standalone.broadcast_to_pattern("user:2", "from a script")
    b.broadcast_to_pattern("user:1", "from b")
    got_a, got_b = messages(ra, 2), messages(rb, 2)
    assert [d for _, d in got_a] == ["from a", "from b"]
    assert [d for _, d in got_b] == ["from a", "from a script"]
    assert got_a[0][0] == got_b[0][0]  # one ID everywhere: the stream entry's
    assert a.stats()["backplane_published"] == 1
    wait_for(lambda: b.stats()["published"] == 3, message=lambda: f"3 routed: {b.stats()}")


def test_a_hub_routes_its_own_broadcasts_through_the_stream(
    hubs: Callable[..., Hub], admin: redis.Redis
) -> None:
    hub = hubs()
    reader = Reader(hub, "x")
    reader.next()
    hub.broadcast_to_pattern("x", "hello")
    ((event_id, data),) = messages(reader, 1)
    assert data == "hello"
    assert admin.xrevrange("sse_kit", count=1)[0][0].decode() == event_id


def test_the_connected_event_carries_the_stream_position(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    with RedisBackplane(server.url) as standalone:
        last = standalone.broadcast_many([("nobody", "x")])[0]
    hub = hubs()
    connected = Reader(hub, "x").next()
    assert connected.event == "connected" and connected.id == last


def test_burst_larger_than_one_read_arrives_whole_and_in_order(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    hub = hubs(bp={"count": 7}, client_buffer=1000)
    reader = Reader(hub, "x")
    reader.next()
    with RedisBackplane(server.url) as standalone:
        standalone.broadcast_many([("x", str(i)) for i in range(300)])
    assert [d for _, d in messages(reader, 300)] == [str(i) for i in range(300)]


def test_a_hub_reader_ends_with_the_hub(hubs: Callable[..., Hub]) -> None:
    hub = hubs(bp={"block": 0.2})
    assert hub._core.reader is not None
    reader = hub._core.reader
    hub.stop()
    wait_for(lambda: not reader.alive, message="the sse_kit-redis thread to end")  # type: ignore[attr-defined]


# -- resume --------------------------------------------------------------------------


def test_resume_served_by_the_ring(hubs: Callable[..., Hub]) -> None:
    hub = hubs()
    first = Reader(hub, "x")
    first.next()
    hub.broadcast_to_pattern("x", "0")
    ((start, _),) = messages(first, 1)
    for i in range(1, 4):
        hub.broadcast_to_pattern("x", str(i))
    messages(first, 3)
    again = Reader(hub, "x", last_event_id=start)
    assert again.next().id == start  # connected: the position it continues from
    assert [d for _, d in messages(again, 3)] == ["1", "2", "3"]
    assert hub.stats()["replayed"] == 3


def test_resume_on_another_hub_is_read_from_the_stream(hubs: Callable[..., Hub]) -> None:
    a = hubs()
    first = Reader(a, "x")
    first.next()
    for i in range(5):
        a.broadcast_to_pattern("x" if i % 2 == 0 else "y", str(i))
    got = messages(first, 3)
    b = hubs()  # started after the events: its ring holds none of them
    again = Reader(b, "x", last_event_id=got[0][0])
    assert [d for _, d in messages(again, 2)] == ["2", "4"]
    b.broadcast_to_pattern("x", "live")
    assert [d for _, d in messages(again, 1)] == ["live"]
    assert b.stats()["resumed"] == 1 and b.stats()["replayed"] == 2


def until_end(reader: Reader) -> list[str]:
    """The data of every message up to the one that says "end"."""
    out = []
    while (data := reader.take(1, event="message")[0].data) != "end":
        out.append(data)
    return out


@pytest.mark.parametrize("history_size", [0, 1000], ids=["stream", "ring"])
@pytest.mark.parametrize("where", ["same", "other"], ids=["same-hub", "other-hub"])
def test_resume_while_publishing_has_no_gap_and_no_duplicate(
    hubs: Callable[..., Hub], server: RedisServer, history_size: int, where: str
) -> None:
    # A watcher sees the events on one hub; streams resume from IDs it saw, on the
    # same hub or another one (whose reader may be behind or ahead), while a
    # publisher keeps going. history_size=0 reads every resume from Redis.
    watched = hubs(client_buffer=5000)
    target = hubs(history_size=history_size, client_buffer=5000) if where == "other" else watched
    watcher = Reader(watched, "x")
    watcher.next()
    total = 400
    with RedisBackplane(server.url) as standalone:
        def publish() -> None:
            for i in range(total):
                standalone.broadcast_to_pattern("x", str(i))

        publisher = threading.Thread(target=publish)
        publisher.start()
        seen: list[tuple[str, str]] = []
        resumed = []
        for k in (3, 50, 120, 200, 290):
            seen += messages(watcher, k + 1 - len(seen))
            resumed.append((k, Reader(target, "x", last_event_id=seen[k][0])))
        publisher.join()
        standalone.broadcast_to_pattern("x", "end")
    for k, reader in resumed:
        assert [int(d) for d in until_end(reader)] == list(range(k + 1, total))


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [("garbage", "malformed"), ("", "malformed"), ("-1-2", "malformed"),
     ("99999999999999-0", "unknown")],
)
def test_an_id_the_stream_cannot_resume_gets_a_reset(
    hubs: Callable[..., Hub], last_event_id: str, reason: str
) -> None:
    hub = hubs()
    hub.broadcast_to_pattern("x", "one")  # the stream exists
    wait_for(lambda: hub.stats()["published"] == 1)
    reader = Reader(hub, "x", last_event_id=last_event_id)
    connected, reset = reader.next(), reader.next()
    assert connected.event == "connected" and connected.id == position(hub)
    assert reset.event == "reset" and f'"reason":"{reason}"' in reset.data
    assert hub.stats()["resets"] == 1


def test_an_id_trimmed_from_the_stream_gets_a_reset(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    with RedisBackplane(server.url, maxlen=10) as standalone:
        (old,) = standalone.broadcast_many([("x", "old")])
        for _ in range(5):
            standalone.broadcast_many([("x", str(i)) for i in range(100)])
    hub = hubs(history_size=0)
    reader = Reader(hub, "x", last_event_id=old)
    reader.next()
    reset = reader.next()
    assert reset.event == "reset" and '"reason":"expired"' in reset.data


# -- faults ------------------------------------------------------------------------


def test_redis_lost_keeps_streams_open_and_an_empty_restart_resets_them(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    hub = hubs(bp={"timeout": 0.5, "block": 0.2, "reconnect_max": 0.2}, keepalive_interval=0.2)
    reader = Reader(hub, "x")
    reader.next()
    hub.broadcast_to_pattern("x", "before")
    ((before_id, _),) = messages(reader, 1)
    server.kill()
    with pytest.raises(BackplaneUnavailable):
        hub.broadcast_to_pattern("x", "during")
    keepalives = hub.stats()["keepalives"]
    wait_for(lambda: hub.stats()["keepalives"] >= keepalives + 2, message="keep-alives")
    assert not reader.ended(0)
    server.start()  # empty: the stream is gone
    reset = reader.next()
    assert reset.event == "reset" and '"reason":"lost"' in reset.data
    hub.broadcast_to_pattern("x", "after")
    ((_, data),) = messages(reader, 1)
    assert data == "after"
    stats = hub.stats()
    assert stats["backplane_reconnects"] >= 1 and stats["backplane_errors"] >= 2
    assert stats["backplane_gaps"] == 1
    # A browser still holding an ID from the lost stream is told to refetch too.
    late = Reader(hub, "x", last_event_id=before_id)
    late.next()
    assert '"reason":"lost"' in late.next().data


def test_a_reader_cut_off_from_a_surviving_stream_loses_nothing(
    hubs: Callable[..., Hub], server: RedisServer, admin: redis.Redis
) -> None:
    hub = hubs(bp={"block": 0.2, "reconnect_max": 0.2})
    reader = Reader(hub, "x")
    reader.next()
    hub.broadcast_to_pattern("x", "0")
    messages(reader, 1)
    # Lock the reader out: it is disconnected and cannot log in again for a while.
    admin.config_set("requirepass", "secret")
    admin.client_kill_filter(_type="normal", skipme=True)
    errors = hub.stats()["backplane_errors"]
    wait_for(lambda: hub.stats()["backplane_errors"] >= errors + 2, message="failed reconnects")
    url = f"redis://:secret@{server.host}:{server.port}/0"
    with RedisBackplane(url) as standalone:
        standalone.broadcast_many([("x", str(i)) for i in range(1, 21)])
    admin.config_set("requirepass", "")
    assert [d for _, d in messages(reader, 20)] == [str(i) for i in range(1, 21)]
    assert hub.stats()["backplane_reconnects"] >= 1 and hub.stats()["backplane_gaps"] == 0


def test_a_hub_started_while_redis_is_down_catches_up_when_it_comes_back(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    server.kill()
    hub = hubs(bp={"timeout": 0.2, "block": 0.2, "reconnect_max": 0.2})
    reader = Reader(hub, "x")
    assert reader.next().id == ""  # no position to resume from yet
    server.start()
    wait_for(lambda: position(hub), message="the reader to reach Redis")
    hub.broadcast_to_pattern("x", "hello")
    assert [d for _, d in messages(reader, 1)] == ["hello"]


def resume_while_stopped(hubs: Callable[..., Hub], server: RedisServer, ahead_ms: int,
                         ) -> tuple[Hub, Reader, str, Reader, list[Any]]:
    """A hub that delivered one event to ``x``; then, with Redis stopped, a resume
    with an ID *ahead_ms* after it. Returns the hub, the first reader, the event's
    ID, the resumed reader and its first two events (``connected``, ``reset``)."""
    hub = hubs(bp={"timeout": 0.3, "block": 0.3, "reconnect_max": 0.3})
    first = Reader(hub, "x")
    first.next()
    hub.broadcast_to_pattern("x", "one")
    ((seen, _),) = messages(first, 1)
    ahead = f"{int(seen.split('-')[0]) + ahead_ms}-0"
    os.kill(server.pid, signal.SIGSTOP)
    try:
        again = Reader(hub, "x", last_event_id=ahead)
        head = [again.next(), again.next()]
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert head[1].event == "reset" and '"reason":"unavailable"' in head[1].data
    return hub, first, seen, again, head


def test_a_resume_redis_cannot_serve_goes_on_after_an_id_another_reader_gave(
    hubs: Callable[..., Hub], server: RedisServer, admin: redis.Redis,
) -> None:
    # Found by the chaos soak: a browser had an event from a worker whose reader was
    # a few ms ahead, and resumed on this one while Redis was unreachable. Its reset
    # put it at this hub's older position, so its next resume got that event again.
    hub, first, seen, again, (connected, _) = resume_while_stopped(hubs, server, 1)
    ms, seq = (int(part) for part in seen.split("-"))
    assert connected.id == f"{ms + 1}-0"  # what the client had, not this hub's older position
    # An entry at or before that ID reaches this hub's reader only now: the client had it.
    admin.xadd("sse_kit", {"p": "x", "b": b"data: had\n\n"}, id=f"{ms}-{seq + 1}")
    hub.broadcast_to_pattern("x", "new")
    assert [d for _, d in messages(first, 2)] == ["had", "new"]
    assert [d for _, d in messages(again, 1)] == ["new"]


def test_a_resume_redis_cannot_serve_distrusts_an_id_far_ahead(
    hubs: Callable[..., Hub], server: RedisServer,
) -> None:
    hub, _, seen, again, (connected, _) = resume_while_stopped(hubs, server, AHEAD_MAX_MS + 1)
    assert connected.id == seen  # this hub's position
    hub.broadcast_to_pattern("x", "new")
    assert [d for _, d in messages(again, 1)] == ["new"]


# -- the command line ------------------------------------------------------------------


def test_command_line_publish(hubs: Callable[..., Hub], server: RedisServer) -> None:
    hub = hubs()
    reader = Reader(hub, "job:7:a")
    reader.next()
    result = subprocess.run(
        [sys.executable, "-m", "sse_kit", "publish", "--redis", server.url, "job:7:*",
         "50%", "--event", "progress"],
        capture_output=True, text=True, check=True,
    )
    event = reader.next()
    assert (event.event, event.data, event.id) == ("progress", "50%", result.stdout.strip())
    assert f"published to stream 'sse_kit' at {server.url.split('@')[-1]}" in result.stderr


def test_command_line_publish_warns_about_a_stream_nobody_wrote(server: RedisServer) -> None:
    # The docs' mistake: the hubs follow "sse_kit", the publisher names another key.
    argv = [sys.executable, "-m", "sse_kit", "publish", "--redis", server.url,
            "--stream", "jobs", "job:7:*", "done"]
    first = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "warning: stream 'jobs' did not exist before this event" in first.stderr
    assert "check --stream" in first.stderr
    second = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "warning" not in second.stderr and second.stdout.strip() > first.stdout.strip()


def test_command_line_publish_fails_clearly(server: RedisServer) -> None:
    url = server.url
    server.kill()
    result = subprocess.run(
        [sys.executable, "-m", "sse_kit", "publish", "--redis", url, "x", "y"],
        capture_output=True, text=True,
    )
    assert result.returncode == 1 and "unreachable" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "sse_kit", "publish", "--redis", url, "", "y"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "pattern" in result.stderr


def test_slow_clients_resume_from_the_stream_by_default_even_without_local_history() -> None:
    hub = Hub(history_size=0, backplane=RedisBackplane("redis://localhost:6379/0"))
    assert hub.slow_client == "disconnect"


# -- beyond one Redis: the set-ups docs/redis.md describes ---------------------------


def free_port_is(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def follow_and_resume(backplane: RedisBackplane) -> None:
    """A hub on *backplane* delivers, pipelines, and resumes from the stream."""
    with Hub(backplane=backplane, history_size=0) as hub:
        wait_for(lambda: position(hub), message="the reader's first contact")
        reader = Reader(hub, "x")
        reader.next()
        hub.broadcast_to_pattern("x", "one")
        backplane.broadcast_many([("x", "two"), ("y", "not x"), ("x", "three")])
        got = messages(reader, 3)
        assert [d for _, d in got] == ["one", "two", "three"]
        again = Reader(hub, "x", last_event_id=got[0][0])  # read back from the stream
        again.next()
        assert [d for _, d in messages(again, 2)] == ["two", "three"]
    backplane.close()


def watched_master(redis_server: Callable[..., RedisServer]) -> tuple[RedisServer, Any]:
    """A master, and a redis-py ``Sentinel`` client of one Sentinel that knows it
    (as ``mymaster``)."""
    from redis.sentinel import MasterNotFoundError, Sentinel

    master = redis_server()
    monitor = redis_server(config=[f"sentinel monitor mymaster {master.host} {master.port} 1"],
                           extra_args=["--sentinel"])
    sentinel = Sentinel([(monitor.host, monitor.port)], socket_timeout=0.5)

    def found() -> bool:
        try:
            return sentinel.discover_master("mymaster") == (master.host, master.port)
        except MasterNotFoundError:
            return False

    wait_for(found, message="the sentinel to know its master")
    return master, sentinel


def test_through_sentinel(redis_server: Callable[..., RedisServer]) -> None:
    _, sentinel = watched_master(redis_server)
    follow_and_resume(RedisBackplane(lambda **kw: sentinel.master_for("mymaster", **kw),
                                     stream="myapp:sse"))


def test_a_publish_after_a_timeout_through_sentinel_is_its_own(
    redis_server: Callable[..., RedisServer],
) -> None:
    # A stalled master makes a publish time out. redis-py's Sentinel connection
    # then keeps the unread reply; a publish that reused it read the previous
    # command's reply: it reported success with another event's ID while its
    # own event was never added (found by the chaos soak).
    master, sentinel = watched_master(redis_server)
    backplane = RedisBackplane(lambda **kw: sentinel.master_for("mymaster", **kw),
                               stream="t", timeout=0.5)
    ids = [backplane.publish("*", b"data: 1\n\n")]
    os.kill(master.pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackplaneUnavailable, match="unreachable"):
            backplane.publish("*", b"data: 2\n\n")
    finally:
        os.kill(master.pid, signal.SIGCONT)
    ids += [backplane.publish("*", f"data: {n}\n\n".encode()) for n in (3, 4)]
    stream = {entry_id.decode(): fields[b"b"] for entry_id, fields
              in redis.Redis.from_url(master.url).xrange("t") if b"b" in fields}
    # Each returned ID holds the event that was published with it.
    assert [stream[i] for i in ids] == [b"data: 1\n\n", b"data: 3\n\n", b"data: 4\n\n"]
    backplane.close()


def sentinel_address(sentinel: Any) -> str:
    """``host:port`` of the (first) Sentinel a redis-py ``Sentinel`` client asks."""
    options = sentinel.sentinels[0].connection_pool.connection_kwargs
    return f"{options['host']}:{options['port']}"


def test_command_line_publish_through_sentinel(redis_server: Callable[..., RedisServer]) -> None:
    master, sentinel = watched_master(redis_server)
    monitor = sentinel_address(sentinel)
    hub = Hub(backplane=RedisBackplane(master.url, stream="jobs"), keepalive_interval=30).start()
    try:
        reader = Reader(hub, "job:7:a")
        reader.next()
        result = subprocess.run(
            [sys.executable, "-m", "sse_kit", "publish", "--sentinel", f"{monitor},{monitor}",
             "--master", "mymaster", "--stream", "jobs", "job:7:*", "done"],
            capture_output=True, text=True, check=True,
        )
        event = reader.next()
        assert (event.data, event.id) == ("done", result.stdout.strip())
        assert f"at master 'mymaster' via Sentinel {monitor}" in result.stderr
    finally:
        hub.stop()
        assert hub.backplane is not None
        hub.backplane.close()


@pytest.mark.parametrize(("spec", "master", "status", "says"), [
    ("localhost", "mymaster", 2, "--sentinel must be host:port"),
    ("{monitor}", "nobody", 1, "unreachable"),
])
def test_command_line_publish_through_sentinel_fails_clearly(
    redis_server: Callable[..., RedisServer], spec: str, master: str, status: int, says: str,
) -> None:
    _, sentinel = watched_master(redis_server)
    monitor = sentinel_address(sentinel)
    result = subprocess.run(
        [sys.executable, "-m", "sse_kit", "publish", "--sentinel", spec.format(monitor=monitor),
         "--master", master, "x", "y"],
        capture_output=True, text=True,
    )
    assert result.returncode == status and says in result.stderr, result.stderr


def test_through_a_cluster_with_a_hash_tagged_key(redis_server: Callable[..., RedisServer]) -> None:
    from redis.cluster import RedisCluster

    def cluster_port() -> int:
        # The cluster bus listens on port + 10000 (Redis 6.2 cannot move it).
        port = free_port()
        return port if port <= 55535 and free_port_is(port + 10000) else 0

    node = redis_server(extra_args=["--cluster-enabled", "yes",
                                    "--cluster-config-file", "nodes.conf"],
                        port=wait_for(cluster_port, message="a port for a cluster node"))
    with redis.Redis(host=node.host, port=node.port) as admin:
        admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
        wait_for(lambda: b"cluster_state:ok" in admin.execute_command("CLUSTER", "INFO",
                                                                    NEVER_DECODE=True),
                 message="the one-node cluster to be up")
    follow_and_resume(RedisBackplane(
        lambda **kw: RedisCluster(host=node.host, port=node.port, **kw), stream="{myapp}:sse"))


def test_a_slow_client_cut_off_resumes_from_the_stream(
    hubs: Callable[..., Hub], server: RedisServer
) -> None:
    hub = hubs(history_size=0, client_buffer=5)
    response = serve_sse(hub, environ(), "x")
    body = iter(response.response)
    decoder = SSEDecoder()
    decoder.feed(next(body))  # connected; then the stream is not read for a while
    with RedisBackplane(server.url) as standalone:
        standalone.broadcast_many([("x", str(i)) for i in range(50)])
    wait_for(lambda: hub.stats()["slow_disconnects"] == 1, message="the slow client to be cut")
    got = [ev for chunk in body for ev in decoder.feed(chunk)]  # what was queued, then the end
    assert [ev.data for ev in got] == [str(i) for i in range(5)]
    response.response.close()  # type: ignore[attr-defined]
    again = Reader(hub, "x", last_event_id=got[-1].id)
    assert [d for _, d in messages(again, 45)] == [str(i) for i in range(5, 50)]


def test_resumes_while_redis_is_down(hubs: Callable[..., Hub], server: RedisServer) -> None:
    cached = hubs(bp={"timeout": 0.5})
    uncached = hubs(bp={"timeout": 0.5}, history_size=0)
    readers = [Reader(cached, "x"), Reader(uncached, "x")]
    for reader in readers:
        reader.next()
    cached.broadcast_to_pattern("x", "1")
    cached.broadcast_to_pattern("x", "2")
    (first, _), _ = messages(readers[0], 2)
    messages(readers[1], 2)
    server.kill()
    served = Reader(cached, "x", last_event_id=first)  # the ring covers it: no Redis needed
    served.next()
    assert [d for _, d in messages(served, 1)] == ["2"]
    refused = Reader(uncached, "x", last_event_id=first)  # only Redis could: reset, no hang
    refused.next()
    reset = refused.next()
    assert reset.event == "reset" and '"reason":"unavailable"' in reset.data
