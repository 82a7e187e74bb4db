"""Helpers for the security live tests: the session-cookie app under gunicorn gthread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests._live import GunicornServer, RawStream, wait_for
from tests.live._helpers import stats

APP = "tests.live.secure_app:create_app()"
CONF = "tests/live/gunicorn_secure_conf.py"
Start = Callable[..., GunicornServer]


def start(
    gunicorn_server: Start, threads: int = 32, *, worker_class: str = "gthread", **env: str
) -> GunicornServer:
    """The secure app under gunicorn (gthread with sse_kit's hooks, or *worker_class*),
    configured by ``SSE_*`` variables (keep-alives every 0.5 s unless told, so a
    closed client is noticed quickly)."""
    env = {"SSE_KEEPALIVE": "0.5", **env}
    return gunicorn_server(APP, config=CONF, threads=threads, graceful_timeout=10, env=env,
                           worker_class=worker_class)


def login(server: GunicornServer, user: str, role: str = "member") -> dict[str, str]:
    """The ``Cookie`` header of a browser where *user* logged in (a signed session)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/login", json={"user": user, "role": role})
        assert r.status_code == 200, r.text
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}


def stream(server: GunicornServer, path: str = "/events/", **headers: str) -> RawStream:
    """A raw-socket stream request."""
    return RawStream(server.host, server.port, path, headers=headers)


def publish(server: GunicornServer, pattern: str, *datas: Any, **extra: Any) -> httpx.Response:
    """POST /publish; returns the response (200, 400 or 413)."""
    return httpx.post(f"{server.url}/publish",
                      json={"pattern": pattern, "datas": list(datas), **extra}, timeout=30)


def wait_clients(server: GunicornServer, n: int, timeout: float = 10.0) -> None:
    """Wait until the hub serves *n* streams."""
    wait_for(lambda: stats(server)["clients"] == n, timeout=timeout,
             message=lambda: f"{n} clients: {stats(server)}")


def proc_status(pid: int) -> dict[str, int]:
    """``Threads`` and ``VmRSS`` (kB) of process *pid*, from ``/proc/<pid>/status``."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {"threads": int(fields["Threads"]), "rss_kb": int(fields["VmRSS"].split()[0])}
