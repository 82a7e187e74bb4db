"""The Redis backplane for real: gunicorn gthread workers, a real redis-server
(killed and restarted), httpx-sse clients and a publisher process with no hub."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from sse_kit.redis import RedisBackplane
from tests._live import GunicornServer, RawStream, RedisServer, wait_for
from tests._sseclient import SSEClient

pytestmark = [pytest.mark.live, pytest.mark.redis]

APP = "tests.live.apps:create_app()"
CONF = "tests/live/gunicorn_conf.py"
StartGunicorn = Callable[..., GunicornServer]


@pytest.fixture
def server(redis_server: Callable[[], RedisServer]) -> RedisServer:
    return redis_server()


def readers(server: RedisServer) -> int:
    """How many hub readers are connected to *server* (named sse_kit:reader)."""
    with redis.Redis(host=server.host, port=server.port) as admin:
        return sum(c["name"] == "sse_kit:reader" for c in admin.client_list())


def start(gunicorn_server: StartGunicorn, server: RedisServer, *, workers: int = 1,
          extra_args: tuple[str, ...] = (), **env: str) -> GunicornServer:
    """A gunicorn server whose every worker follows *server*'s stream."""
    env = {"SSE_REDIS_URL": server.url, "SSE_META_PID": "1", **env}
    expected = readers(server) + workers
    app = gunicorn_server(APP, config=CONF, threads=48, workers=workers, graceful_timeout=5,
                          env=env, extra_args=extra_args)
    app.wait_for_workers()
    wait_for(lambda: readers(server) == expected, message=f"{expected} readers connected")
    return app


