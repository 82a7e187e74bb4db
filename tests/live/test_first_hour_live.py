"""What a new user meets in the first hour, replayed against real gunicorn: each
trap ends with the fix in gunicorn's error log (once, with gunicorn's timestamp),
or does not happen at all."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests._docs import REPO_ROOT, blocks
from tests._live import RawStream, RedisServer, free_port, wait_for
from tests.live._helpers import APP, CONF, WORKER_CLASS, Start, publish, stats

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


def test_bare_gthread_with_preload_streams_too(gunicorn_server: Start) -> None:
    # The app (and its hub) is loaded in the master; the hub starts in the worker
    # that serves the first stream, whatever ran at import.
    server = gunicorn_server(APP, threads=4, health_path=None, extra_args=["--preload"])
    with RawStream(server.host, server.port, "/events/?cid=p") as raw:
        raw.read_until(b"event: connected")
        publish(server, "p", "after preload")
        raw.read_until(b"after preload")


def test_hooks_with_one_thread_serve_streams_and_routes(gunicorn_server: Start) -> None:
    # gthread's default (one thread) with the documented hooks: streams detach, so
    # the second stream and every ordinary route are answered; a closed tab is
    # noticed at once, not at the next keep-alive.
    server = gunicorn_server(APP, threads=1, config=CONF, env={"SSE_KEEPALIVE": "3600"})
    streams = [RawStream(server.host, server.port, f"/events/?cid=t{i}") for i in range(5)]
    try:
        for raw in streams:
            raw.read_until(b"event: connected")
        for _ in range(3):
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        publish(server, "t*", "to all five")
        for raw in streams:
            raw.read_until(b"to all five")
        streams[0].close()
        wait_for(lambda: stats(server)["clients"] == 4, timeout=5,
                 message="the closed stream unregistered")
    finally:
        for raw in streams:
            raw.close()


_TICKER_APP = '''
import threading

from flask import Flask

from sse_kit import Hub
from sse_kit.flask import create_blueprint

hub = Hub()
app = Flask(__name__)
app.register_blueprint(create_blueprint(hub, client_id=lambda r: "viewer"), url_prefix="/events")
ticks = threading.Event()


@hub.on_start
def start_ticker(hub):
    def tick():
        n = 0
        while hub.running and not ticks.wait(0.05):
            n += 1
            hub.broadcast_to_pattern("viewer", f"tick {n}", event="tick")

    threading.Thread(target=tick, name="ticker", daemon=True).start()
'''


def test_a_background_publisher_started_by_on_start_ticks_in_each_worker(
    gunicorn_server: Start, tmp_path: Path
) -> None:
    (tmp_path / "ticker_app.py").write_text(_TICKER_APP)
    server = gunicorn_server("ticker_app:app", threads=2, workers=2, worker_class=WORKER_CLASS,
                             health_path=None, env={"PYTHONPATH": str(tmp_path)})
    for _ in range(4):  # whichever worker answers, its ticker runs
        with RawStream(server.host, server.port, "/events/") as raw:
            raw.read_until(b"event: tick")
    assert "Traceback" not in server.log_text()


def test_flask_run_streams_without_start(tmp_path: Path) -> None:
    # `flask run` skips `if __name__ == "__main__"`: the hub starts on first use.
    (tmp_path / "app.py").write_text(_TICKER_APP)
    port = free_port()
    log = (tmp_path / "flask.log").open("wb")
    flask = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO_ROOT}"})
    try:
        wait_for(lambda: _port_open(port), timeout=30, message="flask run")
        with RawStream("127.0.0.1", port, "/events/") as raw:
            raw.read_until(b"event: connected")
            raw.read_until(b"event: tick")  # on_start ran when the stream started the hub
    finally:
        flask.terminate()
        flask.wait(20)
        log.close()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.redis
def test_the_redis_example_reaches_every_worker(
    gunicorn_server: Start, redis_server: Callable[..., RedisServer], tmp_path: Path
) -> None:
    # docs/redis.md's app as written, two workers, a real Redis: the job's owner
    # gets the event on whichever worker holds the stream.
    redis = redis_server()
    [app] = [b for b in blocks("python") if b.name.startswith("docs/redis.md")
             and b.text.startswith("# app.py")]
    (tmp_path / "app.py").write_text(app.text)
    server = gunicorn_server("app:app", threads=4, workers=2, worker_class=WORKER_CLASS,
                             health_path=None,
                             env={"PYTHONPATH": str(tmp_path), "REDIS_URL": redis.url,
                                  "SECRET_KEY": "first-hour"})
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.post("/login/7").status_code == 204
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        streams = [RawStream(server.host, server.port, "/events/", headers={"Cookie": cookie})
                   for _ in range(6)]
        try:
            for raw in streams:
                raw.read_until(b"event: connected")
            assert client.post("/jobs/3/done").status_code == 204
            for raw in streams:
                raw.read_until(b'"job":3')
        finally:
            for raw in streams:
                raw.close()


def test_http2_in_gunicorn_is_told_at_boot(
    gunicorn_server: Start, certificate: tuple[Path, Path]
) -> None:
    # gunicorn >= 25 negotiates HTTP/2 over TLS when asked. Its gthread worker
    # (here with sse_kit's hooks) serves one connection's requests one after
    # another, which a page's EventSource freezes: said once, with the fix.
    # sse_kit's worker class serves them concurrently: one INFO line.
    cert, key = certificate
    tls = ["--certfile", str(cert), "--keyfile", str(key), "--http-protocols", "h2,h1"]
    hooks = gunicorn_server(APP, threads=2, config=CONF, health_path=None, extra_args=tls)
    advice = "sse_kit: HTTP/2 is on (http_protocols=h2,h1)"
    wait_for(lambda: lines_of(hooks.log_text(), "WARNING", advice),
             message="the HTTP/2 advice at boot")
    assert "Fix: gunicorn -k sse_kit.gunicorn.ThreadWorker" in hooks.log_text()
    assert len(lines_of(hooks.log_text(), "WARNING", advice)) == 1
    worker = gunicorn_server(APP, threads=2, worker_class=WORKER_CLASS, health_path=None,
                             extra_args=tls)
    wait_for(lambda: lines_of(worker.log_text(), "INFO", advice),
             message="the HTTP/2 line at boot")
    assert "serves each connection's streams concurrently" in worker.log_text()
    assert not lines_of(worker.log_text(), "WARNING", advice)
