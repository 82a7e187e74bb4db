"""HTTP/2 floods against real gunicorn under sse_kit's worker class: each
flooding connection gets GOAWAY ENHANCE_YOUR_CALM and is closed, counted in
``h2_floods`` with one WARNING in gunicorn's log, while an ordinary client's
event stream on another connection keeps working; a browser-like client that
cancels some of its requests is never cut.
"""

from __future__ import annotations

import json
from pathlib import Path

import h2.errors
import pytest

from tests.live._h2client import H2Client
from tests.live._helpers import Start
from tests.live.test_http2_live import h1_client, serve_h2
from tests.test_h2guard import FLOODS

pytestmark = pytest.mark.live


def test_every_flood_is_calmed_and_an_ordinary_connection_keeps_its_stream(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    server = serve_h2(gunicorn_server, certificate)
    with H2Client(server.host, server.port) as ordinary:
        [stream] = ordinary.open_streams("calm", 1)
        for kind, flood in FLOODS.items():
            with H2Client(server.host, server.port) as hostile:
                flood(hostile.conn, hostile.sock)
                hostile.pump(lambda: hostile.closed)
            assert hostile.goaway is not None, kind
            assert hostile.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, kind
        with h1_client(server) as other:
            assert other.get("/stats").json()["h2_floods"] == len(FLOODS)
            other.post("/publish", json={"pattern": "calm:*", "data": "still here"})
        ordinary.pump(lambda: b"data: still here" in ordinary.body[stream])
        ping = ordinary.get("/healthz")
        ordinary.pump(lambda: ping in ordinary.ended)
        assert ordinary.status[ping] == "200" and not ordinary.closed
    log = server.log_text()
    for kind in FLOODS:
        assert log.count(f"(ENHANCE_YOUR_CALM): {kind}") == 1, kind


def test_a_browser_like_client_that_cancels_requests_is_not_cut(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    server = serve_h2(gunicorn_server, certificate)
    with H2Client(server.host, server.port) as client:
        streams = client.open_streams("tab", 10)
        for s in streams[:3]:  # three tabs closed
            client.conn.reset_stream(s)
        client.sock.sendall(client.conn.data_to_send())
        gets = [client.get("/healthz") for _ in range(20)]
        for s in gets[::4]:  # some fetch() calls aborted
            client.conn.reset_stream(s)
        client.sock.sendall(client.conn.data_to_send())
        client.pump(lambda: all(s in client.ended for i, s in enumerate(gets) if i % 4))
        stats_id = client.get("/stats")
        client.pump(lambda: stats_id in client.ended)
        stats = json.loads(client.body[stats_id])
        assert stats["h2_floods"] == 0 and stats["clients"] == 7
        assert client.goaway is None and not client.closed
