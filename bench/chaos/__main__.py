"""``python -m bench.chaos``: the chaos soak (``make soak``, ``make soak-smoke``).

Runs two scenarios, one after the other, each with real local processes:

* ``redis``: gunicorn ``-w 2 -k sse_kit.gunicorn.ThreadWorker`` with the Redis
  backplane reached through three Sentinels (a master and a replica); faults:
  SIGKILL a worker, SIGSTOP the Redis master for 3 s, a burst of connects,
  SIGHUP the gunicorn master, kill the Redis master (Sentinel promotes the replica);
* ``local``: one worker, no Redis (resumes from the hub's history only); faults:
  SIGKILL the worker, a burst, SIGHUP.

Under churn, slow readers and three publishers (``POST /publish``, the app's
background thread, and a RedisBackplane in this process, or a second POST
publisher without Redis), every event is parsed and checked
(:mod:`bench.chaos.ledger`); the summary goes to ``bench/out/chaos.md``.
Exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

from bench.chaos.report import render
from bench.chaos.scenario import Plan, Scenario

OUT = Path(__file__).resolve().parent.parent / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the whole run (default 10)")
    parser.add_argument("--smoke", action="store_true",
                        help="about a minute: 200 streams, each fault once")
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--only", choices=["redis", "local"], help="run one scenario")
    args = parser.parse_args(argv)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # gunicorn inherits it
    if args.smoke:
        plan = Plan(streams=args.streams or 200, burst=200, seconds=0)
        minutes = None
        shares = (0.0, 0.0)
    else:
        plan = Plan(streams=args.streams or 2000, burst=1000, seconds=0, spacing=10.0)
        minutes = args.minutes
        shares = (args.minutes * 60 * 2 / 3, args.minutes * 60 / 3)
    where = Path(tempfile.mkdtemp(prefix="sse-chaos-"))
    print(f"chaos soak: {plan.streams} streams; logs under {where}", flush=True)
    results = []
    for (name, redis), seconds in zip((("redis", True), ("local", False)), shares, strict=True):
        if args.only not in (None, name):
            continue
        scenario_plan = Plan(**{**plan.__dict__, "seconds": seconds})
        results.append(Scenario(name, scenario_plan, where / name, redis=redis).run())
    text = render(results, plan, minutes)
    OUT.mkdir(exist_ok=True)
    (OUT / "chaos.md").write_text(text)
    print(text)
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
