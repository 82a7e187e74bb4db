"""Self-test of the live-test harness (tests/_live.py, tests/conftest.py), without sse_kit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests._live import (
    ChunkedDecoder,
    GunicornServer,
    RawStream,
    RedisServer,
    process_alive,
    wait_for,
)
from tests.live.hello import STREAM_LINES

CHUNKED = b"7\r\nline 1\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"


@pytest.mark.parametrize("step", [len(CHUNKED), 1, 2, 5])
def test_chunked_decoder_accepts_any_split(step: int) -> None:
    decoder = ChunkedDecoder()
    chunks = []
    for start in range(0, len(CHUNKED), step):
        assert not decoder.done
        chunks += decoder.feed(CHUNKED[start : start + step])
    assert chunks == [b"line 1\n", b"abc"]
    assert decoder.done


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"zz\r\n", "expected a hex chunk-size line, got b'zz'"),
        (b"0x3\r\n", "expected a hex chunk-size line"),
        (b"3\r\nabcd\r\n", "expected CRLF after 3 bytes"),
    ],
)
def test_chunked_decoder_rejects_bad_framing(data: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ChunkedDecoder().feed(data)


def test_wait_for_returns_the_truthy_value() -> None:
    calls = iter([0, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=5) == "ready"


def test_wait_for_times_out_with_the_message() -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0.05s waiting for the moon"):
        wait_for(lambda: False, timeout=0.05, message=lambda: "the moon")


@pytest.mark.live
def test_gunicorn_serves_chunked_stream(gunicorn_server: Callable[..., GunicornServer]) -> None:
    server = gunicorn_server("tests.live.hello:app", threads=4, env={"HARNESS_GREETING": "hi"})

    with RawStream(server.host, server.port, "/stream") as stream:
        assert stream.status == 200
        assert stream.headers["Transfer-Encoding"] == "chunked"
        assert stream.read_until(b"line 2\n").startswith(b"line 1\nline 2\n")
        assert stream.read_to_end() == b"".join(STREAM_LINES)
        assert stream.chunks == list(STREAM_LINES)
        assert stream.complete

    with RawStream(server.host, server.port, "/env/HARNESS_GREETING") as stream:
        assert (stream.status, stream.headers["content-length"]) == (200, "2")
        assert stream.read_to_end() == b"hi"


@pytest.mark.live
def test_gunicorn_workers_and_graceful_stop(gunicorn_server: Callable[..., GunicornServer]) -> None:
    server = gunicorn_server("tests.live.hello:app", workers=2, threads=2, graceful_timeout=3)
    workers = server.wait_for_workers()

    elapsed = server.terminate(timeout=10)

    assert elapsed < 3
    assert server.returncode == 0
    assert not any(process_alive(pid) for pid in workers)
    assert "Shutting down: Master" in server.log_text()


@pytest.mark.live
def test_gunicorn_kill_takes_the_workers_too(
    gunicorn_server: Callable[..., GunicornServer],
) -> None:
    server = gunicorn_server("tests.live.hello:app", workers=2)
    workers = server.wait_for_workers()

    server.kill()

    assert server.returncode == -9
    wait_for(lambda: not any(process_alive(pid) for pid in workers), message="workers to die")


@pytest.mark.live
def test_gunicorn_boot_failure_reports_the_log(
    gunicorn_server: Callable[..., GunicornServer],
) -> None:
    with pytest.raises(
        RuntimeError,
        match=r"(?s)exited with status \d+ before it was ready.*"
        r"no_such_app",
    ):
        gunicorn_server("tests.live.hello:no_such_app")


@pytest.mark.redis
def test_redis_server_kill_and_restart(redis_server: Callable[[], RedisServer]) -> None:
    server = redis_server()
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(server.url, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    try:
        assert client.ping()
        client.set("key", "value")

        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()

        server.restart()
        assert client.ping()
        assert client.get("key") is None  # the restarted server starts empty
    finally:
        client.close()
