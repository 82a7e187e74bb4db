"""The live test app for stream tickets, identity expiry and the rate limit.

Configured by environment variables, as :mod:`tests.live.apps` (``SSE_*``;
``SSE_REDIS_URL`` gives the hub a Redis backplane). FOR TESTS ONLY, the
"session" is the query string: ``GET /events/ticket?cid=<id>&life=<s>`` mints a
ticket for ``<id>`` whose identity expires in ``<s>`` seconds (none without
``life``); a real app derives both from its session.

* ``GET /events/ticket``: a ticket (the blueprint's route); ``GET /events/?ticket=``
  the stream;
* ``GET /expired-ticket?cid=<id>``: a ticket signed with the same secret that
  expired an hour ago;
* ``GET /page?cid=<id>&life=<s>``: a page whose ``sse_kit.js`` stream fetches a
  fresh ticket before every connect, records every event in ``window.seen``
  and every ticket it used in ``window.tickets``;
* ``POST /publish``, ``GET /stats``, ``GET /healthz`` as in the base app.

Every answer carries ``X-Worker-Pid``. With ``SSE_RATE`` the stream route is
rate-limited (``SSE_BURST``), keyed by the last ``X-Forwarded-For`` address
(what a proxy in front would add), else the peer's address.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Request, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue

from sse_kit import RateLimit, StreamTickets
from sse_kit.flask import create_blueprint
from tests.live.apps import make_hub

SECRET = "the test app's secret"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sse_kit tickets</title>
<script src="/events/sse_kit.js"></script></head>
<body><script>
"use strict";
const params = new URLSearchParams(location.search);
const mint = "/events/ticket?" + new URLSearchParams({cid: params.get("cid"),
                                                       life: params.get("life") || ""});
window.seen = [];
window.tickets = [];
window.states = [];
window.stream = SSEKit.connect("/events/", {
  minRetryDelay: 200, maxRetryDelay: 1000,
  ticket: () => fetch(mint).then((r) => r.ok ? r.json() : Promise.reject(r.status))
    .then((t) => { window.tickets.push(t.ticket); return t.ticket; }),
});
window.stream.onState((state) => window.states.push(state));
for (const type of ["connected", "message"]) {
  window.stream.on(type, (data, ev) => window.seen.push({type: type, id: ev.lastEventId,
                                                          data: ev.data}));
}
window.stream.onReset((info, ev) => window.seen.push({type: "reset", data: ev.data}));
</script></body></html>
"""


def _source(environ: Any) -> str | None:
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")[-1].strip()
    return forwarded or environ.get("REMOTE_ADDR") or None


def _authorize(req: Request) -> bool | datetime:
    if not req.args.get("cid"):
        abort(401, "log in first")
    if life := req.args.get("life"):
        return datetime.fromtimestamp(time.time() + float(life), UTC)
    return True


def create_app() -> Flask:
    """The ticket test app (see the module docstring)."""
    hub = make_hub()
    tickets = StreamTickets(SECRET, ttl=float(os.environ.get("SSE_TICKET_TTL", "30")))
    rate_limit = None
    if rate := os.environ.get("SSE_RATE"):
        rate_limit = RateLimit(float(rate), burst=int(os.environ.get("SSE_BURST", "10")),
                               key=_source)
    app = Flask(__name__)
    app.register_blueprint(
        create_blueprint(hub, tickets=tickets, authorize=_authorize,
                         client_id=lambda r: str(r.args["cid"]), rate_limit=rate_limit,
                         metadata=lambda r: {"pid": os.getpid()}),
        url_prefix="/events",
    )
    log = logging.getLogger("ticket_app")

    @app.after_request
    def worker_pid(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return ("ok", 200) if hub.running else ("hub not running", 503)

    @app.get("/expired-ticket")
    def expired_ticket() -> ResponseReturnValue:
        an_hour_ago = StreamTickets(SECRET, ttl=30, clock=lambda: time.time() - 3600)
        return jsonify(ticket=an_hour_ago.mint(request.args["cid"]))

    @app.get("/page")
    def page() -> ResponseReturnValue:
        return Response(PAGE, mimetype="text/html")

    @app.post("/publish")
    def publish() -> ResponseReturnValue:
        body = request.get_json()
        for data in body["datas"]:
            hub.broadcast_to_pattern(body["pattern"], data)
        log.info("published %d event(s)", len(body["datas"]))
        return jsonify(published=len(body["datas"]))

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        return jsonify({**hub.stats(), "pid": os.getpid()})

    return app