def connect(app: GunicornServer, cid: str, opened: list[SSEClient],
            last_event_id: str | None = None) -> tuple[SSEClient, int, str]:
    """Open a stream; return it, the pid of the worker serving it, and its position."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else None
    client = SSEClient(f"{app.url}/events/?cid={cid}", headers=headers)
    opened.append(client)
    assert client.status == 200
    (connected,) = client.take(1, event="connected")
    return client, json.loads(connected.data)["metadata"]["pid"], connected.id


def publish(app: GunicornServer, pattern: str, *datas: Any) -> httpx.Response:
    return httpx.post(f"{app.url}/publish", json={"pattern": pattern, "datas": list(datas)},
                      timeout=10)


def datas(client: SSEClient, n: int) -> list[str]:
    return [ev.data for ev in client.take(n)]


def test_every_worker_delivers_every_broadcast_from_any_worker_or_process(
    gunicorn_server: StartGunicorn, server: RedisServer, clients: list[SSEClient]
) -> None:
    app = start(gunicorn_server, server, workers=3)
    pids = {connect(app, f"user:{i}", clients)[1] for i in range(30)}
    assert len(pids) >= 2, f"all 30 streams landed on one worker: {pids}"
    r = publish(app, "user:*", "from a worker")
    assert r.status_code == 200, r.text
    # A plain Python process with no hub publishes through the same stream.
    out = subprocess.run(
        [sys.executable, "-m", "sse_kit", "publish", "--redis", server.url, "user:*",
         "from a script", "--event", "message"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    for client in clients:
        first, second = client.take(2)
        assert (first.data, second.data) == ("from a worker", "from a script")
        assert second.id == out  # the stream entry ID, the same on every worker


def test_a_backplane_built_before_fork_connects_in_each_worker(
    gunicorn_server: StartGunicorn, server: RedisServer, clients: list[SSEClient]
) -> None:
    # --preload builds the app, hub and backplane in the master; start() waits for one
    # reader connection per worker, made by each worker after the fork.
    app = start(gunicorn_server, server, workers=2, extra_args=("--preload",))
    for i in range(8):
        connect(app, f"user:{i}", clients)
    assert publish(app, "user:*", "hello").status_code == 200
    for client in clients:
        assert datas(client, 1) == ["hello"]


@pytest.mark.parametrize("history", ["1000", "0"], ids=["ring", "stream"])
def test_resume_on_another_worker_receives_exactly_what_was_missed(
    gunicorn_server: StartGunicorn, server: RedisServer, clients: list[SSEClient],
    history: str,
) -> None:
    # Two gunicorn servers following one stream: the resume surely lands on
    # another process, one whose history ring may (or may not) hold the events.
    first_app = start(gunicorn_server, server)
    other_app = start(gunicorn_server, server, SSE_HISTORY=history)
    client, first_pid, _ = connect(first_app, "user:1", clients)
    assert publish(first_app, "user:1", "seen").status_code == 200
    (seen,) = client.take(1)
    client.close()
    for i in range(5):
        assert publish(first_app, "user:*" if i % 2 else "user:1", f"missed {i}").status_code == 200
        assert publish(first_app, "user:2", "not for user:1").status_code == 200
    again, other_pid, position = connect(other_app, "user:1", clients, last_event_id=seen.id)
    assert other_pid != first_pid and position == seen.id
    assert datas(again, 5) == [f"missed {i}" for i in range(5)]
    assert publish(other_app, "user:1", "live").status_code == 200
    assert datas(again, 1) == ["live"]  # and nothing in between: no duplicate


def test_redis_killed_and_restarted_empty(
    gunicorn_server: StartGunicorn, server: RedisServer, clients: list[SSEClient]
) -> None:
    app = start(gunicorn_server, server, workers=2, SSE_KEEPALIVE="0.3")
    for i in range(6):
        connect(app, f"user:{i}", clients)
    assert publish(app, "user:*", "before").status_code == 200
    for client in clients:
        assert datas(client, 1) == ["before"]
    with RawStream(app.host, app.port, "/events/?cid=raw") as raw:
        raw.read_until(b"\n\n")
        server.kill()
        for _ in range(4):  # whichever worker takes it: 503, at once, not a hang
            r = publish(app, "user:*", "during")
            assert r.status_code == 503 and "unreachable" in r.json()["error"]
        # Streams stay open: keep-alives go on while Redis is away.
        after_kill = len(raw.body)
        raw.read_until(lambda body: body[after_kill:].count(b": keepalive") >= 2)
        assert not raw.eof
    server.start()  # an empty Redis on the same port: the stream is gone
    for client in clients:
        (reset,) = client.take(1, event="reset")
        assert json.loads(reset.data)["reason"] == "lost"
    wait_for(lambda: publish(app, "user:*", "after").status_code == 200,
             message="a publish to succeed after the restart")
    for client in clients:
        assert datas(client, 1) == ["after"]


def test_nothing_published_to_a_surviving_stream_is_lost(
    gunicorn_server: StartGunicorn, server: RedisServer, clients: list[SSEClient]
) -> None:
    app = start(gunicorn_server, server, workers=2)
    for i in range(6):
        connect(app, f"user:{i}", clients)
    admin = redis.Redis(host=server.host, port=server.port, single_connection_client=True)
    try:
        # Every worker's reader is cut off and cannot log in again...
        admin.config_set("requirepass", "secret")
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 2  # readers at least
        wait_for(lambda: app.log_text().count("lost the stream") >= 2,
                 message="both workers' readers to notice")
        # ...while another process publishes to the stream.
        with RedisBackplane(f"redis://:secret@{server.host}:{server.port}/0") as publisher:
            publisher.broadcast_many([("user:*", f"event {i}") for i in range(20)])
        admin.config_set("requirepass", "")
    finally:
        admin.close()
    wait_for(lambda: app.log_text().count("reconnected to the stream") >= 2,
             message="both workers' readers to reconnect")
    for client in clients:
        assert datas(client, 20) == [f"event {i}" for i in range(20)]
    assert publish(app, "user:*", "live").status_code == 200
    for client in clients:
        assert datas(client, 1) == ["live"]  # no duplicate, no reset in between


def test_a_stream_that_survives_a_kill_loses_nothing(
    redis_server: Callable[..., RedisServer], gunicorn_server: StartGunicorn,
    clients: list[SSEClient],
) -> None:
    # Redis with an append-only file, fsynced on every write: SIGKILL keeps the stream.
    server = redis_server(extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    app = start(gunicorn_server, server, workers=2, SSE_HISTORY="0")  # resumes read Redis
    online, _, _ = connect(app, "user:1", clients)
    offline, _, _ = connect(app, "user:2", clients)
    assert publish(app, "user:*", "0").status_code == 200
    assert datas(online, 1) == ["0"]
    (last_seen,) = offline.take(1)
    offline.close()  # this browser is away while the next events are published
    for i in range(1, 6):
        assert publish(app, "user:*", str(i)).status_code == 200
    assert datas(online, 5) == ["1", "2", "3", "4", "5"]
    server.restart()  # SIGKILL, then the same port and directory: the stream is reloaded
    wait_for(lambda: publish(app, "user:*", "6").status_code == 200,
             message="a publish to succeed after the restart")
    assert [(ev.event, ev.data) for ev in online.take(1, event=None)] == [("message", "6")]
    back, _, _ = connect(app, "user:2", clients, last_event_id=last_seen.id)
    assert datas(back, 6) == ["1", "2", "3", "4", "5", "6"]
