"""Small helpers the live test modules share: start the test app, publish, read stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests._live import GunicornServer, wait_for

APP = "tests.live.apps:create_app()"
CONF = "tests/live/gunicorn_conf.py"
Start = Callable[..., GunicornServer]


# sse_kit's worker class: what the docs lead with (no config file needed).
WORKER_CLASS = "sse_kit.gunicorn.ThreadWorker"


def start(
    gunicorn_server: Start, threads: int = 32, *, app: str = APP,
    worker_class: str = "gthread", **env: str,
) -> GunicornServer:
    """Serve *app* (the env-configured test app) under gunicorn with *env*: gthread
    with sse_kit's hooks (``CONF``), or *worker_class* (the config's hooks then do
    nothing under sse_kit's own worker class)."""
    return gunicorn_server(app, config=CONF, threads=threads, graceful_timeout=30, env=env,
                           worker_class=worker_class)


def publish(server: GunicornServer, pattern: str, *datas: Any, event: str | None = None) -> None:
    """Broadcast each of *datas* to *pattern*, in order, through ``POST /publish``."""
    r = httpx.post(f"{server.url}/publish",
                   json={"pattern": pattern, "datas": list(datas), "event": event})
    assert r.status_code == 200, r.text


def stats(server: GunicornServer) -> dict[str, Any]:
    """``hub.stats()`` of the worker that answers, plus its ``pid`` and client ``ids``."""
    result: dict[str, Any] = httpx.get(f"{server.url}/stats").json()
    return result


def wait_clients(server: GunicornServer, n: int) -> None:
    """Wait until the hub has *n* open streams."""
    wait_for(lambda: stats(server)["clients"] == n, message=lambda: f"{n} clients: {stats(server)}")
