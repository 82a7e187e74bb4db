"""What the workers hold over time: resident memory, threads and descriptors.

A :class:`Sampler` thread reads ``/proc`` for every live gunicorn worker once a
second and keeps the series (for the report's table and plot). The scenario
takes a :class:`Usage` as its baseline once every stream is open, and after each
fault waits until :func:`within` holds again. The bounds, per scenario:

* **threads**: no worker has more than the baseline's busiest worker, or
  :data:`POOL` if more (gunicorn grows its ``--threads`` pool lazily, so the
  baseline may predate a full pool), plus :data:`THREAD_SLACK` (a thread leaked
  per fault would pass it within a round of faults);
* **descriptors**: the workers' descriptors minus the streams the load has
  open (what is not a stream: listeners, Redis, pipes, files) at most
  :data:`FD_SLACK` plus 5% of the streams above the baseline's (the 5%: streams
  the load closed whose close the server has not yet seen, under churn);
* **memory**: the workers' summed RSS at most :data:`RSS_FACTOR` times the
  baseline's plus :data:`RSS_SLACK_KIB` (a fresh worker is smaller; Python keeps
  the heap a burst grew, so the bound allows that, but not growth per fault).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POOL = 16  # the soak's gunicorn --threads
THREAD_SLACK = 6  # the worker's own threads: main, hub, outlet, Redis reader, the app's publisher
FD_SLACK = 64
RSS_FACTOR = 1.5
RSS_SLACK_KIB = 32 * 1024
INTERVAL = 1.0  # seconds between samples


@dataclass
class Usage:
    """The workers' totals at one moment."""

    at: float  # monotonic
    workers: int
    rss_kib: int
    threads: int
    max_threads: int  # of the worker with the most
    fds: int
    streams: int  # streams the load had open then


def worker_usage(pids: list[int], streams: int) -> Usage:
    """Read ``/proc`` for *pids* (workers gone meanwhile are skipped)."""
    rss = threads = most = fds = workers = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            count = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss += int(fields["VmRSS"].split()[0])
        mine = int(fields["Threads"])
        threads, most, fds, workers = threads + mine, max(most, mine), fds + count, workers + 1
    return Usage(time.monotonic(), workers, rss, threads, most, fds, streams)


def within(now: Usage, base: Usage, streams: int) -> list[str]:
    """What in *now* is outside the bounds around *base*; empty when all hold."""
    out = []
    thread_bound = max(base.max_threads, POOL) + THREAD_SLACK
    if now.max_threads > thread_bound:
        out.append(f"threads {now.max_threads} in a worker > {thread_bound}")
    overhead, base_overhead = now.fds - now.streams, base.fds - base.streams
    fd_bound = base_overhead + FD_SLACK + streams // 20
    if overhead > fd_bound:
        out.append(f"descriptors not streams {overhead} > {fd_bound}")
    rss_bound = int(base.rss_kib * RSS_FACTOR) + RSS_SLACK_KIB
    if now.rss_kib > rss_bound:
        out.append(f"RSS {now.rss_kib // 1024} MiB > {rss_bound // 1024} MiB")
    return out


class Sampler:
    """Samples :func:`worker_usage` every :data:`INTERVAL` seconds in a thread.

    ``pids()`` and ``streams()`` are called from the sampler thread; only it
    appends to :attr:`samples`, which others read (a list append is atomic).
    """

    def __init__(self, pids: Callable[[], list[int]], streams: Callable[[], int]) -> None:
        self.pids, self.streams = pids, streams
        self.samples: list[Usage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def now(self) -> Usage:
        return worker_usage(self.pids(), self.streams())

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self.samples.append(self.now())
