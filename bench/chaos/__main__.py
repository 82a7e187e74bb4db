"""``python -m bench.chaos``: the chaos soak (``make soak``, ``make soak-smoke``).

Runs three scenarios (the smoke: the first and the last), one after the other,
each with real local processes:

* ``redis``: gunicorn ``-w 2 -k sse_kit.gunicorn.ThreadWorker`` with the Redis
  backplane reached through three Sentinels (a master and a replica, with AOF);
  faults: SIGKILL a worker, SIGSTOP the Redis master for 3 s, a burst of
  connects, SIGHUP the gunicorn master, kill the Redis master (Sentinel promotes
  the replica), a worker reaching ``max_requests``, restart the master on its AOF;
* ``gthread``: the same with ``-k gthread`` and sse_kit's hooks in a config file;
* ``local``: one worker, no Redis (resumes from the hub's history only); faults:
  SIGKILL the worker, a burst, SIGHUP, ``max_requests``.

Under churn, slow readers and publishers from several places (``POST
/publish``, the app's background thread, a RedisBackplane in this process and
``python -m sse_kit publish --sentinel`` processes; a second POST publisher
without Redis), every event is parsed and checked (:mod:`bench.chaos.ledger`)
and the workers' memory, threads and descriptors are sampled
(:mod:`bench.chaos.resources`). The report goes to ``bench/out/chaos.md``, and
after a full run to ``docs/reliability.md`` (with ``docs/reliability.png`` when
matplotlib is installed). Exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.chaos.report import Conditions, plot, render, write_usage
from bench.chaos.scenario import Plan, Scenario

OUT = Path(__file__).resolve().parent.parent / "out"
DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
# name, with Redis, -k gthread with hooks, share of --minutes (the smoke skips gthread)
SCENARIOS = (("redis", True, False, 0.5), ("gthread", True, True, 0.25),
             ("local", False, False, 0.25))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the whole run (default 10)")
    parser.add_argument("--smoke", action="store_true",
                        help="about a minute: 200 streams, each fault once")
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--only", choices=[s[0] for s in SCENARIOS], help="run one scenario")
    parser.add_argument("--plot", type=Path, metavar="CSV",
                        help="only draw docs/reliability.png from a run's usage CSV")
    args = parser.parse_args(argv)
    if args.plot:
        if not plot(args.plot, DOCS / "reliability.png"):
            print("matplotlib is not installed: pip install matplotlib", file=sys.stderr)
            return 2
        return 0

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # gunicorn inherits it
    streams = args.streams or (200 if args.smoke else 2000)
    # max_requests: far above what churn brings a worker between two SIGHUPs, so the
    # scheduled fault (requests until one worker reaches it) is what retires it.
    if args.smoke:
        plan = Plan(streams=streams, burst=200, seconds=0, spacing=2.0, max_requests=1000)
        minutes = None
    else:
        plan = Plan(streams=streams, burst=1000, seconds=0, spacing=10.0, cycles=2,
                    max_requests=4 * streams)
        minutes = args.minutes
    where = Path(tempfile.mkdtemp(prefix="sse-chaos-"))
    print(f"chaos soak: {plan.streams} streams; logs under {where}", flush=True)
    began, load_before = time.monotonic(), os.getloadavg()
    results = []
    for name, redis, hooks, share in SCENARIOS:
        if args.only not in (None, name) or (args.smoke and hooks and args.only is None):
            continue
        seconds = 0.0 if minutes is None else minutes * 60 * share
        cycles = 1 if hooks else plan.cycles  # issue 14: the hooks run once
        scenario_plan = Plan(**{**plan.__dict__, "seconds": seconds, "cycles": cycles})
        results.append(Scenario(name, scenario_plan, where / name, redis=redis,
                                hooks=hooks).run())
    OUT.mkdir(exist_ok=True)
    usage = OUT / "chaos-usage.csv"
    write_usage(usage, results)
    full = minutes is not None and args.only is None
    png = "reliability.png" if full and plot(usage, DOCS / "reliability.png") else None
    conditions = Conditions(minutes, load_before, os.getloadavg(),
                            (time.monotonic() - began) / 60)
    text = render(results, plan, conditions, png)
    (OUT / "chaos.md").write_text(text)
    if full:
        (DOCS / "reliability.md").write_text(text)
    print(text)
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
