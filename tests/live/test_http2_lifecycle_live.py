"""How an HTTP/2 connection served by sse_kit's worker class begins and ends
besides the usual: a worker that leaves at ``max_requests`` (no signal: the
worker decides after a request), and cleartext HTTP/2 reached through an
HTTP/1.1 ``Upgrade: h2c``. Real gunicorn, a client on the ``h2`` package.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests._live import wait_for
from tests.live._h2client import H2Client
from tests.live._helpers import APP, WORKER_CLASS, Start
from tests.live.test_http2_live import datas, h1_client, serve_h2

pytestmark = pytest.mark.live


def test_max_requests_ends_the_streams_cleanly_then_goaway_and_a_new_worker_serves(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    server = serve_h2(gunicorn_server, certificate, extra=("--max-requests", "6"))
    [first] = server.wait_for_workers(1)
    with H2Client(server.host, server.port) as h2c:
        streams = h2c.open_streams("retire", 3)  # requests 1-3
        gets = [h2c.get("/healthz") for _ in range(3)]  # 4-6: the last one retires it
        h2c.pump(lambda: h2c.goaway is not None or h2c.closed)
        assert all(h2c.status[g] == "200" and h2c.body[g] == b"ok" for g in gets)
        for s in streams:
            assert s in h2c.ended and s not in h2c.reset  # a clean END_STREAM
            assert b"retry: " in h2c.body[s].split(b"event: connected")[-1]
        assert h2c.goaway is not None and h2c.goaway.error_code == 0
    wait_for(lambda: server.worker_pids() not in ([], [first]), timeout=30,
             message="a new worker")
    with h1_client(server) as other, H2Client(server.host, server.port) as h2c:
        assert other.get("/healthz").status_code == 200  # the new worker has loaded the app
        [stream] = h2c.open_streams("again", 1)
        other.post("/publish", json={"pattern": "again:*", "data": "new worker"})
        h2c.pump(lambda: datas(h2c.body[stream]) == ["new worker"])
    assert "Autorestarting worker after current request." in server.log_text()


@pytest.mark.parametrize("first", ["/healthz", "/events/?cid=up:first"])
def test_an_h2c_upgrade_is_served_concurrently_after_its_first_request(
    gunicorn_server: Start, first: str
) -> None:
    server = gunicorn_server(APP, threads=2, worker_class=WORKER_CLASS, health_path=None,
                             extra_args=["--http-protocols", "h2,h1",
                                         "--http2-cleartext", "upgrade"])
    with H2Client(server.host, server.port, tls=False, upgrade=first) as h2c:
        if first == "/healthz":
            h2c.pump(lambda: 1 in h2c.ended)
            assert h2c.status[1] == "200" and h2c.body[1] == b"ok"
        else:
            h2c.pump(lambda: b"event: connected" in h2c.body[1])
        streams = h2c.open_streams("up", 3)
        ping = h2c.get("/healthz")
        h2c.pump(lambda: ping in h2c.ended)
        assert h2c.status[ping] == "200"
        httpx.post(f"{server.url}/publish", json={"pattern": "up:*", "data": "hello"})
        h2c.pump(lambda: all(datas(h2c.body[s]) == ["hello"] for s in streams))
        if first != "/healthz":
            h2c.pump(lambda: datas(h2c.body[1]) == ["hello"])
    assert "cannot detach" not in server.log_text()  # the first stream detached too
