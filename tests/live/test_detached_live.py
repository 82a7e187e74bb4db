"""Detached streams under a real gunicorn: after its first chunk a stream's socket
belongs to the hub side, so a worker with two threads serves hundreds of streams.

Every check runs in both forms users deploy (the ``worker`` fixture):
``-k sse_kit.gunicorn.ThreadWorker`` with no config file, and plain ``-k gthread``
with the hooks of ``tests/live/gunicorn_conf.py``. Most checks share one server
per form with :data:`STREAMS` detached streams open (the ``fleet`` fixture);
those that end their server (SIGTERM, ``--max-requests``) or need other flags
(``--worker-connections 50``, TLS) start their own. Keep-alives are off in
effect (an hour apart): nothing here may depend on one.

Every server's log must stay free of gunicorn ``[ERROR]`` lines and tracebacks.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import ssl
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._decoder import decode
from tests._live import GunicornServer, RawStream, process_alive, wait_for
from tests.live._helpers import APP, CONF, Start, publish, stats
from tests.live._secure import proc_status

pytestmark = pytest.mark.live

THREADS = 2  # gthread's pool: far fewer than the streams
STREAMS = 500
# Threads besides gthread's pool: main, hub, outlet (detached streams), one spare.
FIXED_THREADS = 4
# Descriptors this process needs: two servers' streams at once (the fleet and a
# test's own), plus room for pytest, httpx and the logs; gunicorn inherits it.
DESCRIPTORS = 4 * STREAMS + 1024
KEEPALIVE_OFF = "3600"
SHUTDOWN_END = b"retry: 250\n\n"  # the hub's shutdown_retry hint, the body's last event
LAST_CHUNK = b"0\r\n\r\n"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Worker:
    """How gunicorn is told to use sse_kit: a worker class, a config file, or both."""

    worker_class: str
    config: str | None

    def options(self) -> dict[str, Any]:
        """GunicornServer's options for this form."""
        return {"worker_class": self.worker_class, "config": self.config}


WORKERS = {
    "ThreadWorker": Worker("sse_kit.gunicorn.ThreadWorker", None),  # no config file
    "gthread-hooks": Worker("gthread", CONF),
}


@pytest.fixture(scope="module", params=list(WORKERS))
def worker(request: pytest.FixtureRequest) -> Worker:
    """Each form in turn: every test that takes it runs once per form."""
    return WORKERS[request.param]


@pytest.fixture(scope="module", autouse=True)
def descriptors() -> Iterator[None]:
    """Raise this process's soft ``RLIMIT_NOFILE`` to :data:`DESCRIPTORS` while
    the module runs (gunicorn, started from here, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= DESCRIPTORS:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < DESCRIPTORS:
        pytest.fail(f"these tests open {DESCRIPTORS} descriptors; the hard RLIMIT_NOFILE is"
                    f" {hard} (raise it: ulimit -Hn)", pytrace=False)
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def server_options(worker: Worker, extra_args: Sequence[str] = (), **env: str) -> dict[str, Any]:
    """GunicornServer's options: the test app in *worker*'s form, two threads,
    keep-alives off in effect, a graceful timeout no check may rely on."""
    return {
        "threads": THREADS, "graceful_timeout": 30, "extra_args": list(extra_args),
        "env": {"SSE_KEEPALIVE": KEEPALIVE_OFF, **env}, **worker.options(),
    }  # fmt: skip


def serve(gunicorn_server: Start, worker: Worker, extra_args: Sequence[str] = (),
          **env: str) -> GunicornServer:
    """A started server of the ``gunicorn_server`` fixture (see :func:`server_options`)."""
    return gunicorn_server(APP, **server_options(worker, extra_args, **env))


def open_streams(stack: contextlib.ExitStack, server: GunicornServer, n: int,
                 prefix: str) -> list[RawStream]:
    """*n* streams (client IDs ``prefix-0`` ...), each with its first chunk read,
    closed by *stack*; returns once the hub side owns every one of them."""
    streams = []
    for i in range(n):
        raw = stack.enter_context(RawStream(server.host, server.port, f"/events/?cid={prefix}-{i}"))
        raw.read_until(b"\n\n")  # the connected event
        streams.append(raw)
    wait_direct(server, n)
    return streams


def wait_direct(server: GunicornServer, n: int) -> None:
    """Wait until *n* streams are detached (their sockets owned by the hub side)."""
    wait_for(lambda: stats(server)["direct"] == n, timeout=20,
             message=lambda: f"{n} detached streams: {brief(stats(server))}")


def brief(s: dict[str, Any]) -> dict[str, Any]:
    """*s* without the list of client IDs (500 of them hide the counters)."""
    return {k: v for k, v in s.items() if k != "ids"}


def messages(body: bytes, prefix: str) -> list[str]:
    """The data of every event in *body* whose data starts with *prefix*."""
    return [ev.data for ev in decode(body) if ev.data.startswith(prefix)]


def all_get(streams: Sequence[RawStream], datas: Sequence[str], timeout: float = 20.0) -> None:
    """Every one of *streams* receives exactly *datas*, in order (among events
    with the same prefix as ``datas[0]``)."""
    prefix, last = datas[0].split(":")[0] + ":", f"data: {datas[-1]}\n\n".encode()
    deadline = time.monotonic() + timeout
    for i, raw in enumerate(streams):
        body = raw.read_until(last, timeout=max(deadline - time.monotonic(), 0.1))
        assert messages(body, prefix) == list(datas), f"stream {i}"


def tcp_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to here (Linux: tcp_wmem's maximum)."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


def assert_clean_log(server: GunicornServer) -> None:
    """No gunicorn ``[ERROR]`` line and no traceback in *server*'s log."""
    log = server.log_text()
    bad = [line for line in log.splitlines() if "[ERROR]" in line or "Traceback" in line]
    assert not bad, f"{bad}\n--- {server.log_path}:\n{log[-5000:]}"


