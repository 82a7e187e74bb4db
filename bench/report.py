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
from bench.systems import SYSTEMS

PEERS = ("starlette", "flask_sse", "handrolled", "sse_kit_queue")

# Written into every report: what the tables cannot say by themselves.
NOTES = [
    "How to read this:",
    "",
    "- *sse_kit* is the default configuration under gunicorn gthread: the fast path (the hub "
    "thread writes each event to the sockets itself; the share of deliveries it wrote is "
    "`fast_share` in `benchmarks.json`, the raw results beside this page). "
    "*sse_kit, fast path off* is the portable queue path every other WSGI server gets.",
    "- A broadcast to N streams is N `send()` calls made one after another, so the last stream "
    "of a fan-out gets the event N x (CPU per delivery) after the first: at 1,000 streams, "
    "10 µs per delivery is 10 ms of spread. p99 at 1,000+ streams is mostly that spread plus any "
    "time the server's core was taken by another process.",
    "- Server CPU % below 100 with a failing p99 means the core was shared (see the load "
    "average above) or the latency came from the fan-out spread, not from saturation.",
    "- RSS per idle stream: gunicorn gthread itself costs ~28 KiB per open response whose thread "
    "is parked (measured with a bare WSGI generator that yields once and waits: the thread's "
    "touched stack, 12 KiB, plus gunicorn's per-connection state); sse_kit adds ~2 KiB, Flask "
    "~1 KiB more. A parked thread keeps every stack page its request touched, so sse_kit keeps "
    "the request path shallow (see docs/performance.md).",
    "- *floor* is not a server: one thread writes each event's pre-framed chunk to every socket "
    "with a bare `os.write` loop (`bench/apps/floor.py`). It is what one `write(2)` per delivery "
    "costs on this machine, kernel and loopback included: no system that writes each event to "
    "each socket separately can go below its CPU per delivery or its fan-out spread.",
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
        "| server CPU µs/delivery | ÷ sse_kit's | server CPU | client CPU | RSS/stream "
        "| threads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        ratio = (
            s.us_per_delivery / base.us_per_delivery if base and base.received else float("nan")
        )
        flag = "" if s.valid else " **(invalid: client > 70%)**"
        out.append(
            f"| {_label(s.system)}{flag} | {_f(s.delivered_per_s, 0)} ({_f(s.offered, 0)}) "
            f"| {_f(100 * s.delivered_ratio)}% | {s.gaps} | {_f(s.p50_ms)} ms | {_f(s.p99_ms)} ms "
            f"| {_f(s.p999_ms)} ms | {_f(s.max_ms)} ms | {_f(s.us_per_delivery)} "
            f"| {_f(ratio, 2) + 'x' if ratio == ratio else '-'} | {_f(s.server_cpu_pct, 0)}% "
            f"| {_f(s.client_cpu_pct, 0)}% "
            f"| {_f(s.rss_per_stream_kib)} KiB | {s.threads} |"
        )
    return out


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


def write(
    path: Path,
    steps: list[Step],
    *,
    micro: dict[str, dict[int, float]] | None,
    info: dict[str, str],
    load_after: str,
    mode: str,
    failures: list[str],
    seconds: float,
    p99_limit_ms: float,
    chart: Path | None,
    elapsed_s: float,
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{'make bench' if mode == 'full' else 'python -m bench --' + mode}` "
        f"in {elapsed_s / 60:.1f} minutes. Rerun it on your own machine: every figure below "
        "comes from that one command, nothing is edited by hand.",
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
    for streams, rate, title in ((1000, 50, "1,000 streams, 50 broadcasts/s (50k deliveries/s)"),
                                 (1000, 10, "1,000 streams, 10 broadcasts/s"),
                                 (10000, 5, "10,000 streams, 5 broadcasts/s")):
        lines += [f"## {title}", "", *scenario_table(steps, streams, rate), ""]
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
              "| max ms | µs/delivery | server CPU | client CPU | publisher lag ms | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        lines.append(
            f"| {s.system} | {s.streams} | {s.rate:g} | {_f(s.delivered_per_s, 0)} "
            f"| {_f(100 * s.delivered_ratio)}% | {s.gaps} | {_f(s.p50_ms)} | {_f(s.p99_ms)} "
            f"| {_f(s.max_ms)} | {_f(s.us_per_delivery)} | {_f(s.server_cpu_pct, 0)}% "
            f"| {_f(s.client_cpu_pct, 0)}% | {_f(s.publisher_lag_ms)} "
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
