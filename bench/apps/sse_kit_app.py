"""sse_kit: a Flask app with the sse_kit blueprint, under ``sse_kit.gunicorn.ThreadWorker``
(or gthread with sse_kit's hooks); also answers ``GET /ping`` and ``GET /stats``."""

from __future__ import annotations

import os
import socket

from flask import Flask, request
from flask.typing import ResponseReturnValue

from sse_kit import Hub
from sse_kit.flask import create_blueprint


def create_app() -> Flask:
    """The app; ``SSE_FAST_PATH=0`` runs sse_kit on its portable queue path (a
    thread per stream), ``SSE_CLIENT_BUFFER_BYTES`` sets the hub's
    ``client_buffer_bytes`` and ``SSE_STREAM_SNDBUF`` every stream socket's
    ``SO_SNDBUF`` (the slow-client step: on loopback the kernel would otherwise
    take megabytes for a client that stops reading before sse_kit sees it), and
    ``REDIS_URL`` puts the Redis backplane behind the hub."""
    backplane = None
    if os.environ.get("REDIS_URL"):
        from sse_kit.redis import RedisBackplane

        backplane = RedisBackplane(os.environ["REDIS_URL"], stream="bench")
    hub = Hub(
        history_size=1000,
        client_buffer=1024,
        keepalive_interval=30,
        fast_path=os.environ.get("SSE_FAST_PATH", "1") == "1",
        client_buffer_bytes=int(os.environ.get("SSE_CLIENT_BUFFER_BYTES", 4 * 1024 * 1024)),
        backplane=backplane,
    )
    app = Flask(__name__)
    sndbuf = int(os.environ.get("SSE_STREAM_SNDBUF", "0"))
    if sndbuf:

        @app.before_request
        def small_send_buffer() -> None:
            sock = request.environ.get("gunicorn.socket")
            if sock is not None and request.path.startswith("/events"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)

    app.register_blueprint(
        create_blueprint(hub, client_id=lambda r: r.args["cid"]), url_prefix="/events"
    )

    @app.post("/publish")
    def publish() -> ResponseReturnValue:
        for data in request.get_data(as_text=True).split("\n"):
            hub.broadcast_to_pattern("*", data)
        return "", 204

    @app.get("/count")
    def count() -> ResponseReturnValue:
        return str(hub.get_client_count())

    @app.get("/ping")
    def ping() -> ResponseReturnValue:
        """An ordinary route, probed while the streams receive (its latency is measured)."""
        return "pong"

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        return hub.stats()

    return app
