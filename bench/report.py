"""docs/benchmarks.md and its chart, from one run's results."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.runner import Step
from bench.systems import BASELINE, SYSTEMS

PEERS = ("starlette", "flask_sse", "handrolled", "sse_kit_queue")
# Written into every report: what the tables cannot say by themselves.
NOTES = [
    "How to read this:",
    "",
    "- *sse_kit* is `gunicorn -k sse_kit.gunicorn.ThreadWorker --threads 8`, no config file: "
    "after its first chunk a stream is detached (the hub side owns its socket, one selector "
    "thread per hub) and its worker thread goes back to the pool of 8. The hub thread writes "
    "each event to the sockets itself; the share of deliveries written at once, without a "
    "tail, is `fast_share` in `benchmarks.json` (the raw results beside this page). "
    "*gthread + hooks* is the same under `-k gthread --threads 8` with sse_kit's server hooks "
    "(`bench/apps/sse_kit_gunicorn.py`). *fast path off* is `Hub(fast_path=False)`: the "
    "portable queue path every other WSGI server gets, a parked thread per stream "
    "(`--threads` streams + 50). *sse_kit before issue 11* is main at commit "
    f"`{BASELINE}` (the round before detached streams), extracted by `git archive` and run "
    "the same way: gthread + hooks, its fast path (the hub thread writes to the socket while "
    "the stream's worker thread stays parked), `--threads` streams + 50; it is what the worker "
    "class's CPU per delivery is held against, in the same run (its probe is `GET /count`: "
    "it has no `/ping`).",
    "- *GET /ping p99*: an ordinary Flask route of the sse_kit app, requested on a new "
    "connection every 50 ms while the step publishes (from the load generator's core); it "
    "waits for one of the 8 threads and for the core the fan-out is using.",
    "- A broadcast to N streams is N `send()` calls made one after another, so the last stream "
    "of a fan-out gets the event N x (CPU per delivery) after the first: at 1,000 streams, "
    "10 µs per delivery is 10 ms of spread. p99 at 1,000+ streams is mostly that spread plus any "
    "time the server's core was taken by another process.",
    "- Server CPU % below 100 with a failing p99 means the core was shared (see the load "
    "average above) or the latency came from the fan-out spread, not from saturation.",
    "- RSS per idle stream: a stream that holds a parked gthread thread costs ~28 KiB (the "
    "thread's touched stack, 12 KiB, plus gunicorn's per-connection state), so the "
    "thread-per-stream systems sit near 30 KiB; a detached stream holds no thread, only its "
    "socket, its Client and its selector registration.",
    "- *floor* is not a server: one thread writes each event's pre-framed chunk to every socket "
    "with a bare `os.write` loop (`bench/apps/floor.py`). It is what one `write(2)` per delivery "
    "costs on this machine, kernel and loopback included: no system that writes each event to "
    "each socket separately can go below its CPU per delivery or its fan-out spread. "
    "Where the floor's own p99 is above a target (10,000 x 5/s against 100 ms: 10,000 writes "
    "of ~9 µs each on one core take ~90 ms before any scheduling noise), that target cannot "
    "be met by any server pinned to one core of this machine; the table says so beside it.",
    "- flask-sse holds two descriptors per stream (the client's socket and its own Redis "
    "connection), so 10,000 streams need a file-descriptor limit above 20,000; where the hard "
    "limit is lower (`ulimit -Hn`), `make bench` skips that session and says so below.",
    "- *sse_kit + Redis backplane*: the same app with `RedisBackplane` (a broadcast is an `XADD`,"
    " each worker's reader `XREAD`s it back), Redis pinned with the server on CPU 0 and its CPU "
    "counted. Two workers against one cannot be measured on a 2-core machine without moving the "
    "load generator onto a server core, so that target is left to a bigger machine.",
]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                               check=False).stdout.strip()
    except OSError:
        redis = "not installed"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": ", ".join(
            f"{d} {_version(d)}"
            for d in ("sse_kit", "gunicorn", "flask", "sse-starlette", "starlette", "uvicorn",
                      "uvloop", "httptools", "flask-sse", "gevent", "redis")
        ) + f"; {redis}",
    }


def _f(x: float, digits: int = 1) -> str:
    if x != x or x == float("inf"):
        return "-"
    return f"{x:,.{digits}f}"


def _label(name: str) -> str:
    return SYSTEMS[name].label


def find(steps: Iterable[Step], system: str, streams: int, rate: float) -> Step | None:
    for s in steps:
        if (s.system, s.streams, s.rate) == (system, streams, rate):
            return s
    return None


def scenario_table(steps: list[Step], streams: int, rate: float) -> list[str]:
    rows = [s for s in steps if s.streams == streams and s.rate == rate]
    if not rows:
        return ["(not run)"]
    base = find(rows, "sse_kit", streams, rate)
    out = [
        "| system | delivered/s (offered) | delivered | gaps | p50 | p99 | p99.9 | max "
        "| server CPU µs/delivery | ÷ sse_kit's | ÷ floor's | server CPU | client CPU "
        "| RSS/stream | threads (worker) | GET /ping p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    floor = find(rows, "floor", streams, rate)
    for s in rows:
        ratio = (
            s.us_per_delivery / base.us_per_delivery if base and base.received else float("nan")
        )
        to_floor = (s.us_per_delivery / floor.us_per_delivery
                    if floor and floor.received else float("nan"))
        flag = "" if s.valid else " **(invalid: client > 70%)**"
        out.append(
            f"| {_label(s.system)}{flag} | {_f(s.delivered_per_s, 0)} ({_f(s.offered, 0)}) "
            f"| {_f(100 * s.delivered_ratio)}% | {s.gaps} | {_f(s.p50_ms)} ms | {_f(s.p99_ms)} ms "
            f"| {_f(s.p999_ms)} ms | {_f(s.max_ms)} ms | {_f(s.us_per_delivery)} "
            f"| {_f(ratio, 2) + 'x' if ratio == ratio else '-'} "
            f"| {_f(to_floor, 2) + 'x' if to_floor == to_floor else '-'} "
            f"| {_f(s.server_cpu_pct, 0)}% | {_f(s.client_cpu_pct, 0)}% "
            f"| {_f(s.rss_per_stream_kib)} KiB | {s.threads} ({_threads(s)}) | {_ping(s)} |"
        )
    return out


def _threads(s: Step) -> str:
    return "?" if s.worker_threads is None else str(s.worker_threads)


def _ping(s: Step) -> str:
    return "-" if s.probe_p99_ms is None else f"{_f(s.probe_p99_ms)} ms"


def ramp(steps: list[Step], p99_limit_ms: float) -> dict[tuple[str, int], Step | None]:
    """Best passing step per (system, streams)."""
    best: dict[tuple[str, int], Step | None] = {}
    for s in steps:
        key = (s.system, s.streams)
        best.setdefault(key, None)
        if s.ok(p99_limit_ms) and s.valid:
            cur = best[key]
            if cur is None or s.delivered_per_s > cur.delivered_per_s:
                best[key] = s
    return best


def targets(steps: list[Step], micro: dict[str, dict[int, float]] | None) -> list[str]:
    out = ["| target | measured | met? |", "|---|---|---|"]

    def row(name: str, measured: str, met: bool | None) -> None:
        out.append(f"| {name} | {measured} | {'yes' if met else 'no' if met is False else '-'} |")

    def floor(streams: int, rate: float) -> str:
        f = find(steps, "floor", streams, rate)
        return "" if f is None else (f" (floor: p99 {_f(f.p99_ms)} ms, "
                                     f"{_f(f.us_per_delivery)} µs/delivery)")

    a = find(steps, "sse_kit", 1000, 50)
    peer = find(steps, "starlette", 1000, 50)
    if a:
        row("1,000 streams, 50/s: ≥ 99% delivered", f"{_f(100 * a.delivered_ratio)}%",
            a.delivered_ratio >= 0.99)
        row("1,000 streams, 50/s: p99 ≤ 20 ms", f"{_f(a.p99_ms)} ms", a.p99_ms <= 20)
        if peer and peer.received:
            r = a.us_per_delivery / peer.us_per_delivery
            row("1,000 streams, 50/s: CPU/delivery ≤ 1/3 of sse-starlette's",
                f"{_f(a.us_per_delivery)} vs {_f(peer.us_per_delivery)} µs = {_f(r, 2)}x"
                + floor(1000, 50), r <= 1 / 3)
        else:
            row("1,000 streams, 50/s: CPU/delivery ≤ 1/3 of sse-starlette's",
                "sse-starlette not run", None)
    b = find(steps, "sse_kit", 1000, 10)
    if b:
        row("1,000 streams, 10/s: p99 ≤ 10 ms", f"{_f(b.p99_ms)} ms" + floor(1000, 10),
            b.p99_ms <= 10)
    c = find(steps, "sse_kit", 10000, 5)
    if c:
        row("10,000 streams, 5/s: p99 ≤ 100 ms", f"{_f(c.p99_ms)} ms "
            f"({_f(100 * c.delivered_ratio)}% delivered)" + floor(10000, 5), c.p99_ms <= 100)
        row("10,000 streams: ≤ 32 KiB RSS per idle stream", f"{_f(c.rss_per_stream_kib)} KiB",
            c.rss_per_stream_kib <= 32)
    if micro:
        for kind, by_n in micro.items():
            lo, hi = by_n[min(by_n)], by_n[max(by_n)]
            row(f"{kind} broadcast: cost with {max(by_n):,} vs {min(by_n):,} other clients "
                "within 2x", f"{_f(hi, 2)} vs {_f(lo, 2)} µs = {_f(hi / lo, 2)}x", hi / lo <= 2)
    local, redis = find(steps, "sse_kit", 1000, 10), find(steps, "sse_kit_redis", 1000, 10)
    if local and redis:
        added = redis.p99_ms - local.p99_ms
        row("Redis backplane, 1,000 streams, 10/s: added p99 ≤ 5 ms",
            f"{_f(redis.p99_ms)} vs {_f(local.p99_ms)} ms = {_f(added)} ms added", added <= 5)
    else:
        row("Redis backplane, 1,000 streams, 10/s: added p99 ≤ 5 ms", "not run", None)
    row("Redis backplane: two workers on two cores ≥ 1.6x one worker",
        "not measured: needs a third core for the load generator", None)
    return out


def targets_15(steps: list[Step]) -> list[str]:
    """issue 15: event streams over HTTP/2, beside the same rates over HTTP/1.1."""
    out = ["| step | over HTTP/2 (TLS, 10 connections) | over HTTP/1.1 (plain, one "
           "connection per stream) | HTTP/2 ÷ HTTP/1.1 |", "|---|---|---|---|"]

    def cell(x: Step) -> str:
        return (f"{_f(100 * x.delivered_ratio)}% delivered, {x.gaps} gaps, p99 "
                f"{_f(x.p99_ms)} ms, {_f(x.us_per_delivery)} µs/delivery"
                + ("" if x.valid else " (invalid: load generator saturated)"))

    for name, h1 in (("sse_kit_h2", "sse_kit"), ("starlette_h2", "starlette")):
        for rate in (10, 50):
            s, b = find(steps, name, 1000, rate), find(steps, h1, 1000, rate)
            if s is None:
                out.append(f"| {_label(name)}, 1,000 x {rate}/s | not run | - | - |")
                continue
            ratio = "-" if b is None else (f"p99 {_f(s.p99_ms / b.p99_ms, 2)}x, CPU "
                                           f"{_f(s.us_per_delivery / b.us_per_delivery, 2)}x")
            out.append(f"| {_label(name)}, 1,000 x {rate}/s | {cell(s)} | "
                       f"{'-' if b is None else cell(b)} | {ratio} |")
    return out


def targets_11(steps: list[Step], failures: list[str]) -> list[str]:
    """issue 11: streams that hold no thread (sse_kit = the ThreadWorker, --threads 8)."""
    out = ["| target | measured | met? |", "|---|---|---|"]

    def row(name: str, measured: str, met: bool | None) -> None:
        out.append(f"| {name} | {measured} | {'yes' if met else 'no' if met is False else '-'} |")

    def not_run(n: int) -> str:
        why = [f for f in failures if f.startswith(f"{_label('sse_kit')}, {n:,} streams")]
        return "not run" + (f": {why[0].split(': ', 1)[1]}" if why else "")

    for n, rate, limit in ((10000, 5, 100.0), (19000, 2, 200.0)):
        s = find(steps, "sse_kit", n, rate)
        if s is None:
            row(f"{n:,} streams, one worker, --threads 8: every stream open", not_run(n), False)
            continue
        row(f"{n:,} streams, one worker, --threads 8: every stream open",
            f"{s.alive:,} of {n:,} open", s.alive == n)
        row(f"{n:,} streams: ≤ 16 threads in the worker", f"{_threads(s)} threads",
            s.worker_threads is not None and s.worker_threads <= 16)
        f = find(steps, "floor", n, rate)
        floor_rss = "" if f is None else f" (floor: {_f(f.rss_per_stream_kib)} KiB)"
        row(f"{n:,} streams: idle RSS ≤ 4 KiB per stream",
            f"{_f(s.rss_per_stream_kib)} KiB" + floor_rss, s.rss_per_stream_kib <= 4)
        floor_p99 = "" if f is None else (
            f"; floor p99 {_f(f.p99_ms)} ms ({_f(s.p99_ms / f.p99_ms, 2)}x); CPU "
            f"{_f(s.us_per_delivery)} vs the floor's {_f(f.us_per_delivery)} µs/delivery "
            f"({_f(s.us_per_delivery / f.us_per_delivery, 2)}x)")
        beyond = "" if f is None or f.p99_ms <= limit else (
            f"; **out of reach here: the floor itself misses it** ({n:,} writes x "
            f"{_f(f.us_per_delivery)} µs = {_f(n * f.us_per_delivery / 1e3, 0)} ms of fan-out "
            "spread on one core)")
        row(f"{n:,} x {rate}/s: 100% delivered, no gap, p99 ≤ {limit:g} ms",
            f"{_f(100 * s.delivered_ratio)}% delivered, {s.gaps} gaps, p99 {_f(s.p99_ms)} ms"
            + floor_p99 + beyond,
            s.delivered_ratio >= 1.0 and s.gaps == 0 and s.p99_ms <= limit)
        if n == 10000:
            row("while 10,000 streams receive 5/s: an ordinary route's p99 ≤ 20 ms",
                f"GET /ping p99 {_ping(s)} (p50 {_f(s.probe_p50_ms or float('nan'))} ms, max "
                f"{_f(s.probe_max_ms or float('nan'))} ms, {s.probes} answered)",
                s.probe_p99_ms is not None and s.probe_p99_ms <= 20)
    a, f = find(steps, "sse_kit", 1000, 50), find(steps, "floor", 1000, 50)
    before = find(steps, "sse_kit_before", 1000, 50)
    if a and before and before.received:
        row(f"1,000 x 50/s: CPU per delivery ≤ the previous fast path's (main at {BASELINE}, "
            "same run)", f"{_f(a.us_per_delivery)} vs {_f(before.us_per_delivery)} µs = "
            f"{_f(a.us_per_delivery / before.us_per_delivery, 2)}x",
            a.us_per_delivery <= before.us_per_delivery)
    elif a:
        row("1,000 x 50/s: CPU per delivery ≤ the previous fast path's (same run)",
            f"{_f(a.us_per_delivery)} µs; the previous fast path did not run", None)
        if f and f.received:
            r = a.us_per_delivery / f.us_per_delivery
            fan = a.fanout_us_per_delivery
            alone = "" if fan is None else (
                f"; the hub thread alone (the fan-out, without the HTTP requests that publish "
                f"and probe): {_f(fan)} µs = {_f(fan / f.us_per_delivery, 2)}x")
            row("1,000 x 50/s: CPU per delivery within 1.3x the floor's (same run; an aim)",
                f"{_f(a.us_per_delivery)} vs {_f(f.us_per_delivery)} µs = {_f(r, 2)}x" + alone,
                r <= 1.3)
    slow = find(steps, "sse_kit_slow", 1000, 50)
    if slow is None:
        row("a client that stops reading costs ≤ client_buffer_bytes, is cut or dropped, "
            "the others keep their p99", "not run", None)
    else:
        budget = 8 * slow.stalled  # KiB: client_buffer_bytes (8 KiB) per stalled stream
        grown = slow.rss_growth_kib or 0.0
        # RSS moves by hundreds of KiB over any step (allocator, history): the growth
        # the stalled clients cause is the growth beyond the same step without them.
        extra = grown - (a.rss_growth_kib or 0.0) if a is not None else grown
        row(f"{slow.stalled} of 1,000 clients stop reading (client_buffer_bytes 8 KiB, "
            "slow_client='disconnect'): each is cut", f"{slow.cut} cut, {slow.dropped} dropped",
            slow.cut == slow.stalled)
        row("… the server's RSS grows by ≤ client_buffer_bytes per stalled client "
            f"({budget} KiB) more than the same step without them",
            f"{_f(grown, 0)} KiB over the step"
            + ("" if a is None or a.rss_growth_kib is None else
               f", {_f(a.rss_growth_kib, 0)} KiB without stalled clients: {_f(extra, 0)} KiB"),
            extra <= budget)
        if a:
            row("… the other 990 keep their p99 (within 20% or 2 ms of the step without)",
                f"{_f(slow.p99_ms)} vs {_f(a.p99_ms)} ms, "
                f"{_f(100 * slow.delivered_ratio)}% delivered, {slow.gaps} gaps",
                slow.gaps == 0 and slow.p99_ms <= max(1.2 * a.p99_ms, a.p99_ms + 2))
    return out


def slow_table(steps: list[Step]) -> list[str]:
    """The slow-client step beside the same step without stalled clients."""
    rows = [s for s in (find(steps, "sse_kit", 1000, 50), find(steps, "sse_kit_slow", 1000, 50))
            if s is not None]
    if not rows:
        return ["(not run)"]
    out = ["| system | clients that stop reading | others: delivered | gaps | p50 | p99 | max "
           "| streams cut | deliveries dropped | server RSS growth over the step "
           "| GET /ping p99 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        out.append(f"| {_label(s.system)} | {s.stalled} | {_f(100 * s.delivered_ratio)}% "
                   f"| {s.gaps} | {_f(s.p50_ms)} ms | {_f(s.p99_ms)} ms | {_f(s.max_ms)} ms "
                   f"| {s.cut} | {s.dropped} | {_f(s.rss_growth_kib or 0.0, 0)} KiB "
                   f"| {_ping(s)} |")
    return out


def write(
    path: Path,
    steps: list[Step],
    *,
    micro: dict[str, dict[int, float]] | None,
    info: dict[str, str],
    load_after: str,
    mode: str,
    failures: list[str],
    skipped: list[str],
    command: str,
    seconds: float,
    p99_limit_ms: float,
    chart: Path | None,
    elapsed_s: float,
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` ({mode} plan) in {elapsed_s / 60:.1f} minutes. Rerun it on "
        "your own machine: every figure below comes from that one command, nothing is edited "
        "by hand.",
        "",
        "## Conditions",
        "",
        f"- Machine: {info['cpu']}; Linux {info['kernel']}; Python {info['python']}.",
        f"- Load average (1/5/15 min) at the start: {info['load']}; at the end: {load_after}. "
        "**If these are well above 1, other work shared the machine and every figure is "
        "pessimistic and noisy.**",
        "- Pinning: the system under test (every process of it, Redis included for flask-sse) "
        "on CPU 0 (`taskset -c 0`); the C epoll load generator and the publisher on CPU 1.",
        f"- Versions: {info['versions']}.",
        "- Events: ~100-byte `data:` lines `B <seq> <scheduled time µs> <padding>`, broadcast "
        "to every stream by an open-loop publisher (one `POST /publish` per event over a "
        "keep-alive connection). Each event carries its *scheduled* send time, so a stalled "
        "publisher or server shows as latency.",
        f"- Each step publishes for {seconds:g} s, then waits 2 s for stragglers. Latency is "
        "receive time minus scheduled time, over every delivery of the step. *gaps* are "
        "sequence numbers a stream skipped; *delivered* counts deliveries that arrived before "
        "the step closed. Server CPU is utime+stime of the whole process tree from /proc. "
        "RSS/stream is (RSS with every stream open and idle - RSS before) ÷ streams.",
        "- A step whose load generator used more than 70% of its core is marked invalid. The "
        "last column of *Every step* is the machine's 1-minute load average as the step ended: "
        "a step run while other work loaded the machine is not comparable with one run on a "
        "quiet machine.",
        "",
        "## Targets (issue 11: streams that hold no thread)",
        "",
        "sse_kit here is `gunicorn -w 1 -k sse_kit.gunicorn.ThreadWorker --threads 8` with no "
        "config file (`--worker-connections` 2 x streams); the floor is the same run's bare "
        "`os.write` loop.",
        "",
        *targets_11(steps, failures),
        "",
        "## HTTP/2 (issue 15)",
        "",
        "The same app and worker class served over TLS with `--http-protocols h2,h1`; the "
        "load generator (`bench/h2client.py`, Python's `h2` over `ssl`) opens 10 "
        "connections and 100 streams on each, as a browser multiplexes its tabs' streams "
        "on one connection per origin. Beside it, the same step over plain HTTP/1.1 "
        "(`bench/client.c`, one connection per stream). The HTTP/2 figures include TLS "
        "(encryption and framing per DATA frame); the HTTP/1.1 ones have none. sse-starlette "
        "is served by hypercorn (uvloop), the HTTP/2 server on the registry for it.",
        "",
        *targets_15(steps),
        "",
        "## Targets (issue 5)",
        "",
        *targets(steps, micro),
        "",
        *NOTES,
        "",
    ]
    if failures:
        lines += ["## Sessions that did not finish", "",
                  "A session ends early when its system stops answering (a `POST /publish` "
                  "not answered within 30 s) or cannot open every stream; its later steps, "
                  "targets included, were not run.", "",
                  *[f"- {f}" for f in failures], ""]
    if skipped:
        lines += ["## Sessions left out of the plan, and why", "",
                  *[f"- {f}" for f in skipped], ""]
    for streams, rate, title in ((1000, 50, "1,000 streams, 50 broadcasts/s (50k deliveries/s)"),
                                 (1000, 10, "1,000 streams, 10 broadcasts/s"),
                                 (10000, 5, "10,000 streams, 5 broadcasts/s"),
                                 (19000, 2, "19,000 streams, 2 broadcasts/s")):
        lines += [f"## {title}", "", *scenario_table(steps, streams, rate), ""]
    lines += ["## Clients that stop reading (1,000 streams, 50 broadcasts/s)", "",
              "The first streams of the load generator ask for a 4 KiB receive buffer and "
              "never read after the headers; the hub's `client_buffer_bytes` is 8 KiB "
              "(`SSE_CLIENT_BUFFER_BYTES`), `slow_client` its default with history "
              "(`disconnect`), and every stream socket of this system gets `SO_SNDBUF` 4 KiB "
              "(`SSE_STREAM_SNDBUF`): on loopback the kernel would otherwise hold megabytes "
              "for a client that stops reading before sse_kit's own buffer is reached. "
              "*others* are the streams that keep reading; *cut* and "
              "*dropped* are the hub's counters (`slow_disconnects` + `write_timeouts`, "
              "`dropped`) over the step; RSS growth is the server's RSS after the step minus "
              "before it.", "", *slow_table(steps), ""]
    best = ramp(steps, p99_limit_ms)
    systems = list(dict.fromkeys(s.system for s in steps))
    sizes = sorted({s.streams for s in steps})
    lines += [
        f"## Highest rate with p99 ≤ {p99_limit_ms:g} ms (coarse ramp)",
        "",
        "Deliveries per second (broadcasts/s x streams) of the highest ramp step that kept "
        f"p99 ≤ {p99_limit_ms:g} ms, ≥ 99% delivered and no gap; the ramp stops at the first "
        "failing step, so the true maximum lies between this step and the next.",
        "",
        "| system | " + " | ".join(f"{n:,} streams" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for name in systems:
        cells = []
        for n in sizes:
            if (name, n) not in best:
                cells.append("not run")
                continue
            s = best[(name, n)]
            cells.append("none passed" if s is None else
                         f"{_f(s.delivered_per_s, 0)}/s (p99 {_f(s.p99_ms)} ms, "
                         f"{_f(s.us_per_delivery)} µs)")
        lines.append(f"| {_label(name)} | " + " | ".join(cells) + " |")
    base = {n: best.get(("sse_kit", n)) for n in sizes}
    lines += ["", "sse_kit's maximum ÷ each peer's:", "",
              "| peer | " + " | ".join(f"{n:,} streams" for n in sizes) + " |",
              "|---|" + "---|" * len(sizes)]
    for name in systems:
        if name == "sse_kit":
            continue
        cells = []
        for n in sizes:
            mine, theirs = base.get(n), best.get((name, n))
            cells.append(f"{_f(mine.delivered_per_s / theirs.delivered_per_s, 2)}x"
                         if mine and theirs else "-")
        lines.append(f"| {_label(name)} | " + " | ".join(cells) + " |")
    if chart is not None:
        lines += ["", f"![throughput and p99 against streams]({chart.name})"]
    if micro:
        lines += ["", "## Routing cost against other clients (in-process)", "",
                  "Hub work per broadcast, by pattern kind, with other clients connected "
                  "(`bench/micro.py`; best of three). Broadcasts alternate between a pattern "
                  "that matches one client and a twin that matches none, so the hub never "
                  "routes two as one batch.", "",
                  "| pattern | " + " | ".join(f"{n:,} others" for n in sorted(micro['exact']))
                  + " |", "|---|" + "---|" * len(micro["exact"])]
        for kind, by_n in micro.items():
            lines.append(f"| {kind} | " + " | ".join(f"{_f(by_n[n], 2)} µs" for n in sorted(by_n))
                         + " |")
    lines += ["", "## Every step", "",
              "| system | streams | rate/s | delivered/s | delivered | gaps | p50 ms | p99 ms "
              "| max ms | µs/delivery | server CPU | client CPU | publisher lag ms "
              "| threads (worker) | GET /ping p99 | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lines.append(
            f"| {s.system} | {s.streams} | {s.rate:g} | {_f(s.delivered_per_s, 0)} "
            f"| {_f(100 * s.delivered_ratio)}% | {s.gaps} | {_f(s.p50_ms)} | {_f(s.p99_ms)} "
            f"| {_f(s.max_ms)} | {_f(s.us_per_delivery)} | {_f(s.server_cpu_pct, 0)}% "
            f"| {_f(s.client_cpu_pct, 0)}% | {_f(s.publisher_lag_ms)} "
            f"| {s.threads} ({_threads(s)}) | {_ping(s)} "
            f"| {'?' if s.load1 is None else _f(s.load1)} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, steps: list[Step], p99_limit_ms: float) -> bool:
    """A PNG of max deliveries/s and p99 against streams; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    best = ramp(steps, p99_limit_ms)
    systems = list(dict.fromkeys(s.system for s in steps))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in systems:
        pts = sorted((n, s) for (sys_, n), s in best.items() if sys_ == name and s is not None)
        if not pts:
            continue
        xs = [n for n, _ in pts]
        ax1.plot(xs, [s.delivered_per_s for _, s in pts], marker="o", label=_label(name))
        ax2.plot(xs, [s.p99_ms for _, s in pts], marker="o", label=_label(name))
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("open streams")
        ax.grid(True, alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel(f"max deliveries/s at p99 ≤ {p99_limit_ms:g} ms")
    ax2.set_ylabel("p99 latency at that rate (ms)")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    fig.suptitle("One worker on one core; load generator on the other")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def to_json(steps: list[Step]) -> list[dict[str, Any]]:
    return [s.as_dict() for s in steps]
