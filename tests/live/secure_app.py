"""The Flask app the security live tests serve: identity from a signed session cookie.

``/events/`` streams to the logged-in user (client ID ``user:<name>``, from
Flask's signed session cookie, never from the request as sent); ``authorize``
answers ``401`` without a session, ``403`` for a suspended user (``False``)
and ``403`` with a reason for a guest (a ``str``). ``/anon/`` streams to a
random ``anon:`` ID (the blueprint's default), for hostile-input tests.

Configured by ``SSE_*`` environment variables, as :mod:`tests.live.apps`.
``/login`` is a test shortcut standing in for a real login form.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from flask import Flask, Request, abort, jsonify, redirect, request, session
from flask.typing import ResponseReturnValue

from sse_kit import EventTooLarge, Hub, InvalidPattern
from sse_kit.flask import create_blueprint

SUSPENDED = frozenset({"mallory"})

# A page whose EventSource records what a real browser receives, for the tests to read.
PAGE = """<!doctype html><meta charset="utf-8"><title>sse</title><script>
window.got = []; window.opens = 0; window.errors = 0; window.resets = 0;
window.source = new EventSource("/events/");
source.onopen = () => { window.opens += 1; };
source.onerror = () => { window.errors += 1; };
source.onmessage = (e) => { window.got.push([e.lastEventId, e.data]); };
source.addEventListener("reset", () => { window.resets += 1; });
</script>"""


def _env(name: str, default: Any, cast: Any = int) -> Any:
    value = os.environ.get(name)
    return default if value is None else (None if value == "none" else cast(value))


def make_hub() -> Hub:
    """A hub configured from ``SSE_*`` environment variables."""
    return Hub(
        client_buffer=_env("SSE_BUFFER", 256),
        client_buffer_bytes=_env("SSE_BUFFER_BYTES", 4 * 1024 * 1024),
        keepalive_interval=_env("SSE_KEEPALIVE", 30.0, float),
        max_clients=_env("SSE_MAX_CLIENTS", None),
        history_size=_env("SSE_HISTORY", 1000),
        max_clients_per_id=_env("SSE_MAX_PER_ID", 10),
        max_event_size=_env("SSE_MAX_EVENT", 1024 * 1024),
        max_age=_env("SSE_MAX_AGE", None, float),
        write_timeout=_env("SSE_WRITE_TIMEOUT", 30.0, float),
        slow_client=_env("SSE_SLOW", None, str),
        retry=_env("SSE_RETRY", 3000),
        fast_path=_env("SSE_FAST_PATH", 1) == 1,
    )


def user_id(req: Request) -> str:
    """The stream's client ID: the session's user, as the login set it."""
    return f"user:{session['user']}"


def authorize(req: Request) -> bool | str:
    """401 without a session, 403 for a suspended user or a guest."""
    user = session.get("user")
    if user is None:
        abort(401, "log in first")
    if user in SUSPENDED:
        return False
    if session.get("role") == "guest":
        return "guests may not subscribe"
    return True


def create_app() -> Flask:
    """The app; see the module docstring."""
    if os.environ.get("SSE_LOG"):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    hub = make_hub()
    app = Flask(__name__)
    app.secret_key = "tests-only-secret"
    cors = os.environ.get("SSE_CORS")
    app.register_blueprint(
        create_blueprint(
            hub,
            client_id=user_id,
            authorize=authorize,
            cors_origins=cors.split(",") if cors else None,
            cors_credentials=bool(os.environ.get("SSE_CORS_CREDENTIALS")),
        ),
        url_prefix="/events",
    )
    app.register_blueprint(create_blueprint(hub, name="anon"), url_prefix="/anon")

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return ("ok", 200) if hub.running else ("hub not running", 503)

    @app.post("/login")
    def login() -> ResponseReturnValue:
        body = request.get_json()
        session["user"] = body["user"]
        session["role"] = body.get("role", "member")
        return jsonify(user=body["user"])

    @app.get("/browser-login")
    def browser_login() -> ResponseReturnValue:
        """Test shortcut: log the browser in, then show the page."""
        session["user"] = request.args["user"]
        session["role"] = "member"
        return redirect("/page")

    @app.get("/page")
    def page() -> ResponseReturnValue:
        return PAGE

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        user = session.get("user")
        session.clear()
        ended = hub.disconnect(f"user:{user}") if user else 0
        return jsonify(ended=ended)

    @app.post("/publish")
    def publish() -> ResponseReturnValue:
        body = request.get_json()
        datas = body["datas"] if "datas" in body else [body["data"]]
        for data in datas * body.get("repeat", 1):
            try:
                hub.broadcast_to_pattern(body["pattern"], data, event=body.get("event"))
            except InvalidPattern as exc:
                return jsonify(error=str(exc)), 400
            except EventTooLarge as exc:
                return jsonify(error=str(exc)), 413
        return jsonify(published=len(datas))

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        return jsonify({**hub.stats(), "pid": os.getpid(), "ids": hub.get_client_ids(),
                        "threads": threading.active_count()})

    return app
