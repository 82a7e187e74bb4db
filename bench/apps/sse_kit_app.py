"""sse_kit: a Flask app with the sse_kit blueprint, under gunicorn gthread."""

from __future__ import annotations

import os

from flask import Flask, request
from flask.typing import ResponseReturnValue

from sse_kit import Hub
from sse_kit.flask import create_blueprint


def create_app() -> Flask:
    """The app; ``SSE_FAST_PATH=0`` runs sse_kit on its portable queue path, and
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
        backplane=backplane,
    )
    app = Flask(__name__)
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

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        return hub.stats()

    return app
