"""The demo as a user sees it: `make demo`'s app under gunicorn, in headless Chromium.

The last test takes the screenshot the README shows; ``make screenshot`` (which sets
``SSE_KIT_UPDATE_SCREENSHOT=1``) saves it as ``docs/demo.png``, so an ordinary test run
leaves the work tree clean.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._browser import Browser
from tests._live import REPO_ROOT, GunicornServer, RawStream

pytestmark = [pytest.mark.live, pytest.mark.browser]

# As `make demo` names them: the config puts examples/ (the demo is not installed) on sys.path.
DEMO_APP = "demo.app:create_app()"
DEMO_CONF = "examples/demo/gunicorn_conf.py"
SCREENSHOT = REPO_ROOT / "docs" / "demo.png"
UPDATE_SCREENSHOT = os.environ.get("SSE_KIT_UPDATE_SCREENSHOT") == "1"
Start = Callable[..., GunicornServer]


def start_demo(gunicorn_server: Start) -> GunicornServer:
    """The demo as `make demo` runs it (sse_kit's worker class, 8 threads, the
    demo's gunicorn config)."""
    return gunicorn_server(DEMO_APP, config=DEMO_CONF, threads=8, graceful_timeout=30,
                           worker_class="sse_kit.gunicorn.ThreadWorker")


def seen(page: Browser, kind: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.js(
        "return window.demo.seen.filter((e) => e.type === arguments[0])", kind)
    return result


def test_the_demo_page_charts_jobs_and_lossless_cut(
    gunicorn_server: Start, browser: Callable[..., Browser], tmp_path: Path
) -> None:
    server = start_demo(gunicorn_server)
    # Three other browsers (without cookies, so three client IDs) are watching too.
    others = [RawStream(server.host, server.port, "/events/") for _ in range(3)]
    for other in others:
        other.read_until(b"event: connected")
    page = browser(size=(1280, 1320))
    page.open(server.url + "/")
    page.wait_js("window.demo.stream.state === 'open'", what="the stream to open")
    client_id = page.js("return window.demo.stream.clientId")
    assert client_id and client_id.startswith("browser:")
    assert page.js("return document.getElementById('client-id').textContent") == client_id

    # A job: progress routed to this browser's pattern, to the end.
    page.js("document.getElementById('start-job').click()")
    page.wait_js("document.querySelector('#jobs .progress.done')", timeout=20,
                 what="the job to finish")
    steps = [e for e in seen(page, "job")]
    assert len(steps) == 11 and '"state":"done"' in steps[-1]["data"]

    # A broadcast from the form reaches the page.
    page.js("""
        const form = document.getElementById('broadcast');
        form.querySelector('[name=message]').value = 'hello\\nfrom the test';
        form.querySelector('button[type=submit]').click();
    """)
    page.wait_js("window.demo.seen.some((e) => e.data === 'hello\\nfrom the test')",
                 what="the broadcast")

    # Cut my connection: the server ends the stream and publishes while it is away.
    page.js("document.getElementById('cut').click()")
    report = page.wait_js("window.demo.lastResume", timeout=20, what="the resume report")
    assert report["exact"] and report["missed"] == [1, 2, 3, 4, 5], report
    # The browser waited the hub's retry: hint (the demo's 1000 ms) before reconnecting.
    assert 900 <= report["delayMs"] < 10_000, report
    connected = seen(page, "connected")
    assert len(connected) == 2  # the first connection and the resumed one
    assert seen(page, "reset") == []
    missed = seen(page, "missed")
    assert [e["id"] for e in missed] == sorted({e["id"] for e in missed},
                                               key=[e["id"] for e in missed].index)
    summary = page.js("return document.getElementById('resume-summary').textContent")
    assert summary.startswith("\u2713 Lossless: all 5 events")

    # The charts are fed by metric events (one a second): a second job runs while
    # a dozen points come in, so the screenshot shows something happening.
    page.js("document.getElementById('start-job').click()")
    page.wait_js("window.demo.seen.filter((e) => e.type === 'metric').length >= 12",
                 timeout=30, what="12 metric events")
    points = page.js("return document.getElementById('now-clients').textContent")
    assert points == "4"  # this page and the three others
    metric_text = httpx.get(f"{server.url}/events/metrics").text
    assert "sse_kit_resumed_total" in metric_text and "sse_kit_clients" in metric_text
    for other in others:
        other.close()
    page.js("window.scrollTo(0, 0)")
    shot = SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "demo.png"
    page.screenshot(shot)
    assert shot.stat().st_size > 20_000
