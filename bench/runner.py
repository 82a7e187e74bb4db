"""One session: a system with N open streams, driven through a list of publish rates.

The publisher is open-loop: event ``k`` of a step is *scheduled* at
``t0 + k / rate`` and carries that time, so a publisher held up by a slow
``POST /publish`` shows as latency instead of hiding it. Every step is measured by
the C client (latency, gaps, its own CPU) and by /proc (the server's CPU).
Where the system has an ordinary route (``GET /ping``), a :class:`Probe` requests
it every ``PROBE_EVERY`` seconds while the step publishes: how long an ordinary
request waits while the streams are being fed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.systems import HOST, Server, System, connection

PAD = 48  # data bytes after the stamp: events are ~100 bytes on the wire
CLIENT_CPU_LIMIT = 0.70  # a step whose client used more of its core is invalid
DRAIN = 2.0  # seconds after the last publish before a step is closed
MAX_BATCH = 200  # events in one POST when the publisher is behind
PROBE_EVERY = 0.05  # seconds between two GET /ping of the probe


@dataclass
class Step:
    system: str
    streams: int
    rate: float  # broadcasts per second offered
    seconds: float
    published: int
    expected: int
    received: int
    gaps: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    server_cpu_s: float
    server_cpu_pct: float
    client_cpu_pct: float
    publisher_lag_ms: float  # how far behind schedule the publisher fell, at worst
    rss_per_stream_kib: float
    threads: int
    alive: int
    fast_share: float | None = None  # sse_kit: share of deliveries written on the fast path
    load1: float | None = None  # the machine's 1-minute load average when the step ended
    worker_threads: int | None = None  # most threads in one process (the worker), idle or after
    probe_p50_ms: float | None = None  # GET /ping during the step (systems with the route)
    probe_p99_ms: float | None = None
    probe_max_ms: float | None = None
    probes: int | None = None  # probe requests answered (200) during the step
    stalled: int = 0  # streams that stopped reading (excluded from every other figure)
    cut: int | None = None  # sse_kit: streams ended as too slow (slow_disconnects + write_timeouts)
    dropped: int | None = None  # sse_kit: (event, stream) pairs dropped (slow_client="drop")
    rss_growth_kib: float | None = None  # server RSS after the step minus before it
    # CPU seconds of the server's busiest thread over the step (sse_kit: the hub
    # thread, which writes every fan-out; the floor: its only thread)
    fanout_cpu_s: float | None = None

    @property
    def offered(self) -> float:
        return self.rate * self.streams

    @property
    def delivered_per_s(self) -> float:
        return self.received / self.seconds

    @property
    def delivered_ratio(self) -> float:
        return self.received / self.expected if self.expected else 0.0

    @property
    def us_per_delivery(self) -> float:
        return 1e6 * self.server_cpu_s / self.received if self.received else float("inf")

    @property
    def fanout_us_per_delivery(self) -> float | None:
        """CPU per delivery of the busiest thread alone (no HTTP around the fan-out)."""
        if self.fanout_cpu_s is None or not self.received:
            return None
        return 1e6 * self.fanout_cpu_s / self.received

    @property
    def valid(self) -> bool:
        return self.client_cpu_pct <= 100 * CLIENT_CPU_LIMIT

    def ok(self, p99_limit_ms: float = 100.0) -> bool:
        """Met the ramp's bar: p99 within the limit, >= 99% delivered, no gap."""
        return self.p99_ms <= p99_limit_ms and self.delivered_ratio >= 0.99 and self.gaps == 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(offered=self.offered, delivered_per_s=self.delivered_per_s,
                 delivered_ratio=self.delivered_ratio, us_per_delivery=self.us_per_delivery,
                 fanout_us_per_delivery=self.fanout_us_per_delivery, valid=self.valid)
        return d


class Publisher:
    """POSTs stamped events at a fixed schedule over one keep-alive connection.

    Open loop: when the publisher is behind (a POST took longer than the gap to
    the next event), every event already due goes in the next POST, one per line,
    each with its own scheduled time; the server publishes them one by one.
    """

    def __init__(self, port: int, tls: bool = False) -> None:
        self.conn = connection(port, tls, timeout=30)
        self.seq = 0

    def run(self, rate: float, seconds: float) -> tuple[int, int, float]:
        """Publish for *seconds*; return (first seq, last seq, worst lag in s)."""
        first = self.seq
        n = max(1, round(rate * seconds))
        t0 = time.time() + 0.05
        lag = 0.0
        k = 0
        while k < n:
            delay = t0 + k / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            else:
                lag = max(lag, -delay)
            now = time.time()
            lines = []
            while k < n and t0 + k / rate <= now and len(lines) < MAX_BATCH:
                lines.append(f"B {self.seq} {int((t0 + k / rate) * 1e6)} " + "p" * PAD)
                self.seq += 1
                k += 1
            self.conn.request("POST", "/publish", "\n".join(lines).encode(),
                              {"Content-Type": "text/plain; charset=utf-8"})
            response = self.conn.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"publish answered {response.status}")
        return first, self.seq - 1, lag

    def close(self) -> None:
        self.conn.close()


