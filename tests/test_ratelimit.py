"""The connection-rate limit: a token bucket per source, bounded, and its 429."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from sse_kit import Hub, RateLimit, serve_sse
from sse_kit._ratelimit import remote_addr
from sse_kit.flask import create_blueprint
from tests._streams import environ


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request_from(addr: str, **headers: str) -> dict[str, Any]:
    env = environ(**headers)
    env["REMOTE_ADDR"] = addr
    return env


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def test_a_source_gets_its_burst_then_one_per_interval() -> None:
    clock = Clock()
    limit = RateLimit(2.0, burst=3, clock=clock)
    a = request_from("10.0.0.1")
    assert [limit.take(a) for _ in range(3)] == [None, None, None]
    assert limit.take(a) == pytest.approx(0.5)  # one token every 0.5 s
    clock.now += 0.25
    assert limit.take(a) == pytest.approx(0.25)  # half a token back: still no
    clock.now += 0.25
    assert limit.take(a) is None
    assert limit.take(a) == pytest.approx(0.5)


def test_one_source_refused_leaves_the_others_untouched() -> None:
    limit = RateLimit(1.0, burst=2, clock=Clock())
    storm = request_from("10.0.0.1")
    for _ in range(2):
        assert limit.take(storm) is None
    assert all(limit.take(storm) is not None for _ in range(50))
    for i in range(2, 20):
        assert limit.take(request_from(f"10.0.0.{i}")) is None


def test_tokens_never_pile_up_beyond_the_burst() -> None:
    clock = Clock()
    limit = RateLimit(1.0, burst=2, clock=clock)
    a = request_from("10.0.0.1")
    limit.take(a)
    clock.now += 3600
    assert [limit.take(a) is None for _ in range(3)] == [True, True, False]


def test_the_table_is_bounded_forgetting_the_idlest_source() -> None:
    clock = Clock()
    limit = RateLimit(1.0, burst=1, max_keys=3, clock=clock)
    for addr in ("a", "b", "c"):
        assert limit.take(request_from(addr)) is None
    assert limit.take(request_from("a")) is not None  # "a" used last now
    assert limit.take(request_from("d")) is None  # evicts "b", the idlest
    assert limit.sources() == 3
    assert limit.take(request_from("a")) is not None  # "a" is still remembered
    assert limit.take(request_from("b")) is None  # "b" was forgotten: a full bucket


def test_a_key_callable_chooses_the_source_and_none_exempts() -> None:
    def key(env: Any) -> str | None:
        if env.get("HTTP_X_INTERNAL"):
            return None
        return str(env.get("HTTP_X_FORWARDED_FOR", "")).split(",")[-1].strip() or None

    limit = RateLimit(1.0, burst=1, key=key, clock=Clock())
    assert limit.take(request_from("proxy", X_Forwarded_For="1.1.1.1")) is None
    assert limit.take(request_from("proxy", X_Forwarded_For="1.1.1.1")) is not None
    assert limit.take(request_from("proxy", X_Forwarded_For="spoof, 2.2.2.2")) is None
    assert all(limit.take(request_from("proxy", X_Internal="1")) is None for _ in range(5))
    assert limit.take(request_from("")) is None  # no address: exempt, never a shared bucket
    assert remote_addr({}) is None


def test_serve_sse_answers_429_with_retry_after_before_anything_else(hub: Hub) -> None:
    limit = RateLimit(0.1, burst=1, clock=Clock())
    first = serve_sse(hub, request_from("10.0.0.1"), "user:1", rate_limit=limit)
    assert first.status_code == 200
    first.close()
    second = serve_sse(hub, request_from("10.0.0.1"), "user:1", rate_limit=limit)
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "10"
    assert second.get_data(as_text=True) == (
        "too many stream requests from this source; retry later\n")
    other = serve_sse(hub, request_from("10.0.0.2"), "user:2", rate_limit=limit)
    assert other.status_code == 200
    other.close()
    assert hub.stats()["rate_limited"] == 1


def test_the_blueprint_limits_before_authorize_runs(hub: Hub) -> None:
    calls: list[str] = []

    def authorize(request: Any) -> bool:
        calls.append(request.remote_addr)
        return True

    app = Flask(__name__)
    app.register_blueprint(
        create_blueprint(hub, authorize=authorize,
                         rate_limit=RateLimit(1.0, burst=1, clock=Clock())),
        url_prefix="/events")
    client = app.test_client()
    with client.get("/events/", environ_base={"REMOTE_ADDR": "10.0.0.1"}) as ok:
        assert ok.status_code == 200
    refused = client.get("/events/", environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert calls == ["10.0.0.1"]


def test_behind_a_proxy_with_the_default_key_it_warns_once(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sse_kit")
    limit = RateLimit(100.0, burst=100)
    for _ in range(3):
        serve_sse(hub, request_from("10.9.9.9", X_Forwarded_For="1.2.3.4"), "u",
                  rate_limit=limit).close()
    lines = [r.getMessage() for r in caplog.records if "RateLimit" in r.getMessage()]
    assert len(lines) == 1 and "ProxyFix" in lines[0] and "shares one bucket" in lines[0]
    # With ProxyFix (it records the original environ) there is nothing to say.
    assert not limit.shared_by_a_proxy(
        {**request_from("1.2.3.4", X_Forwarded_For="1.2.3.4"), "werkzeug.proxy_fix.orig": {}})
    assert not RateLimit(key=remote_addr.__call__).shared_by_a_proxy(
        request_from("10.9.9.9", X_Forwarded_For="1.2.3.4"))
