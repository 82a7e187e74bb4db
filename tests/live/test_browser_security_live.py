"""A real browser (headless Chromium's EventSource) against gunicorn gthread:
max_age reconnects lose nothing, and a logout ends the stream for good."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests._browser import Browser
from tests._live import wait_for
from tests.live._secure import Start, publish, start, stats

pytestmark = [pytest.mark.live, pytest.mark.browser]


def test_max_age_reconnects_lose_nothing_and_logout_ends_the_stream(
    gunicorn_server: Start, browser: Callable[..., Browser]
) -> None:
    server = start(gunicorn_server, worker_class="sse_kit.gunicorn.ThreadWorker",
                   SSE_MAX_AGE="1")
    window = browser()
    window.open(f"{server.url}/browser-login?user=alice")
    window.wait_js("window.opens === 1", what="the stream to open")
    sent = [f"event {i}" for i in range(40)]
    # Ten events, then wait for the stream to reach max_age, four times over: the
    # events straddle several expiries (and the reconnects that follow them).
    for k in range(0, len(sent), 10):
        expired = stats(server)["expired"]
        for data in sent[k:k + 10]:
            assert publish(server, "user:alice", data).status_code == 200
        wait_for(lambda e=expired: stats(server)["expired"] > e, timeout=10,
                 message="the stream to reach max_age")
    window.wait_js(f"window.got.length >= {len(sent)}", timeout=20,
                   what=f"{len(sent)} events in the browser")
    got = window.js("return window.got;")
    assert [data for _id, data in got] == sent  # every event, once, in order
    assert len({event_id for event_id, _ in got}) == len(sent)
    s = stats(server)
    assert s["expired"] >= 2 and s["resumed"] >= 2 and s["resets"] == 0, s
    assert window.js("return window.opens;") == s["connects"] >= 3
    # Logging out ends the stream; the browser's reconnect meets authorize and
    # gets 401, after which EventSource stays closed (readyState 2).
    window.js("fetch('/logout', {method: 'POST'});")
    window.wait_js("window.source.readyState === 2", what="EventSource to give up after a 401")
    s = stats(server)
    assert s["kicked"] + s["expired"] >= 1 and s["forbidden"] >= 1 and s["clients"] == 0
