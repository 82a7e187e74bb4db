"""The app the chaos soak (``python -m bench.chaos``) serves with gunicorn.

Configured by environment variables:

* ``CHAOS_SENTINELS``: ``host:port,host:port,...``; when set, the hub has a
  Redis backplane that reaches the master ``mymaster`` through these Sentinels
  (as docs/redis.md shows); unset: a hub with its history only.
* ``CHAOS_STREAM``: the backplane's stream key.
* ``CHAOS_BG_RATE``: events per second the background publisher sends (0: none).

Routes: ``GET /events/?cid=...`` streams (FOR TESTS ONLY: the client ID comes
from the query), ``POST /publish`` broadcasts ``{"pattern", "data"}`` (503 when
the backplane or the hub cannot take it), ``GET /stats`` the hub's stats and pid.

Every event a publisher sends carries ``{"p": publisher, "s": seq, "ok": k}``:
``k`` is the seq of that publisher's last event whose publish succeeded before
this one, so the soak can tell a lost event (``k`` after the last one a stream
saw) from one that was never published (a failed publish).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from sse_kit import BackplaneUnavailable, Hub, HubNotRunning
from sse_kit.flask import create_blueprint


def _backplane() -> Any:
    spec = os.environ.get("CHAOS_SENTINELS")
    if not spec:
        return None
    from redis.sentinel import Sentinel

    from sse_kit.redis import RedisBackplane

    hosts = [(h, int(p)) for h, p in (item.rsplit(":", 1) for item in spec.split(","))]
    sentinel = Sentinel(hosts, socket_timeout=0.5)
    return RedisBackplane(lambda **kw: sentinel.master_for("mymaster", **kw),
                          stream=os.environ.get("CHAOS_STREAM", "chaos"), timeout=1.0)


class Ticker:
    """The background publisher: one thread per worker, started by ``hub.on_start``."""

    def __init__(self, hub: Hub, rate: float) -> None:
        self.hub = hub
        self.rate = rate
        self.name = f"bg-{os.getpid()}"
        self.seq = 0
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(1.0 / self.rate):
            self.seq += 1
            data = json.dumps({"p": self.name, "s": self.seq, "ok": self.ok})
            try:
                self.hub.broadcast_to_pattern("c:*", data)
            except BackplaneUnavailable:
                self.failed += 1
            except HubNotRunning:
                return
            else:
                self.ok = self.seq


def create_app() -> Flask:
    """The chaos soak's app: streams, a publish route, a background publisher, stats."""
    hub = Hub(backplane=_backplane(), keepalive_interval=5.0, history_size=2000)
    app = Flask(__name__)
    app.register_blueprint(
        create_blueprint(hub, client_id=lambda r: r.args.get("cid", "c:anon"),
                         metadata=lambda r: {"pid": os.getpid()}),
        url_prefix="/events",
    )
    tickers: list[Ticker] = []
    rate = float(os.environ.get("CHAOS_BG_RATE", "2"))

    @hub.on_start
    def start_ticker(started: Hub) -> None:
        if rate > 0:
            ticker = Ticker(started, rate)
            tickers.append(ticker)
            threading.Thread(target=ticker.run, name="chaos-ticker", daemon=True).start()

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return ("ok", 200) if hub.running else ("hub not running", 503)

    @app.post("/publish")
    def publish() -> ResponseReturnValue:
        body = request.get_json()
        try:
            hub.broadcast_to_pattern(body["pattern"], body["data"])
        except (BackplaneUnavailable, HubNotRunning) as exc:
            return jsonify(error=str(exc)), 503
        return jsonify(pid=os.getpid())

    @app.get("/stats")
    def stats() -> ResponseReturnValue:
        bg = {t.name: {"seq": t.seq, "ok": t.ok, "failed": t.failed} for t in tickers}
        return jsonify({**hub.stats(), "pid": os.getpid(), "bg": bg})

    return app
