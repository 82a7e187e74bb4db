"""Prometheus metrics under gunicorn with two workers: a scrape, answered by either
worker, covers both (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._decoder import decode
from tests._live import GunicornServer, RawStream, wait_for
from tests.live._helpers import APP, CONF, Start, publish

pytestmark = pytest.mark.live

# Compared between the scrape and the sum of the workers' own hub.stats().
SUMMED = ("connects", "published", "delivered", "clients")


def scrape(server: GunicornServer) -> dict[str, float]:
    r = httpx.get(f"{server.url}/events/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[sample.name.removeprefix("sse_kit_").removesuffix("_total")] = sample.value
    return out


def connected_epoch(raw: RawStream) -> str:
    body = raw.read_until(b"\n\n", timeout=5)
    (ev,) = decode(body)
    assert ev.event == "connected"
    return ev.id.rpartition("-")[0]  # the epoch names the worker's hub


def per_worker_stats(server: GunicornServer, pids: list[int]) -> dict[int, dict[str, Any]]:
    """The latest ``/stats`` of each worker (requests land on either at random)."""
    latest: dict[int, dict[str, Any]] = {}

    def both() -> bool:
        s = httpx.get(f"{server.url}/stats").json()
        latest[s["pid"]] = s
        return set(latest) >= set(pids)

    wait_for(both, timeout=20, message=lambda: f"/stats from workers {pids}; got {list(latest)}")
    return latest


def test_a_scrape_adds_up_every_worker(gunicorn_server: Start, tmp_path: Path) -> None:
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    server = gunicorn_server(
        APP, config=CONF, threads=80, workers=2, graceful_timeout=30,  # 60 streams fit one worker
        # Parked streams (each holds a thread while it is open): a worker whose
        # streams detach is never busy, so the kernel tends to hand every new
        # connection to the same worker, and this test needs streams on both.
        env={"SSE_METRICS": "1", "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
             "SSE_FAST_PATH": "0"},
    )
    pids = server.wait_for_workers(2)
    raws: list[RawStream] = []
    epochs: dict[str, list[RawStream]] = {}
    while len(epochs) < 2 or len(raws) < 6:  # streams on both workers
        assert len(raws) < 60, f"the kernel gave all {len(raws)} streams to one worker"
        raw = RawStream(server.host, server.port, f"/events/?cid=c{len(raws)}")
        raws.append(raw)
        epochs.setdefault(connected_epoch(raw), []).append(raw)
    for i in range(10):
        publish(server, "*", f"event {i}")

    def consistent() -> bool:
        workers = per_worker_stats(server, pids)
        scraped = scrape(server)
        return all(scraped[n] == sum(w[n] for w in workers.values()) for n in SUMMED)

    wait_for(consistent, timeout=20, message="the scrape to equal the sum of both workers")
    scraped = scrape(server)
    assert (scraped["connects"], scraped["clients"], scraped["published"]) == (len(raws),
                                                                               len(raws), 10)
    workers = per_worker_stats(server, pids)
    assert all(w["connects"] > 0 for w in workers.values())  # neither alone has the total

    # A worker killed with its streams open: its live gauge goes (child_exit), its
    # counters stay in the totals.
    victim = max(workers.values(), key=lambda w: w["clients"])
    survivors = len(raws) - victim["clients"]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: scrape(server)["clients"] == survivors, timeout=20,
             message=lambda: f"clients == {survivors}: {scrape(server)}")
    assert scrape(server)["connects"] == len(raws)
    for raw in raws:
        raw.close()


def test_metrics_route_is_off_by_default(gunicorn_server: Start) -> None:
    server = gunicorn_server(APP, config=CONF, threads=8)
    assert httpx.get(f"{server.url}/events/metrics").status_code == 404
    assert json.loads(httpx.get(f"{server.url}/stats").text)["clients"] == 0
