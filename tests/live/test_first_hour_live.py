"""What a new user meets in the first hour, replayed against real gunicorn: each
trap ends with the fix in gunicorn's error log (once, with gunicorn's timestamp),
or does not happen at all."""

from __future__ import annotations

import re

import httpx
import pytest

from tests._live import RawStream, wait_for
from tests.live._helpers import APP, WORKER_CLASS, Start, publish, stats

pytestmark = pytest.mark.live

# gunicorn's error-log line: "[2026-11-30 12:00:00 +0000] [1234] [WARNING] message"
_GUNICORN_STAMP = r"^\[[0-9-]+ [0-9:]+ [+-][0-9]+\] \[[0-9]+\] "


def lines_of(log: str, level: str, text: str) -> list[str]:
    pattern = re.compile(_GUNICORN_STAMP + re.escape(f"[{level}] {text}") + ".*$", re.M)
    return pattern.findall(log)


def test_bare_gthread_works_and_says_the_fix_once(gunicorn_server: Start) -> None:
    # No config file, no hooks, no start(): the hub starts with the first stream,
    # and the log says (once) what holding a thread per stream costs.
    server = gunicorn_server(APP, threads=4, health_path=None)
    streams = [RawStream(server.host, server.port, f"/events/?cid=c{i}") for i in range(3)]
    try:
        for raw in streams:
            raw.read_until(b"event: connected")
        publish(server, "c*", "hello")
        for raw in streams:
            raw.read_until(b"hello")
    finally:
        for raw in streams:
            raw.close()
    log = server.log_text()
    advice = "sse_kit: gunicorn serves this app without sse_kit's worker class or hooks"
    assert len(lines_of(log, "WARNING", advice)) == 1, log
    assert "gunicorn -k sse_kit.gunicorn.ThreadWorker" in log
    assert stats(server)["misconfigured"] == 1


def test_several_workers_without_a_backplane_are_told_at_boot(gunicorn_server: Start) -> None:
    server = gunicorn_server(APP, threads=2, workers=2, worker_class=WORKER_CLASS)
    server.wait_for_workers(2)
    advice = "sse_kit: 2 workers and no backplane: each worker has its own hub"
    wait_for(lambda: lines_of(server.log_text(), "WARNING", advice),
             message="the advice in gunicorn's error log")
    assert len(lines_of(server.log_text(), "WARNING", advice)) == 1  # the first worker only


def test_the_worker_class_logs_sse_kit_lines_with_gunicorns_timestamps(
    gunicorn_server: Start,
) -> None:
    server = gunicorn_server(APP, threads=2, worker_class=WORKER_CLASS)
    with RawStream(server.host, server.port, "/events/?cid=visible") as raw:
        raw.read_until(b"event: connected")
        wait_for(lambda: lines_of(server.log_text(), "INFO", "sse_kit: client 'visible' "
                                  "connected"), message="the connect line in the log")
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert not lines_of(server.log_text(), "WARNING", "sse_kit:")  # nothing to fix here
