"""The chaos soak's resource bounds (bench/chaos/resources.py): what counts as back."""

from __future__ import annotations

import os

import pytest

from bench.chaos.resources import FD_SLACK, POOL, THREAD_SLACK, Usage, within, worker_usage

BASE = Usage(at=0.0, workers=2, rss_kib=80 * 1024, threads=34, max_threads=17, fds=2100,
             streams=2000)


def usage(**changes: float) -> Usage:
    return Usage(**{**BASE.__dict__, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(("now", "breaks"), [
    (usage(), []),
    (usage(max_threads=max(17, POOL) + THREAD_SLACK), []),  # the pool grew after the baseline
    (usage(max_threads=max(17, POOL) + THREAD_SLACK + 1), ["threads"]),
    (usage(fds=100, streams=0), []),  # every stream closed: only what is not a stream
    (usage(fds=2100 + FD_SLACK + 100, streams=2000), []),  # 5% of 2,000 streams in flight
    (usage(fds=2100 + FD_SLACK + 101, streams=2000), ["descriptors"]),
    (usage(rss_kib=int(80 * 1024 * 1.5) + 32 * 1024), []),
    (usage(rss_kib=int(80 * 1024 * 1.5) + 32 * 1024 + 1), ["RSS"]),
])
def test_within(now: Usage, breaks: list[str]) -> None:
    found = within(now, BASE, streams=2000)
    assert [next(w for w in ("threads", "descriptors", "RSS") if w in f) for f in found] == breaks


def test_worker_usage_reads_this_process_and_skips_the_gone() -> None:
    mine = worker_usage([os.getpid(), 2**22 + 1], streams=5)
    assert (mine.workers, mine.streams) == (1, 5)
    assert mine.threads >= 1 and mine.fds >= 3 and mine.rss_kib > 0
