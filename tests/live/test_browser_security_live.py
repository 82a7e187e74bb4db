"""A real browser (headless Chromium's EventSource) against gunicorn gthread:
max_age reconnects lose nothing, and a logout ends the stream for good."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests._live import wait_for
from tests.live._secure import Start, publish, start, stats

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def js(driver: webdriver.Chrome, expression: str) -> Any:
    return driver.execute_script(f"return {expression};")


def test_max_age_reconnects_lose_nothing_and_logout_ends_the_stream(
    gunicorn_server: Start, browser: webdriver.Chrome
) -> None:
    server = start(gunicorn_server, SSE_MAX_AGE="1")
    browser.get(f"{server.url}/browser-login?user=alice")
    wait_for(lambda: js(browser, "window.opens") == 1, message="the stream to open")
    sent = [f"event {i}" for i in range(40)]
    for data in sent:  # over ~4 s: the stream expires (and reconnects) several times
        assert publish(server, "user:alice", data).status_code == 200
        time.sleep(0.1)  # pacing the publisher, not waiting for a condition
    wait_for(lambda: len(js(browser, "window.got")) >= len(sent), timeout=20,
             message=lambda: f"{len(sent)} events in the browser: {js(browser, 'window.got')}")
    got = js(browser, "window.got")
    assert [data for _id, data in got] == sent  # every event, once, in order
    assert len({event_id for event_id, _ in got}) == len(sent)
    s = stats(server)
    assert s["expired"] >= 2 and s["resumed"] >= 2 and s["resets"] == 0, s
    assert js(browser, "window.opens") == s["connects"] >= 3
    # Logging out ends the stream; the browser's reconnect meets authorize and
    # gets 401, after which EventSource stays closed (readyState 2).
    js(browser, "fetch('/logout', {method: 'POST'}).then(r => r.status)")
    wait_for(lambda: js(browser, "window.source.readyState") == 2, timeout=10,
             message="EventSource to give up after the 401")
    s = stats(server)
    assert s["kicked"] + s["expired"] >= 1 and s["forbidden"] >= 1 and s["clients"] == 0
