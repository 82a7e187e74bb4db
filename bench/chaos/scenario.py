"""One scenario of the chaos soak: start the system, load it, inject faults on a
schedule, time each recovery, then check the end state.

The orchestrating thread (this module) owns the servers and the fault
schedule; the load thread owns the sockets (:mod:`bench.chaos.load`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.chaos.ledger import Violation
from bench.chaos.load import Load, Slot
from bench.chaos.publishers import Publisher, backplane_publisher, cli_publisher, post_publisher
from bench.chaos.resources import Sampler, Usage, within
from bench.chaos.system import RedisSet, start_gunicorn, stats_of_every_worker
from tests._live import GunicornServer, wait_for

RECOVERY_BOUND = 30.0  # seconds from a fault until every live stream gets a new event
SETTLE = 60.0  # seconds allowed for a state to be reached at start and end (a busy host)
RATE = 2.0  # events per second from each publisher
# gunicorn log lines a fault explains: the master reporting the worker we SIGKILLed;
# a worker that SIGHUP is retiring refusing (503) a stream it accepted after its hub stopped.
AUTORESTART = "Autorestarting worker after current request."  # gunicorn's max_requests line
EXPLAINED = re.compile(r"Worker \(pid:\d+\) was sent SIGKILL"
                       r"|refused client '[^']*': a new stream on a hub that was stopped")
# How a publish may fail: the backplane says so, the app answers 503, or the request
# finds no worker (one killed or restarting) or dies with it.
DOCUMENTED_FAILURES = {"BackplaneUnavailable", "HTTP 503", "ConnectError", "ReadTimeout",
                       "RemoteProtocolError", "ReadError", "ConnectTimeout"}


@dataclass
class Plan:
    """The load and the schedule of one run."""

    streams: int
    burst: int
    seconds: float  # how long the fault cycles go on (at least one cycle)
    spacing: float = 3.0  # seconds of plain load before each fault
    mute: int = 3
    slow_share: float = 0.05
    cycles: int = 1  # at least this many rounds of every fault
    max_requests: int = 0  # gunicorn --max-requests (0: the max-requests fault is skipped)


@dataclass
class Result:
    """What one scenario measured; :mod:`bench.chaos.report` prints it."""

    name: str
    published: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (ok, failed)
    publish_errors: dict[str, dict[str, int]] = field(default_factory=dict)
    seen_max: dict[str, int] = field(default_factory=dict)  # highest seq received per publisher
    delivered: int = 0
    resets: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    resumes: int = 0
    server_closes: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    recoveries: dict[str, list[float]] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    load_errors: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # what the run found about its gaps
    server: str = ""  # how gunicorn ran
    reconnect: dict[str, list[float]] = field(default_factory=dict)  # fault: cut-to-back seconds
    cut: Counter[str] = field(default_factory=Counter)  # fault: streams it cut
    settle: dict[str, list[float]] = field(default_factory=dict)  # fault: seconds to bounds
    baseline: Usage | None = None
    usage: list[Usage] = field(default_factory=list)
    autorestarts: int = 0  # workers that reached max_requests, driven or not
    started: float = 0.0  # monotonic, for the usage plot's time axis
    faults_at: list[tuple[str, float]] = field(default_factory=list)


class Scenario:
    """``redis=True``: two workers, backplane through Sentinel; else one worker, history
    only. ``hooks=True``: ``-k gthread`` with sse_kit's hooks instead of its worker class."""

    def __init__(self, name: str, plan: Plan, where: Path, *, redis: bool,
                 hooks: bool = False) -> None:
        self.name, self.plan, self.where, self.redis, self.hooks = name, plan, where, redis, hooks
        self.result = Result(name)
        self.sampler: Sampler | None = None
        self.redis_set: RedisSet | None = None
        self.server: GunicornServer | None = None
        self.publishers: list[Publisher] = []
        self.killed = 0
        self._stop = threading.Event()  # never set: its wait() is the schedule's clock
        self._clients_seen: dict[int, tuple[int, int]] = {}  # pid: (hub's clients, mine open)

    def faults(self) -> list[str]:
        driven = ["max-requests"] if self.plan.max_requests else []
        if self.redis:
            return ["kill-worker", "pause-redis", "burst", "hup-master", "failover", *driven,
                    "restart-redis"]
        return ["kill-worker", "burst", "hup-master", *driven]

    def run(self) -> Result:
        started = time.monotonic()
        self.where.mkdir(parents=True, exist_ok=True)
        try:
            self._run()
        finally:
            for publisher in self.publishers:
                publisher.stop()
            if self.sampler is not None:
                self.sampler.stop()
                self.result.usage = self.sampler.samples
            if self.server is not None:
                self.result.autorestarts = self.server.log_text().count(AUTORESTART)
                self.server.close(grace=15)
            if self.redis_set is not None:
                self.redis_set.close()
        self.result.seconds = time.monotonic() - started
        return self.result

    def _run(self) -> None:
        sentinels = None
        if self.redis:
            self.redis_set = RedisSet(self.where)
            self.redis_set.start()
            sentinels = self.redis_set.addresses
        workers = 2 if self.redis else 1
        server = self.server = start_gunicorn(self.where, workers=workers, sentinels=sentinels,
                                              hooks=self.hooks, max_requests=self.plan.max_requests)
        self.result.server = (f"gunicorn -w {workers} --threads 16 "
                              + ("-k gthread -c bench/apps/sse_kit_gunicorn.py" if self.hooks
                                 else "-k sse_kit.gunicorn.ThreadWorker")
                              + (f" --max-requests {self.plan.max_requests}"
                                 if self.plan.max_requests else "")
                              + (", Redis through Sentinel" if self.redis else ", no Redis"))
        self.result.started = time.monotonic()
        load = Load(server.host, server.port)
        thread = threading.Thread(target=load.run, name="chaos-load", daemon=True)
        thread.start()
        try:
            self._load_and_break(load, server, sentinels)
        finally:
            load.stop()
            thread.join(30)
        self._explain_gaps(load)
        self._collect(load)

    def _load_and_break(self, load: Load, server: GunicornServer, sentinels: str | None) -> None:
        plan = self.plan
        slow = max(1, round(plan.streams * plan.slow_share))
        normal = load.add(plan.streams - slow - plan.mute, "normal")
        load.add(slow, "slow")
        load.add(plan.mute, "mute")
        wait_for(lambda: all(s.open for s in normal), timeout=SETTLE,
                 message=lambda: f"{sum(not s.open for s in normal)} streams to open")
        self.publishers = [post_publisher("post", server.url, RATE).start()]
        if sentinels:
            self.publishers.append(backplane_publisher("redis", sentinels, RATE).start())
            # `python -m sse_kit publish --sentinel`, one process per event: slower.
            self.publishers.append(cli_publisher("cli", sentinels, RATE / 4).start())
        else:  # no Redis: a second POST publisher stands in for the third source
            self.publishers.append(post_publisher("post-2", server.url, RATE).start())
        self._recovered("start", normal, time.monotonic(), SETTLE)
        sampler = self.sampler = Sampler(
            server.worker_pids, lambda: sum(s.open for s in load.slots)).start()
        self.result.baseline = sampler.now()

        began, cycles = time.monotonic(), 0
        while True:
            for fault in self.faults():
                self._stop.wait(plan.spacing)  # the schedule: plain load between faults
                self._inject(fault, load, server, normal)
            cycles += 1
            if cycles >= plan.cycles and time.monotonic() - began >= plan.seconds:
                break

        # The end state: no churn, only ordinary readers, then nobody.
        load.commands.put(lambda: setattr(load, "churn", False))
        load.close([s for s in load.slots if s.kind in ("slow", "mute")])
        for closed in (False, True):
            if closed:
                load.close(list(load.slots))
            try:
                wait_for(lambda c=closed: self._clients_match(load, server, c), timeout=SETTLE)
            except TimeoutError:
                self.result.violations.append(Violation(
                    "clients", "hubs", f"after {'closing every stream' if closed else 'churn'},"
                    f" pid: (hub's clients, streams open there): {self._clients_seen}"))

    def _clients_match(self, load: Load, server: GunicornServer, closed: bool = False) -> bool:
        stats = stats_of_every_worker(server)
        mine = Counter(s.pid for s in load.slots if s.open and s.kind == "normal")
        self._clients_seen = {pid: (st["clients"], 0 if closed else mine[pid])
                              for pid, st in stats.items()}
        return all(have == want for have, want in self._clients_seen.values())

    def _inject(self, fault: str, load: Load, server: GunicornServer, normal: list[Slot]) -> None:
        at = time.monotonic()
        watched = normal
        print(f"  [{self.name}] fault: {fault}", flush=True)
        if fault == "kill-worker":
            victim = server.wait_for_workers(timeout=SETTLE)[0]
            os.kill(victim, signal.SIGKILL)
            self.killed += 1
        elif fault == "hup-master":
            os.kill(server.pid, signal.SIGHUP)
        elif fault == "burst":
            watched = normal + load.add(self.plan.burst, "burst", prefix="c:burst")
        elif fault == "pause-redis":
            assert self.redis_set is not None
            self.redis_set.pause_master(3.0, self._stop.wait)
        elif fault == "failover":
            assert self.redis_set is not None
            self.redis_set.kill_master()
        elif fault == "max-requests":
            at = self._drive_to_max_requests(server)  # timed from the worker's retirement
        elif fault == "restart-redis":
            assert self.redis_set is not None
            before, after = self.redis_set.restart_master("chaos")
            if _id_key(after) < _id_key(before):
                self.result.violations.append(Violation(
                    "aof", "redis", f"the restarted master's last entry {after} is older than"
                    f" {before}, the last before the kill: acknowledged entries lost"))
        self.result.faults_at.append((fault, at))
        self._recovered(fault, watched, at, RECOVERY_BOUND)
        if fault == "burst":
            load.close(watched[len(normal):])
        if fault in ("kill-worker", "hup-master", "max-requests"):
            server.wait_for_workers(timeout=SETTLE)
        self._settled(fault, at)

    def _drive_to_max_requests(self, server: GunicornServer) -> float:
        """Send requests (4 keep-alive clients) until a worker logs that it reached
        ``max_requests``; gunicorn then retires it as it would in production.
        Returns when the line was seen (monotonic)."""
        log = server.log_path.open("rb")
        log.seek(0, os.SEEK_END)  # only what is logged from now on (the log is long)
        seen = bytearray()

        def retiring() -> bool:
            seen.extend(log.read())
            return AUTORESTART.encode() in seen
        done = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=server.url, timeout=5) as client:
                while not done.is_set():
                    with contextlib.suppress(httpx.HTTPError):
                        client.get("/healthz")
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_for(retiring, timeout=SETTLE, interval=0.1,
                     message="a worker to reach max_requests")
        finally:
            seen_at = time.monotonic()
            log.close()
            done.set()
            for thread in threads:
                thread.join(10)
        return seen_at

    def _settled(self, fault: str, at: float) -> None:
        """Wait until the workers' memory, threads and descriptors are back within
        :mod:`bench.chaos.resources`' bounds of the baseline; record how long."""
        assert self.sampler is not None and self.result.baseline is not None
        sampler, base, problems = self.sampler, self.result.baseline, []

        def back() -> bool:
            problems[:] = within(sampler.now(), base, self.plan.streams)
            return not problems
        try:
            wait_for(back, timeout=SETTLE, interval=0.5)
        except TimeoutError:
            self.result.violations.append(Violation(
                "resources", fault, f"not back within bounds {SETTLE:g}s after: "
                + "; ".join(problems)))
            return
        self.result.settle.setdefault(fault, []).append(time.monotonic() - at)

    def _recovered(self, fault: str, slots: list[Slot], at: float, bound: float) -> None:
        """Wait until every slot in *slots* received an event after *at*; record how long."""
        def behind() -> list[Slot]:
            return [s for s in slots if s.last_event_at <= at]
        try:
            wait_for(lambda: not behind(), timeout=bound, interval=0.05)
        except TimeoutError:
            stuck = behind()
            self.result.violations.append(Violation(
                "stuck", f"{len(stuck)} streams",
                f"no event within {bound:g}s of {fault}; e.g. " + ", ".join(
                    f"{s.cid} (open={s.open}, pid={s.pid}, connects={s.connects},"
                    f" last_id={s.last_id!r})" for s in stuck[:5])))
            return
        self.result.recoveries.setdefault(fault, []).append(time.monotonic() - at)

    def _explain_gaps(self, load: Load) -> None:
        """For each event lost without a reset: its entry ID, and whether the Redis
        master still has it (no: Redis lost an acknowledged write; yes: the hubs did)."""
        missing = Counter(v.missing for v in load.violations() if v.missing is not None)
        if not missing or self.redis_set is None:
            return
        import redis

        port = self.redis_set.master_port()
        rows = redis.Redis(port=port, socket_timeout=5).xrange("chaos")
        bodies = {i.decode(): f.get(b"b", b"").decode() for i, f in rows}
        dump = {"stream": bodies, "acked": {p.name: {s: str(i) for s, i in p.ids.items()}
                                             for p in self.publishers}}
        (self.where / "stream.json").write_text(json.dumps(dump, indent=1))
        for (name, seq), streams in missing.items():
            needle = f'"p": "{name}", "s": {seq},'
            found = [i for i, body in bodies.items() if needle in body]
            acked = next((p.ids.get(seq) for p in self.publishers if p.name == name), None)
            self.result.notes.append(
                f"{name} seq {seq} missed by {streams} streams without a reset; publish"
                f" returned entry {acked or '(not recorded)'}; the master on port {port}"
                f" {'has it as ' + found[0] if found else 'does not have it'};"
                f" entry {acked} holds {bodies.get(str(acked), '(nothing)').strip()!r}"
                f" (its stream: {len(rows)} entries, {rows[0][0].decode() if rows else '-'}"
                f" .. {rows[-1][0].decode() if rows else '-'})")

    def _collect(self, load: Load) -> None:
        result = self.result
        for publisher in self.publishers:
            result.published[publisher.name] = (publisher.ok_count, publisher.failed)
            result.publish_errors[publisher.name] = dict(publisher.errors)
            bad = set(publisher.errors) - DOCUMENTED_FAILURES
            if bad:
                result.violations.append(Violation(
                    "publish", publisher.name, f"failed other than documented: {publisher.errors}"))
        result.seen_max = dict(load.seen_max)
        normal = {s.cid for s in load.slots if s.kind == "normal"}
        for outage in load.outages:
            if outage.cid not in normal:  # slow readers the hub cut off; bursts
                continue
            fault = next((f for f, at in reversed(result.faults_at) if at <= outage.cut_at),
                         "before any fault")
            result.cut[fault] += 1
            result.reconnect.setdefault(fault, []).append(outage.back_at - outage.cut_at)
        result.violations += load.violations()
        result.load_errors = load.errors
        for slot in load.slots:
            result.delivered += slot.ledger.delivered
            result.resets += slot.ledger.resets
            result.reconnects += max(0, slot.connects - 1)
            result.resumes += slot.resumes
            result.server_closes += slot.server_closes
            result.refused += slot.refused
        if set(result.refused) - {503}:
            result.violations.append(Violation(
                "status", "streams", f"refused other than by a 503: {dict(result.refused)}"))
        assert self.server is not None
        for line in self.server.log_text().splitlines():
            if ("Traceback" in line or "[ERROR]" in line) and not EXPLAINED.search(line):
                result.violations.append(Violation("log", "gunicorn", line.strip()))


def _id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry ID as a sortable pair ("" sorts first)."""
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq or 0)) if ms else (-1, -1)
