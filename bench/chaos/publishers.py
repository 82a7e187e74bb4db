"""The soak's own publishers: ``POST /publish``, a RedisBackplane in this process,
and ``python -m sse_kit publish --sentinel`` run as its own process per event.

Each is one thread that publishes ``{"p": name, "s": seq, "ok": k}`` to ``c:*``
at a fixed rate (``k``: the last seq whose publish succeeded, see
:mod:`bench.chaos.ledger`) and counts what succeeded and what failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx

PATTERN = "c:*"


class Publisher:
    """Calls ``send(data)`` at *rate* per second until stopped; ``send`` raising
    is a failed publish (the event may or may not have gone out); what it returns
    (the backplane's entry ID) is kept in :attr:`ids` by seq."""

    def __init__(self, name: str, rate: float, send: Callable[[str], Any]) -> None:
        self.name, self.rate, self.send = name, rate, send
        self.seq = self.ok_count = self.failed = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.ids: dict[int, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"publish-{name}", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(1.0 / self.rate):
            self.seq += 1
            try:
                sent = self.send(json.dumps({"p": self.name, "s": self.seq, "ok": self.ok}))
            except Exception as exc:  # every failure is counted, by kind
                self.failed += 1
                kind = str(exc) if type(exc) is RuntimeError else type(exc).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
            else:
                self.ok = self.seq
                if sent is not None:
                    self.ids[self.seq] = sent
                self.ok_count += 1


def post_publisher(name: str, url: str, rate: float) -> Publisher:
    client = httpx.Client(base_url=url, timeout=5)

    def send(data: str) -> None:
        response = client.post("/publish", json={"pattern": PATTERN, "data": data})
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")

    return Publisher(name, rate, send)


def backplane_publisher(name: str, sentinels: str, rate: float) -> Publisher:
    from redis.sentinel import Sentinel

    from sse_kit.redis import RedisBackplane

    hosts = [(h, int(p)) for h, p in (item.rsplit(":", 1) for item in sentinels.split(","))]
    sentinel = Sentinel(hosts, socket_timeout=0.5)
    backplane = RedisBackplane(lambda **kw: sentinel.master_for("mymaster", **kw),
                               stream="chaos", timeout=1.0)

    def send(data: str) -> str:
        return backplane.broadcast_many([(PATTERN, data)])[0]

    return Publisher(name, rate, send)


def cli_publisher(name: str, sentinels: str, rate: float) -> Publisher:
    """One ``python -m sse_kit publish`` process per event, through the Sentinels:
    exit 1 is its documented failure (Redis unreachable), anything else is not."""
    from sse_kit import BackplaneUnavailable

    def send(data: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sse_kit", "publish", "--sentinel", sentinels,
             "--stream", "chaos", "--timeout", "1", PATTERN, data],
            capture_output=True, text=True, timeout=60)
        if done.returncode == 1:
            raise BackplaneUnavailable(done.stderr.strip())
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")
        return done.stdout.strip()

    return Publisher(name, rate, send)
