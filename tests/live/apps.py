"""The Flask app the live tests serve with gunicorn gthread.

Configured by environment variables (``SSE_*``) so each test picks its hub.
FOR TESTS ONLY: the client ID is taken from ``?cid=`` so a test can choose it.
A real app derives it from its own session or auth (the blueprint's default
gives every connection a random ``anon:`` ID).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from sse_kit import BackplaneUnavailable, Hub, InvalidPattern
from sse_kit.flask import anonymous_client_id, create_blueprint


def _env(name: str, default: Any, cast: Any = int) -> Any:
    value = os.environ.get(name)
    return default if value is None else cast(value)


def make_hub() -> Hub:
    """A hub configured from ``SSE_*`` environment variables; ``SSE_REDIS_URL``
    gives it a Redis backplane (``SSE_REDIS_STREAM``, ``SSE_REDIS_MAXLEN``);
    ``SSE_PRESENCE_EVENTS`` is the pattern every client ID's join/leave goes to
    (but those of IDs starting with ``watch:``)."""
    backplane = None
    if url := os.environ.get("SSE_REDIS_URL"):
        from sse_kit.redis import RedisBackplane

        backplane = RedisBackplane(url, stream=_env("SSE_REDIS_STREAM", "sse_kit", str),
                                   maxlen=_env("SSE_REDIS_MAXLEN", 10_000))
    return Hub(
        backplane=backplane,
        client_buffer=_env("SSE_BUFFER", 256),
        keepalive_interval=_env("SSE_KEEPALIVE", 30.0, float),
        max_clients=_env("SSE_MAX_CLIENTS", None),
        history_size=_env("SSE_HISTORY", 1000),
        slow_client=_env("SSE_SLOW", None, str),
        retry=_env("SSE_RETRY", 3000),
        fast_path=_env("SSE_FAST_PATH", 1) == 1,
        max_clients_per_id=_env("SSE_PER_ID", 10),
        presence_ttl=_env("SSE_PRESENCE_TTL", 15.0, float),
        presence_events=_presence_route(os.environ.get("SSE_PRESENCE_EVENTS")),
    )


def _presence_route(pattern: str | None) -> Callable[[str], str | None] | None:
    if pattern is None:
        return None
    return lambda client_id: None if client_id.startswith("watch:") else pattern


def create_app() -> Flask:
    """The test app: ``/events/`` streams, ``/publish`` broadcasts, ``/stats`` reports."""
    hub = make_hub()
    app = Flask(__name__)
    app.register_blueprint(
        create_blueprint(
            hub,
            client_id=lambda r: r.args.get("cid") or anonymous_client_id(r),
            # SSE_META_PID=1: the connected event tells which worker serves the stream.
            metadata=(lambda r: {"pid": os.getpid()}) if os.environ.get("SSE_META_PID") else None,
            metrics=bool(_env("SSE_METRICS", 0)),
        ),
        url_prefix="/events",
    )

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return ("ok", 200) if hub.running else ("hub not running", 503)

    @app.post("/publish")
    def publish() -> ResponseReturnValue:
        body = request.get_json()
        datas = body["datas"] if "datas" in body else [body["data"]]
        try:
            for data in datas:
                hub.broadcast_to_pattern(body["pattern"], data, event=body.get("event"))
        except InvalidPattern as exc:
            return jsonify(error=str(exc)), 400
        except BackplaneUnavailable as exc:
            return jsonify(error=str(exc)), 503
        return jsonify(published=len(datas), pid=os.getpid())

    @app.post("/disconnect")
    def disconnect() -> ResponseReturnValue:
        try:
            ended = hub.disconnect(request.get_json()["pattern"])
        except BackplaneUnavailable as exc:
            return jsonify(error=str(exc)), 503
        return jsonify(ended=ended, pid=os.getpid())

    @app.get("/presence")
    def presence() -> ResponseReturnValue:
        return jsonify(hub.presence(request.args.get("pattern", "*")))

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        # "direct": streams whose socket the hub side owns (detached).
        direct = sum(c.detached for c in hub.clients())
        return jsonify({**hub.stats(), "pid": os.getpid(), "ids": hub.get_client_ids(),
                        "direct": direct})

    return app