class Probe(threading.Thread):
    """GETs ``/ping`` every PROBE_EVERY seconds, each on a new connection, until stopped;
    records each answer's latency (a failed or non-200 answer counts as 5 s)."""

    def __init__(self, port: int, path: str = "/ping", tls: bool = False) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.tls = tls
        self.latencies: list[float] = []
        self.answered = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(PROBE_EVERY):
            t0 = time.perf_counter()
            conn = connection(self.port, self.tls, timeout=5)
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
            finally:
                conn.close()
            self.latencies.append(time.perf_counter() - t0 if ok else 5.0)
            self.answered += ok

    def finish(self) -> tuple[float, float, float, int]:
        """Stop; return (p50, p99, max) in ms and the number answered."""
        self._done.set()
        self.join(10)
        lat = sorted(self.latencies) or [float("nan")]

        def q(x: float) -> float:
            return 1e3 * lat[min(len(lat) - 1, int(x * len(lat)))]

        return q(0.5), q(0.99), 1e3 * lat[-1], self.answered


class Client:
    """The C load generator, pinned to the other CPU."""

    def __init__(self, binary: Path, port: int, streams: int, cpu: str, stall: int = 0,
                 h2_connections: int | None = None) -> None:
        argv = [str(binary), HOST, str(port), "/events/", str(streams), str(stall)]
        if h2_connections is not None:  # HTTP/2 over TLS: the Python generator
            argv = [sys.executable, "-m", "bench.h2client", HOST, str(port), "/events/",
                    str(streams), str(h2_connections)]
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1,
        )  # fmt: skip
        self._lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cv:
                self._lines.append(line)
                self._cv.notify_all()
        with self._cv:
            self._lines.append("")  # EOF marker
            self._cv.notify_all()

    def answer(self, timeout: float) -> dict[str, Any]:
        with self._cv:
            if not self._cv.wait_for(lambda: self._lines, timeout):
                raise TimeoutError("the load generator did not answer")
            line = self._lines.pop(0)
        if not line:
            raise RuntimeError(f"the load generator exited ({self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.send("QUIT")
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def session(
    system: System,
    streams: int,
    rates: list[float],
    *,
    seconds: float,
    client_binary: Path,
    log_dir: Path,
    must_run: set[float],
    p99_limit_ms: float = 100.0,
    progress: Any = print,
    stall: int = 0,
) -> tuple[list[Step], str | None]:
    """Open *streams* streams on *system* and run each rate in turn.

    Rates are tried in order; after the first failing one, only rates in
    *must_run* (the targets) are still run. *stall* of the streams stop reading
    once their headers arrive (see ``bench/client.c``).

    :returns: the steps measured, and why the session stopped early (or None).
    """
    steps: list[Step] = []
    server = client = publisher = None
    error = None
    try:
        server = Server(system, streams, log_dir / f"{system.name}-{streams}.log")
        time.sleep(0.5)
        base = procs.usage(server.pids)
        client = Client(client_binary, server.port, streams, "1", stall,
                        h2_connections=system.h2_connections)
        ready = client.answer(timeout=max(60.0, streams / 100))
        if ready["failed"]:
            raise RuntimeError(f"{ready['failed']} of {streams} streams failed to open")
        deadline = time.monotonic() + 60
        while (server.get("/count") or "0").strip() != str(streams):
            if time.monotonic() > deadline:
                raise TimeoutError(f"server counts {server.get('/count')} streams, not {streams}")
            time.sleep(0.2)
        time.sleep(1.0)
        idle = procs.usage(server.pids)
        rss_per_stream = max(0, idle.rss_kib - base.rss_kib) / streams
        progress(f"  {system.name} {streams} streams open in {ready['seconds']:.1f}s,"
                 f" {rss_per_stream:.1f} KiB/stream, {idle.threads} threads"
                 f" ({idle.max_threads} in the worker)")
        publisher = Publisher(server.port, tls=system.tls)
        failed = False
        for rate in rates:
            if failed and rate not in must_run:
                continue
            first = publisher.seq
            counters0 = _counters(server)
            client.send(f"START {first}")
            time.sleep(0.05)
            before = procs.usage(server.pids)
            wall0 = time.monotonic()
            probe = (Probe(server.port, system.probe_path, tls=system.tls) if system.probe
                     else None)
            if probe is not None:
                probe.start()
            try:
                first, last, lag = publisher.run(rate, seconds)
            except TimeoutError:
                raise RuntimeError(
                    f"at {rate:g} broadcasts/s a POST /publish was not answered within 30 s"
                ) from None
            finally:
                probed = probe.finish() if probe is not None else None
            time.sleep(DRAIN)
            after = procs.usage(server.pids)
            wall = time.monotonic() - wall0
            counters1 = _counters(server)
            client.send(f"STOP {last}")
            r = client.answer(timeout=30)
            step = Step(
                system=system.name, streams=streams, rate=rate, seconds=seconds,
                published=last - first + 1, expected=r["expected"], received=r["received"],
                gaps=r["gaps"], p50_ms=r["p50_us"] / 1e3, p99_ms=r["p99_us"] / 1e3,
                p999_ms=r["p999_us"] / 1e3, max_ms=r["max_us"] / 1e3,
                server_cpu_s=after.cpu_s - before.cpu_s,
                server_cpu_pct=100 * (after.cpu_s - before.cpu_s) / wall,
                client_cpu_pct=100 * r["cpu_s"] / max(r["wall_s"], 1e-9),
                publisher_lag_ms=lag * 1e3, rss_per_stream_kib=rss_per_stream,
                threads=after.threads, alive=r["alive"],
                fast_share=_share(counters0, counters1), load1=os.getloadavg()[0],
                worker_threads=max(idle.max_threads, after.max_threads),
                probe_p50_ms=probed[0] if probed else None,
                probe_p99_ms=probed[1] if probed else None,
                probe_max_ms=probed[2] if probed else None, probes=probed[3] if probed else None,
                stalled=stall,
                cut=_delta(counters0, counters1, "slow_disconnects", "write_timeouts"),
                dropped=_delta(counters0, counters1, "dropped"),
                rss_growth_kib=float(after.rss_kib - before.rss_kib),
                fanout_cpu_s=after.busiest_thread_since(before),
            )  # fmt: skip
            steps.append(step)
            progress(
                f"    {rate:>6g}/s x {streams}: {step.delivered_per_s:>9.0f} deliveries/s"
                f" ({100 * step.delivered_ratio:.1f}%), p99 {step.p99_ms:.1f} ms,"
                f" {step.us_per_delivery:.1f} us/delivery"
                f" ({step.fanout_us_per_delivery or 0:.1f} busiest thread),"
                f" server {step.server_cpu_pct:.0f}%"
                f" client {step.client_cpu_pct:.0f}%"
                + ("" if step.fast_share is None else f" fast {100 * step.fast_share:.0f}%")
                + ("" if step.probe_p99_ms is None else f" ping p99 {step.probe_p99_ms:.1f} ms")
                + (f" cut {step.cut} dropped {step.dropped}" if stall else "")
                + ("" if step.ok(p99_limit_ms) else "  FAIL")
            )
            if not step.ok(p99_limit_ms):
                failed = True
                _settle(client, server)
    except (RuntimeError, TimeoutError, OSError) as exc:
        error = str(exc) or type(exc).__name__
        logged = server.last_error() if server is not None else ""
        if logged:
            error += f" (server log: {logged})"
    finally:
        if publisher is not None:
            publisher.close()
        if client is not None:
            client.close()
        if server is not None:
            server.close()
    return steps, error


def _counters(server: Server) -> dict[str, int] | None:
    """sse_kit's hub.stats(), or None for the peers (no /stats route)."""
    if not server.system.name.startswith("sse_kit"):
        return None
    text = server.get("/stats")
    return json.loads(text) if text else None


def _delta(before: dict[str, int] | None, after: dict[str, int] | None, *keys: str) -> int | None:
    if before is None or after is None:
        return None
    return sum(after.get(k, 0) - before.get(k, 0) for k in keys)


def _share(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    if before is None or after is None:
        return None
    fast = after["fast_writes"] - before["fast_writes"]
    total = fast + after["queued_writes"] - before["queued_writes"]
    return fast / total if total else None


def _settle(client: Client, server: Server) -> None:
    """After an overloaded step, let the backlog drain (bounded) before the next."""
    time.sleep(3.0)