# -- one server per form, STREAMS detached streams open -------------------------


@dataclass
class Fleet:
    """A shared server and its open streams."""

    server: GunicornServer
    streams: list[RawStream]


@pytest.fixture(scope="module")
def fleet(worker: Worker, descriptors: None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A server in *worker*'s form with :data:`STREAMS` detached streams open
    (client IDs ``fleet-<i>``), shared by the checks that leave it as they found it."""
    log_path = tmp_path_factory.mktemp("fleet") / "gunicorn.log"
    # Room for every stream should none detach: the checks then fail, not hang.
    server = GunicornServer(
        APP, log_path=log_path, **server_options(worker, ["--worker-connections", "2000"]))
    with contextlib.ExitStack() as stack:
        stack.callback(server.close, grace=server.graceful_timeout + 5.0)
        server.start()
        yield Fleet(server, open_streams(stack, server, STREAMS, "fleet"))


def test_ordinary_routes_answer_promptly_beside_500_streams(fleet: Fleet) -> None:
    server = fleet.server
    latencies = []
    for _ in range(20):  # a new connection each: accepting is the worker's job too
        started = time.monotonic()
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok")
        finally:
            conn.close()
        latencies.append(time.monotonic() - started)
    # Bounds a busy machine meets too: typical under 100 ms, none near a second.
    ms = [round(t * 1000, 1) for t in latencies]
    assert statistics.median(latencies) < 0.1 and max(latencies) < 1.0, ms
    s = stats(server)
    assert s["clients"] >= s["direct"] >= STREAMS, brief(s)  # all still open, detached
    assert_clean_log(server)


def test_every_stream_gets_every_event_in_order(fleet: Fleet) -> None:
    datas = [f"order:{i}" for i in range(5)]
    publish(fleet.server, "*", *datas)
    all_get(fleet.streams, datas)
    assert stats(fleet.server)["direct"] >= STREAMS
    assert_clean_log(fleet.server)


def test_the_worker_holds_no_thread_per_stream(fleet: Fleet) -> None:
    server = fleet.server
    # Keep the whole pool busy for a moment, so that every thread it may start is started.
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: httpx.get(f"{server.url}/healthz").status_code,
                              range(40)))
    assert codes == [200] * 40
    s = stats(server)
    threads = proc_status(s["pid"])["threads"]
    assert s["clients"] >= STREAMS and threads <= THREADS + FIXED_THREADS, (threads, brief(s))
    assert_clean_log(server)


@pytest.mark.parametrize("how", ["close", "abort"])
def test_a_peer_that_leaves_is_unregistered_at_once(fleet: Fleet, how: str) -> None:
    server = fleet.server
    before = stats(server)
    raw = RawStream(server.host, server.port, f"/events/?cid=leaver-{how}")
    raw.read_until(b"\n\n")
    wait_direct(server, before["direct"] + 1)
    left = time.monotonic()
    raw.close() if how == "close" else raw.abort()  # a FIN, or an RST
    # The outlet sees the socket readable, then EOF (or the reset): no write is
    # needed to notice, and keep-alives are an hour apart. 1 s is the point;
    # 2 s keeps a busy machine from failing it.
    wait_for(lambda: stats(server)["clients"] == before["clients"], timeout=2.0,
             message=lambda: f"the stream to be unregistered: {brief(stats(server))}")
    took = time.monotonic() - left
    s = stats(server)
    assert s["keepalives"] == before["keepalives"] == 0, brief(s)
    assert s["disconnected"] == before["disconnected"] + 1, brief(s)
    assert s["direct"] == before["direct"], brief(s)
    print(f"unregistered {took * 1000:.0f} ms after the {how}")
    assert_clean_log(server)


def test_http_1_0_is_served_on_the_parked_path(fleet: Fleet) -> None:
    # HTTP/1.0 cannot be chunked, so the stream cannot detach (sse_kit writes a
    # detached stream's chunks itself): it keeps its thread, and still streams.
    server = fleet.server
    before = stats(server)
    with RawStream(server.host, server.port, "/events/?cid=old", version="HTTP/1.0") as raw:
        assert raw.status == 200 and "transfer-encoding" not in raw.headers
        raw.read_until(b"event: connected")
        wait_for(lambda: stats(server)["clients"] == before["clients"] + 1,
                 message=lambda: f"the HTTP/1.0 stream: {brief(stats(server))}")
        publish(server, "old", "old:1", "old:2")
        assert messages(raw.read_until(b"data: old:2\n\n"), "old:") == ["old:1", "old:2"]
        s = stats(server)
        assert (s["detached"], s["direct"]) == (before["detached"], before["direct"]), brief(s)

    def noticed() -> bool:  # a parked stream notices a closed peer when it next writes
        publish(server, "old", "old:anyone?")
        return bool(stats(server)["clients"] == before["clients"])

    wait_for(noticed, message=lambda: f"the parked stream to end: {brief(stats(server))}")
    assert_clean_log(server)


def test_a_reader_that_never_reads_is_cut_and_resumes_losslessly(fleet: Fleet) -> None:
    # The hub's default slow_client="disconnect" (it keeps history): a detached
    # stream whose unsent tail outgrows client_buffer_bytes (4 MiB) is ended;
    # the reconnect's Last-Event-ID gets every event after it from the history.
    server = fleet.server
    before = stats(server)
    # In all twice what the tail (client_buffer_bytes, 4 MiB) and the largest
    # kernel send buffer could take, so the cut comes whatever this machine's TCP
    # tuning; in 200 events (the history keeps 1000), each below max_event_size.
    n = 200
    size = 2 * (4 * MIB + tcp_send_buffer_max()) // n
    assert size < MIB - 64, f"tcp_wmem allows {tcp_send_buffer_max()} bytes: too many to fill"
    datas = [f"{i:04d}:" + "x" * size for i in range(n)]
    slow = RawStream(server.host, server.port, "/events/?cid=slow", rcvbuf=4096)
    first = slow.read_until(b"\n\n")
    wait_direct(server, before["direct"] + 1)
    for k in range(0, n, 10):  # the slow reader reads nothing meanwhile
        publish(server, "slow", *datas[k:k + 10])
    wait_for(lambda: stats(server)["slow_disconnects"] == before["slow_disconnects"] + 1,
             timeout=20, message=lambda: f"the slow stream to be cut: {brief(stats(server))}")
    body = slow.read_to_end(timeout=30)
    slow.close()
    events = decode(body)
    got = [ev.data[:4] for ev in events if ev.event == "message"]
    assert body.startswith(first) and got == [f"{i:04d}" for i in range(len(got))]
    assert len(got) < n, "the stream was never cut"
    last_id = [ev.id for ev in events if ev.id][-1]  # the connected event's, at least

    with RawStream(server.host, server.port, "/events/?cid=slow",
                   headers={"Last-Event-ID": last_id}) as again:
        rest = decode(again.read_until(f"data: {n - 1:04d}:".encode(), timeout=30))
    assert [ev.event for ev in rest if ev.event != "message"] == ["connected"]  # no reset
    resumed = [ev.data[:4] for ev in rest if ev.event == "message"]
    assert got + resumed == [f"{i:04d}" for i in range(n)]  # each once, in order
    s = stats(server)
    assert s["dropped"] == before["dropped"] and s["resets"] == before["resets"], brief(s)
    print(f"cut after {len(got)} events; {len(resumed)} resumed")
    assert_clean_log(server)


# -- checks that need a server of their own -------------------------------------


def test_sigterm_ends_500_streams_with_a_retry_hint_and_the_last_chunk(
    gunicorn_server: Start, worker: Worker
) -> None:
    server = serve(gunicorn_server, worker)
    with contextlib.ExitStack() as stack:
        streams = open_streams(stack, server, STREAMS, "term")
        took = server.terminate(timeout=30)  # graceful_timeout is 30 s: not what ends them
        assert took < 5.0, f"the master exited {took:.1f}s after SIGTERM"
        for i, raw in enumerate(streams):
            body = raw.read_to_end(timeout=10)
            assert raw.complete and body.endswith(SHUTDOWN_END), (i, body[-200:])
            assert raw.wire.endswith(LAST_CHUNK), (i, bytes(raw.wire[-200:]))
    print(f"master exited {took:.2f}s after SIGTERM")
    assert_clean_log(server)


def test_max_requests_ends_the_streams_and_a_new_worker_serves(
    gunicorn_server: Start, worker: Worker
) -> None:
    max_requests = 40
    server = serve(gunicorn_server, worker, ["--max-requests", str(max_requests)])
    with contextlib.ExitStack() as stack:
        streams = open_streams(stack, server, 10, "mr")
        old = stats(server)["pid"]
        answers: list[tuple[float, int]] = []  # (when, pid) of each answer to GET /stats

        def ask_until_a_new_worker_answers() -> None:  # each ask: a request for the old one
            deadline = time.monotonic() + 60
            while (not answers or answers[-1][1] == old) and time.monotonic() < deadline:
                try:
                    pid = httpx.get(f"{server.url}/stats", timeout=30).json()["pid"]
                except httpx.TransportError:
                    # gunicorn's gthread may accept one more connection after it
                    # decided to leave, then drop it unanswered (gunicorn 23.0;
                    # benoitc/gunicorn#3038): the old worker is leaving, ask again.
                    continue
                answers.append((time.monotonic(), pid))

        asker = threading.Thread(target=ask_until_a_new_worker_answers, daemon=True)
        asker.start()
        for i, raw in enumerate(streams):
            body = raw.read_to_end(timeout=30)
            assert raw.complete and body.endswith(SHUTDOWN_END), (i, body[-200:])
        ended = time.monotonic()
        asker.join(90)
        assert not asker.is_alive() and answers and answers[-1][1] != old, answers[-3:]
        # The old worker answered its last request once it had decided to leave;
        # the streams ended then, not after graceful_timeout (30 s).
        after = ended - max(when for when, pid in answers if pid == old)
        assert after < 5.0, f"the streams ended {after:.1f}s after the old worker's last answer"
        wait_for(lambda: not process_alive(old), timeout=10, message=f"worker {old} to exit")
        again = stack.enter_context(RawStream(server.host, server.port, "/events/?cid=mr-again"))
        again.read_until(b"\n\n")
        publish(server, "mr-*", "mr:after")
        assert messages(again.read_until(b"data: mr:after\n\n"), "mr:") == ["mr:after"]
        assert stats(server)["pid"] == answers[-1][1]
    print(f"streams ended {after:.2f}s after the old worker's last answer")
    assert_clean_log(server)


def test_500_streams_beyond_worker_connections_50_all_get_events(
    gunicorn_server: Start, worker: Worker
) -> None:
    # A detached stream no longer counts as one of gunicorn's connections.
    server = serve(gunicorn_server, worker, ["--worker-connections", "50"])
    with contextlib.ExitStack() as stack:
        streams = open_streams(stack, server, STREAMS, "wc")
        datas = [f"wc:{i}" for i in range(5)]
        publish(server, "*", *datas)
        all_get(streams, datas)
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert_clean_log(server)


# -- TLS in gunicorn: the parked path --------------------------------------------


def test_tls_in_gunicorn_is_served_on_the_parked_path(
    gunicorn_server: Start, worker: Worker, certificate: tuple[Path, Path]
) -> None:
    # gunicorn's SSL object encrypts every byte: the stream cannot detach, it
    # keeps its thread, and still streams; SIGTERM still ends it properly.
    cert, key = certificate
    options = server_options(worker, ["--certfile", str(cert), "--keyfile", str(key)])
    server = gunicorn_server(APP, health_path=None, **options)  # the harness checks plain HTTP
    tls = ssl.create_default_context(cafile=str(cert))
    url = f"https://{server.host}:{server.port}"
    with httpx.Client(base_url=url, verify=tls, timeout=10) as https:

        def tls_stats() -> dict[str, Any]:
            result: dict[str, Any] = https.get("/stats").json()
            return result

        def ready() -> bool:
            try:
                return https.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=30, interval=0.05, message="gunicorn to answer over TLS")
        with RawStream(server.host, server.port, "/events/?cid=tls", tls=tls) as raw:
            assert raw.status == 200 and raw.headers["transfer-encoding"] == "chunked"
            raw.read_until(b"event: connected")
            wait_for(lambda: tls_stats()["clients"] == 1, message="the TLS stream")
            r = https.post("/publish", json={"pattern": "tls", "datas": ["tls:1", "tls:2"]})
            assert r.status_code == 200, r.text
            assert messages(raw.read_until(b"data: tls:2\n\n"), "tls:") == ["tls:1", "tls:2"]
            s = tls_stats()
            assert (s["detached"], s["direct"]) == (0, 0), brief(s)
            https.close()  # an idle kept-alive connection would hold the worker ~2 s
            took = server.terminate(timeout=30)
            body = raw.read_to_end(timeout=10)
            assert raw.complete and body.endswith(SHUTDOWN_END), body[-200:]
    assert took < 5.0, f"the master exited {took:.1f}s after SIGTERM"
    assert_clean_log(server)
