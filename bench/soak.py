"""Soak test (not run in CI): clients churn while events are published, for a while.

    .venv/bin/python bench/soak.py --clients 50 --duration 60

Starts the security test app (``tests.live.secure_app``) under gunicorn gthread
with one worker, then runs *clients* threads that each connect to ``/anon/``,
read for a random while, and disconnect (half of them with a TCP reset), over
and over, while a publisher broadcasts to ``anon:*`` at ``--rate`` events per
second. Every ``--every`` seconds it prints the worker's RSS and thread count
(``/proc/<pid>/status``) and the hub's client count and counters.

The baseline is taken after a warm-up: first the worker's thread pool is filled
(every thread serving a stream at once, so the pool cannot grow later), then
churn and publishing run for ``--warmup`` seconds, long enough to fill the hub's
history ring (1,000 events) which is memory that stays by design. It exits 1
if, once the clients are gone, the hub still counts clients, the worker has more
threads than at the baseline, or its RSS grew by more than ``--rss-tolerance-mb``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._live import GunicornServer, RawStream, wait_for
from tests.live._secure import APP, CONF, proc_status


def churn(server: GunicornServer, stop: threading.Event, errors: list[str]) -> None:
    """One client: connect, read a while, leave (politely or not), again."""
    rng = random.Random()
    while not stop.is_set():
        try:
            raw = RawStream(server.host, server.port, "/anon/", timeout=10)
        except (OSError, TimeoutError) as exc:
            errors.append(f"connect: {exc!r}")
            continue
        try:
            deadline = time.monotonic() + rng.uniform(0.1, 2.0)
            with contextlib.suppress(TimeoutError):
                raw.read_until(lambda _b: stop.is_set(), timeout=deadline - time.monotonic())
        except (OSError, EOFError) as exc:
            errors.append(f"read: {exc!r}")
        finally:
            if rng.random() < 0.5:  # a tab crash or network drop: reset, no FIN
                with contextlib.suppress(OSError):
                    raw._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
            raw.close()


def publish(server: GunicornServer, rate: float, stop: threading.Event) -> None:
    """Broadcast to every client at *rate* events per second, sizes 10 B to 64 KiB."""
    rng = random.Random()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        while not stop.wait(1.0 / rate):
            size = rng.choice([10, 100, 1000, 10_000, 65_536])
            client.post("/publish", json={"pattern": "anon:*", "data": "x" * size})


def fill_pool(server: GunicornServer, n: int) -> None:
    """Hold *n* streams at once, so gthread starts every thread of its pool now."""
    with contextlib.ExitStack() as stack:
        for _ in range(n):
            raw = stack.enter_context(RawStream(server.host, server.port, "/anon/"))
            raw.read_until(b"event: connected")
    wait_for(lambda: httpx.get(f"{server.url}/stats").json()["clients"] == 0, timeout=30,
             message="the warm-up streams to end")


def sample(server: GunicornServer, started: float) -> dict[str, float]:
    stats = httpx.get(f"{server.url}/stats", timeout=10).json()
    proc = proc_status(stats["pid"])
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_mb": round(proc["rss_kb"] / 1024, 1),
        "threads": proc["threads"],
        "clients": stats["clients"],
        "connects": stats["connects"],
        "published": stats["published"],
        "delivered": stats["delivered"],
        "dropped": stats["dropped"],
        "slow": stats["slow_disconnects"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of churn")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds of churn before the baseline sample")
    parser.add_argument("--rss-tolerance-mb", type=float, default=10.0)
    args = parser.parse_args(argv)

    log = Path(tempfile.mkdtemp(prefix="sse-soak-")) / "gunicorn.log"
    server = GunicornServer(
        APP, log_path=log, threads=args.clients + 8, config=CONF,
        env={"SSE_KEEPALIVE": "1", "SSE_MAX_PER_ID": "none"},
    )
    server.start()
    stop, errors = threading.Event(), []
    try:
        fill_pool(server, server.threads)
        started = time.monotonic()
        workers = [threading.Thread(target=churn, args=(server, stop, errors), daemon=True)
                   for _ in range(args.clients)]
        workers.append(threading.Thread(target=publish, args=(server, args.rate, stop),
                                        daemon=True))
        for w in workers:
            w.start()
        rows = []
        print(f"soak: {args.clients} clients, {args.rate:g} events/s, {args.duration:g}s;"
              f" server log {log}")
        print("      t  rss_mb  threads  clients  connects  published  delivered  dropped  slow")
        warm: dict[str, float] | None = None
        while time.monotonic() - started < args.duration:
            time.sleep(min(args.every, max(0.0, args.duration - (time.monotonic() - started))))
            rows.append(sample(server, started))
            print("{t:7} {rss_mb:7} {threads:8} {clients:8} {connects:9} {published:10}"
                  " {delivered:10} {dropped:8} {slow:5}".format(**rows[-1]))
            if warm is None and rows[-1]["t"] >= args.warmup:
                warm = rows[-1]
                print(f"baseline: rss {warm['rss_mb']} MiB, {warm['threads']} threads")
        stop.set()
        for w in workers:
            w.join(30)
        wait_for(lambda: sample(server, started)["clients"] == 0, timeout=30,
                 message="every client to be unregistered")
        end = sample(server, started)
        print(f"after: {end}")
        if warm is None:
            warm = rows[-1]
        drift = []
        if end["threads"] > warm["threads"]:
            drift.append(f"threads {warm['threads']} -> {end['threads']}")
        if end["rss_mb"] - warm["rss_mb"] > args.rss_tolerance_mb:
            drift.append(f"rss {warm['rss_mb']} -> {end['rss_mb']} MiB")
        if errors:
            print(f"client errors: {len(errors)}, e.g. {errors[:3]}")
        if drift:
            print("DRIFT: " + "; ".join(drift))
            return 1
        print(f"ok: no drift (threads {warm['threads']} -> {end['threads']}, "
              f"rss {warm['rss_mb']} -> {end['rss_mb']} MiB, clients 0)")
        return 0
    finally:
        stop.set()
        server.close()


if __name__ == "__main__":
    sys.exit(main())
