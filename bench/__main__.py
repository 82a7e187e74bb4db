"""``python -m bench``: sse_kit against its peers, side by side, one command.

Modes (time-bounded, fully automatic):

* default (``make bench``): every available system, 100 / 1,000 / 10,000 streams,
  the issues' target rates plus a coarse ramp; 19,000 streams for sse_kit and the
  floor only (see SKIP); one step where 1% of the clients stop reading; writes
  ``docs/benchmarks.md`` and ``docs/benchmarks.png`` (~20 minutes);
* ``--quick``: the same systems, fewer and shorter steps, no 10,000 (~5 minutes);
  writes ``bench/out/quick.md``; ``--quick --streams 100,1000,10000,19000`` adds the
  full plan's big sessions to it;
* ``--smoke`` (``make bench-smoke``, CI): sse_kit (its worker class, and gthread
  with its hooks) and the hand-rolled pattern only (no extra package), 20
  streams, two short steps; proves the harness works and fails if a stream loses
  an event (< 1 minute); writes ``bench/out/smoke.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import micro, report
from bench.runner import Step, session
from bench.systems import ROOT, SYSTEMS

OUT = ROOT / "bench" / "out"
CLIENT_SOURCE = ROOT / "bench" / "client.c"
CLIENT = OUT / "client"

# (streams, rates to try in order, rates run even after a failure)
FULL = [
    (100, [100, 200, 500, 1000, 2000, 4000], set()),
    (1000, [10, 50, 100, 200, 400], {10, 50}),
    (10000, [5, 10, 20, 40], {5}),
    (19000, [2, 5], {2}),
]
QUICK = [
    (100, [200, 1000], set()),
    (1000, [10, 50], {10, 50}),
]
SMOKE = [(20, [20, 100], {20, 100})]

# Sessions the full and quick plans leave out, and why (system -> streams -> reason).
# Each is listed in the report.
_THREADS = ("it holds a thread per stream: {n:,} streams need {t:,} threads in one worker")
SKIP: dict[str, dict[int, str]] = {
    "starlette": {19000: "it already misses p99 ≤ 100 ms by 25x at 10,000 x 5/s"},
    "flask_sse": {19000: "it needs two descriptors per stream (38,000 > the 20,000 fd limit)"},
    "handrolled": {n: _THREADS.format(n=n, t=n + 50) for n in (10000, 19000)},
    "sse_kit_queue": {n: _THREADS.format(n=n, t=n + 50) + "; run at 1,000 only"
                      for n in (10000, 19000)},
    "sse_kit_before": {n: _THREADS.format(n=n, t=n + 50) + "; run at 1,000 only"
                       for n in (10000, 19000)},
}
# Systems run at some sizes and rates only: system -> streams -> (rates, must run).
ONLY: dict[str, dict[int, tuple[list[float], set[float]]]] = {
    "sse_kit_hooks": {1000: ([10, 50], {10, 50}), 10000: ([5], {5})},
    "sse_kit_queue": {1000: ([10, 50], {10, 50})},
    "sse_kit_before": {1000: ([10, 50], {10, 50})},
    "sse_kit_h2": {1000: ([10, 50], {10, 50})},
    "starlette_h2": {1000: ([10, 50], {10, 50})},
    "sse_kit_redis": {1000: ([10, 50, 100, 200, 400], {10, 50})},
    "sse_kit_slow": {1000: ([50], {50})},
}
STALL = 10  # sse_kit_slow: streams (of 1,000) that stop reading


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's fd limit (inherited by servers and client); return it.

    flask-sse holds two descriptors per stream (the client and its Redis
    connection), so 10,000 streams need more than 20,000.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(wanted, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):  # raising the hard limit needs privileges
            continue
    return soft


def build_client() -> Path:
    """Compile the C load generator if it is missing or older than its source."""
    if not CLIENT.exists() or CLIENT.stat().st_mtime < CLIENT_SOURCE.stat().st_mtime:
        OUT.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
        subprocess.run([cc, "-O2", "-o", str(CLIENT), str(CLIENT_SOURCE)], check=True)
    return CLIENT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="CI check of the harness (< 1 min)")
    mode.add_argument("--quick", action="store_true", help="fewer, shorter steps (~4 min)")
    parser.add_argument("--systems", help="comma-separated subset of: " + ", ".join(SYSTEMS))
    parser.add_argument("--streams", help="comma-separated subset of the plan's stream counts")
    parser.add_argument("--seconds", type=float, help="publishing time per step")
    parser.add_argument("--out", type=Path, help="markdown report path")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only rewrite the report from a run's saved results (the .json"
                             " written beside the report)")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render, args.out or ROOT / "docs" / "benchmarks.md")

    kind = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = {"smoke": SMOKE, "quick": QUICK, "full": FULL}[kind]
    if args.streams:
        wanted = {int(n) for n in args.streams.split(",")}
        plan = [p for p in plan if p[0] in wanted] + [
            p for p in FULL if p[0] in wanted and p[0] not in {q[0] for q in plan}]
    seconds = args.seconds or {"smoke": 2.0, "quick": 3.0, "full": 8.0}[kind]
    default_systems = (["sse_kit", "sse_kit_hooks", "handrolled"] if kind == "smoke" else
                       ["sse_kit", "sse_kit_slow", "sse_kit_hooks", "starlette", "flask_sse",
                        "handrolled", "sse_kit_queue", "sse_kit_before", "sse_kit_redis",
                        "sse_kit_h2", "starlette_h2", "floor"])
    names = args.systems.split(",") if args.systems else default_systems
    out = args.out or (ROOT / "docs" / "benchmarks.md" if kind == "full" else OUT / f"{kind}.md")

    if shutil.which("taskset") is None:
        print("bench: taskset (util-linux) is required for CPU pinning", file=sys.stderr)
        return 2
    hard = raise_fd_limit()
    if max(n for n, _, _ in plan) + 100 > hard:
        print(f"bench: the fd limit ({hard}) is too low for {max(n for n, _, _ in plan)} "
              "streams; raise `ulimit -Hn`", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {1})  # the publisher runs here, beside the load generator
    client = build_client()
    OUT.mkdir(parents=True, exist_ok=True)
    info = report.machine()
    started = time.monotonic()
    print(f"bench ({kind}): load average {info['load']}", flush=True)

    steps: list[Step] = []
    failures: list[str] = []
    skipped: list[str] = []
    for name in names:
        system = SYSTEMS[name]
        why = system.available()
        if why is not None:
            print(f"bench: skipping {name}: {why}", flush=True)
            continue
        for streams, rates, must in plan:
            if kind != "smoke" and name in ONLY:
                if streams not in ONLY[name]:
                    continue
                rates, must = ONLY[name][streams]
            if kind != "smoke" and streams in SKIP.get(name, {}):
                skipped.append(f"{system.label}, {streams:,} streams: {SKIP[name][streams]}")
                continue
            if system.needs_redis and 2 * streams + 200 > hard:
                failures.append(f"{system.label}, {streams:,} streams: not run: it needs two "
                                f"descriptors per stream and the fd limit is {hard}")
                print(f"  {failures[-1]}", flush=True)
                continue
            done, error = session(system, streams, rates, seconds=seconds,
                                  client_binary=client, log_dir=OUT, must_run=must,
                                  stall=STALL if name == "sse_kit_slow" else 0)
            steps += done
            if error is not None:
                failures.append(f"{system.label}, {streams:,} streams: {error}")
                print(f"  {name} with {streams} streams stopped: {error}", flush=True)

    routing = micro.run(broadcasts=2000 if kind == "smoke" else 20_000)
    print(f"routing cost (µs/broadcast): {routing}", flush=True)
    chart = out.with_suffix(".png")
    has_chart = kind != "smoke" and report.plot(chart, steps, 100.0)
    load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    report.write(out, steps, micro=routing, info=info, load_after=load_after, mode=kind,
                 failures=failures, skipped=skipped, command=_command(kind, argv),
                 seconds=seconds, p99_limit_ms=100.0, chart=chart if has_chart else None,
                 elapsed_s=time.monotonic() - started)
    out.with_suffix(".json").write_text(json.dumps(
        {"info": info, "routing": routing, "steps": report.to_json(steps), "mode": kind,
         "failures": failures, "skipped": skipped, "command": _command(kind, argv),
         "seconds": seconds, "load_after": load_after, "elapsed_s": time.monotonic() - started},
        indent=1))
    print(f"bench: wrote {out} in {(time.monotonic() - started) / 60:.1f} min", flush=True)

    if kind == "smoke":
        return smoke_verdict(steps, names) or (1 if failures else 0)
    return 0


def _command(kind: str, argv: list[str] | None) -> str:
    """How the report names the command that produced it."""
    args = sys.argv[1:] if argv is None else argv
    return "make bench" if kind == "full" and not args else " ".join(["python -m bench", *args])


def render(saved: Path, out: Path) -> int:
    """Rewrite the report (and chart) from a run's saved results."""
    data = json.loads(saved.read_text())
    fields = set(Step.__dataclass_fields__)
    steps = [Step(**{k: v for k, v in s.items() if k in fields}) for s in data["steps"]]
    routing = {kind: {int(n): us for n, us in by_n.items()}
               for kind, by_n in data["routing"].items()}
    chart = out.with_suffix(".png")
    has_chart = report.plot(chart, steps, 100.0)
    report.write(out, steps, micro=routing, info=data["info"], failures=data.get("failures", []),
                 skipped=data.get("skipped", []), command=data.get("command", "make bench"),
                 load_after=data.get("load_after", "unknown"), mode=data.get("mode", "full"),
                 seconds=data.get("seconds", 0.0), p99_limit_ms=100.0,
                 chart=chart if has_chart else None, elapsed_s=data.get("elapsed_s", 0.0))
    print(f"bench: wrote {out} from {saved}")
    return 0


def smoke_verdict(steps: list[Step], names: list[str]) -> int:
    """The smoke run fails if a system did not run or a stream lost an event."""
    problems = [f"{name}: no step ran" for name in names
                if not any(s.system == name for s in steps)]
    for s in steps:
        if s.received == 0 or s.gaps or s.delivered_ratio < 0.99:
            problems.append(f"{s.system} at {s.rate:g}/s: {s.received}/{s.expected} "
                            f"delivered, {s.gaps} gaps")
    for p in problems:
        print(f"bench-smoke: FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
