"""First-day traps: each told once per process, with its fix, and counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from sse_kit import Client, Hub, serve_sse
from sse_kit._advice import PARKED_KEY, SERVER_KEY, THREADS_KEY
from sse_kit._connection import DETACH_KEY
from tests._streams import environ


@pytest.fixture
def hub() -> Iterator[Hub]:
    h = Hub().start()
    yield h
    h.stop()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("sse_kit")]


def open_streams(hub: Hub, n: int, **extra: Any) -> None:
    for i in range(n):
        env = environ()
        env.update(extra)
        response = serve_sse(hub, env, f"c{i}")
        assert response.status_code == 200
        response.close()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({}, "gives every open stream a thread of its own", id="unknown-server"),
        pytest.param({"SERVER_SOFTWARE": "waitress"},
                     "waitress gives every open stream a thread of its own", id="waitress"),
        pytest.param({"gunicorn.socket": object()},
                     "gunicorn serves this app without sse_kit's worker class or hooks",
                     id="bare-gunicorn"),
        pytest.param({SERVER_KEY: "sse_kit.gunicorn",
                      PARKED_KEY: "TLS terminated by gunicorn itself (certfile)"},
                     "Terminate TLS at a proxy", id="gunicorn-tls"),
        pytest.param({SERVER_KEY: "sse_kit.gunicorn", PARKED_KEY: "HTTP/1.0 (no chunked encoding)"},
                     "proxy_http_version 1.1", id="http-1.0"),
    ],
)
def test_a_parked_stream_says_why_once_with_the_fix(
    hub: Hub, caplog: pytest.LogCaptureFixture, extra: dict[str, Any], expected: str
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    open_streams(hub, 3, **extra)
    [warning] = warnings_of(caplog)  # once, not per stream
    assert expected in warning and "docs/deployment.md" in warning
    stats = hub.stats()
    assert (stats["parked"], stats["misconfigured"]) == (3, 1)


def test_the_gunicorn_warning_names_the_worker_class_and_sigterm(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    open_streams(hub, 1, **{"gunicorn.socket": object()})
    [warning] = warnings_of(caplog)
    assert "gunicorn -k sse_kit.gunicorn.ThreadWorker" in warning
    assert "SIGTERM waits graceful_timeout" in warning


def test_streams_that_may_detach_give_no_advice(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    open_streams(hub, 2, **{DETACH_KEY: lambda: None})  # offered, never called here
    assert warnings_of(caplog) == []
    assert (hub.stats()["parked"], hub.stats()["misconfigured"]) == (0, 0)


def test_fast_path_off_is_a_choice_not_a_mistake(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    with Hub(fast_path=False) as hub:
        open_streams(hub, 2)
        assert warnings_of(caplog) == []
        assert [r.getMessage() for r in caplog.records].count(
            "sse_kit: Hub(fast_path=False): every open stream holds a server thread for its "
            "whole life") == 1
        assert (hub.stats()["parked"], hub.stats()["misconfigured"]) == (2, 0)


def test_a_broadcast_that_matches_nobody_is_counted_and_named_at_debug(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sse_kit")
    hub.register(Client("user:42"))
    hub.broadcast_to_pattern("job:7:*", "done")  # the docs' old mistake
    hub.broadcast_to_pattern("user:*", "hello")
    hub.flush()
    assert (hub.stats()["unmatched"], hub.stats()["published"]) == (1, 2)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "sse_kit: a broadcast to 'job:7:*' matched no stream" in debug
    assert not any("user:*" in line for line in debug)


def test_advise_once_says_each_key_once(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    assert hub.advise_once("k", logging.WARNING, "sse_kit: %s", "first")
    assert not hub.advise_once("k", logging.WARNING, "sse_kit: %s", "again")
    assert hub.advise_once("other", logging.INFO, "sse_kit: info")
    assert warnings_of(caplog) == ["sse_kit: first"]
    assert hub.stats()["misconfigured"] == 1  # an INFO is not a mistake


def test_streams_that_hold_threads_leave_some_for_ordinary_requests(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    # Under sse_kit's gunicorn adapter with --threads 4, streams that cannot detach
    # (TLS in gunicorn here) may take 3 threads; the 4th stays for other requests.
    parked = {SERVER_KEY: "sse_kit.gunicorn", THREADS_KEY: 4,
              PARKED_KEY: "TLS terminated by gunicorn itself (certfile)"}
    responses = []
    for i in range(3):
        env = environ()
        env.update(parked)
        responses.append(serve_sse(hub, env, f"c{i}"))
    assert [r.status_code for r in responses] == [200, 200, 200]
    env = environ()
    env.update(parked)
    refused = serve_sse(hub, env, "c3")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "3"
    assert b"streams already hold this worker's threads" in refused.get_data()
    again = serve_sse(hub, {**environ(), **parked}, "c4")
    assert again.status_code == 503
    warnings = [w for w in warnings_of(caplog) if "refused a stream (threads)" in w]
    assert len(warnings) == 1 and "raise --threads" in warnings[0]  # once, with the fix
    # A detachable stream is not limited by the pool, and a closed one frees a thread.
    detachable = serve_sse(hub, {**environ(), DETACH_KEY: lambda: None}, "d")
    assert detachable.status_code == 200
    responses[0].close()
    hub.flush()
    back = serve_sse(hub, {**environ(), **parked}, "c5")
    assert back.status_code == 200
    for r in [*responses[1:], detachable, back]:
        r.close()
    assert hub.stats()["refused"] == 2
