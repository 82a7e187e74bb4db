"""A real browser's EventSource against gunicorn gthread: what it receives, and how
it comes back after the server restarts or cuts it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests._browser import Browser
from tests._live import wait_for
from tests.live._helpers import CONF, WORKER_CLASS, Start, publish, start, stats

pytestmark = [pytest.mark.live, pytest.mark.browser]

APP = "tests.live.browser_app:create_app()"
NewBrowser = Callable[[], Browser]


def open_page(browser: Browser, url: str, cid: str, *, mode: str = "raw",
              types: str = "") -> None:
    browser.open(f"{url}/page?cid={cid}&mode={mode}&types={types}")
    browser.wait_js("window.seen.some((e) => e.type === 'connected')", what="the connected event")


def seen(browser: Browser) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = browser.js("return window.seen")
    return result


def wait_seen(browser: Browser, n: int, *, kind: str = "message", timeout: float = 15.0) -> None:
    browser.wait_js(f"window.seen.filter((e) => e.type === {kind!r}).length >= {n}",
                    timeout=timeout, what=f"{n} {kind} events")


def datas(entries: list[dict[str, Any]], kind: str = "message") -> list[str]:
    return [e["data"] for e in entries if e["type"] == kind]


def test_event_source_gets_connected_patterns_types_and_exact_data(
    gunicorn_server: Start, browser: NewBrowser
) -> None:
    server = start(gunicorn_server, app=APP, worker_class=WORKER_CLASS)
    page = browser()
    open_page(page, server.url, "job:1:a", types="note")
    (connected,) = seen(page)
    assert json.loads(connected["data"]) == {"client_id": "job:1:a"}
    assert connected["id"]  # the position a reconnect resumes from
    multiline = "one\ntwo\r\nthree\rfour\n\nsix"
    publish(server, "job:2:*", "not for this page")
    publish(server, "user:*", "nor this")
    publish(server, "job:1:*", multiline)
    publish(server, "job:1:a", {"n": 1, "s": "é ✓"}, event="note")
    publish(server, "job:?:a", "  leading spaces, trailing newline\n")
    publish(server, "*", "")
    wait_seen(page, 3)
    got = seen(page)[1:]
    assert [(e["type"], e["data"]) for e in got] == [
        # The spec: every line break (CRLF, CR, LF) becomes LF; blank lines survive.
        ("message", "one\ntwo\nthree\nfour\n\nsix"),
        ("note", '{"n":1,"s":"é ✓"}'),
        ("message", "  leading spaces, trailing newline\n"),
        ("message", ""),
    ]
    ids = [e["id"] for e in got]
    assert len(set(ids)) == 4 and all(ids)


def test_restart_the_browser_reconnects_and_gets_reset(
    gunicorn_server: Start, browser: NewBrowser
) -> None:
    env = {"SSE_RETRY": "200"}
    first = start(gunicorn_server, app=APP, worker_class=WORKER_CLASS,
                   **env)
    page = browser()
    open_page(page, first.url, "user:1", mode="helper")
    publish(first, "user:1", "a", "b", "c")
    wait_seen(page, 3)
    last_id = seen(page)[-1]["id"]
    first.terminate(timeout=20)
    page.wait_js("window.stream.state === 'reconnecting'", what="the helper to see the loss")
    # A new process on the same port: a new hub, whose history is new (a new epoch).
    second = gunicorn_server(APP, config=CONF, threads=32, graceful_timeout=30, env=env,
                             worker_class=WORKER_CLASS,
                             extra_args=["-b", f"{first.host}:{first.port}"])
    wait_seen(page, 2, kind="connected")
    publish(second, "user:1", "d", "e")
    wait_seen(page, 5)
    got = seen(page)
    assert [(e["type"], e["data"] if e["type"] == "message" else "") for e in got] == [
        ("connected", ""), ("message", "a"), ("message", "b"), ("message", "c"),
        ("connected", ""), ("reset", ""), ("message", "d"), ("message", "e"),
    ]
    reset = got[5]["parsed"]
    # The browser sent Last-Event-ID by itself; the new hub cannot resume from it.
    assert reset == {"reason": "unknown", "last_event_id": last_id}
    assert page.js("return window.states") == ["connecting", "open", "reconnecting", "open"]
    assert stats(second)["resets"] == 1


def test_cut_as_a_slow_client_the_browser_resumes_losslessly(
    gunicorn_server: Start, browser: NewBrowser
) -> None:
    # The queue path: on the fast path the hub writes the burst straight into the
    # socket buffers (a browser reads fast), so the 4-event outbox never overflows.
    server = start(gunicorn_server, app=APP, worker_class=WORKER_CLASS,
                   SSE_BUFFER="4", SSE_RETRY="200", SSE_FAST_PATH="0")
    page = browser()
    open_page(page, server.url, "user:1")
    burst = [f"event {i}" for i in range(300)]
    publish(server, "user:1", *burst)
    wait_seen(page, 300)
    got = seen(page)
    assert datas(got) == burst  # every event once, in order
    s = stats(server)
    assert s["slow_disconnects"] >= 1, s  # it was cut at least once...
    assert s["resumed"] >= s["slow_disconnects"] and s["resets"] == 0, s  # ...and resumed
    assert datas(got, "reset") == []
    assert len(datas(got, "connected")) == s["connects"]
    assert s["replayed"] > 0, s


def test_reset_reaches_the_page_when_history_cannot_cover_the_gap(
    gunicorn_server: Start, browser: NewBrowser
) -> None:
    # A 2 s retry leaves the test time to publish more than the history holds.
    server = start(gunicorn_server, app=APP, worker_class=WORKER_CLASS,
                   SSE_HISTORY="5", SSE_RETRY="2000")
    page = browser()
    open_page(page, server.url, "user:1", mode="helper")
    publish(server, "user:1", "before")
    wait_seen(page, 1)
    r = httpx.post(f"{server.url}/kick", json={"pattern": "user:1"})
    assert r.json() == {"kicked": 1}
    publish(server, "user:1", *[f"missed {i}" for i in range(20)])
    wait_seen(page, 1, kind="reset")
    publish(server, "user:1", "after")
    wait_seen(page, 2)
    got = seen(page)
    assert [e["type"] for e in got] == ["connected", "message", "connected", "reset", "message"]
    assert got[3]["parsed"]["reason"] == "expired"
    assert datas(got) == ["before", "after"]


def test_the_js_helper_parses_json_routes_types_and_closes(
    gunicorn_server: Start, browser: NewBrowser
) -> None:
    server = start(gunicorn_server, app=APP, worker_class=WORKER_CLASS,
                   SSE_KEEPALIVE="0.5")
    r = httpx.get(f"{server.url}/events/sse_kit.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    page = browser()
    open_page(page, server.url, "user:1", mode="helper", types="note,job")
    assert page.js("return window.stream.clientId") == "user:1"
    publish(server, "user:1", {"step": 1, "of": [1, 2]}, event="job")
    publish(server, "user:1", "not json", "42", event="note")
    publish(server, "user:1", "[1,")
    wait_seen(page, 1)
    wait_seen(page, 2, kind="note")
    parsed = [(e["type"], e["parsed"]) for e in seen(page)[1:]]
    assert parsed == [
        ("job", {"step": 1, "of": [1, 2]}),
        ("note", "not json"),  # the raw fallback
        ("note", 42),
        ("message", "[1,"),
    ]
    # A throwing handler does not keep the event from the next one.
    page.js("""
        window.after = [];
        window.stream.on('note', () => { throw new Error('boom'); });
        window.stream.on('note', (d) => window.after.push(d));
    """)
    publish(server, "user:1", "again", event="note")
    page.wait_js("window.after.length === 1", what="the second note handler")
    # off() removes a handler: the next note reaches only the one still on.
    page.js("""
        window.removed = [];
        const gone = (d) => window.removed.push(d);
        window.stream.on('note', gone).off('note', gone);
    """)
    publish(server, "user:1", "once more", event="note")
    page.wait_js("window.after.length === 2", what="the note after off()")
    assert page.js("return window.removed") == []
    page.js("window.stream.close()")
    assert page.js("return window.stream.state") == "closed"
    assert page.js("return window.states.slice(-1)[0]") == "closed"
    # The server notices the closed connection at its next write (a keep-alive).
    wait_for(lambda: stats(server)["clients"] == 0, message="the closed stream to unregister")


def test_the_js_helper_retries_after_a_refusal(
    gunicorn_server: Start, browser: NewBrowser
) -> None:
    # max_clients=1: a second tab gets 503, which EventSource treats as final.
    server = start(gunicorn_server, app=APP, worker_class=WORKER_CLASS,
                   SSE_MAX_CLIENTS="1", SSE_KEEPALIVE="0.5")
    holder = browser()
    open_page(holder, server.url, "user:1", mode="helper")
    page = browser()
    page.open(f"{server.url}/page?cid=user:2&mode=helper")
    page.wait_js("window.states.includes('reconnecting')", what="the refusal")
    assert page.js("return window.seen") == []
    holder.js("window.stream.close()")
    # The helper opens a new EventSource after its back-off (1 s) and gets in.
    page.wait_js("window.seen.some((e) => e.type === 'connected')", timeout=15,
                 what="the helper to retry")
    assert page.js("return window.stream.state") == "open"
