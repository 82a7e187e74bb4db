"""What sse_kit writes to the log: one line per connect and disconnect, a warning
per slow-client cut, and never a URL, query string or header."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from sse_kit import Hub
from sse_kit.flask import create_blueprint
from tests._streams import Reader

SECRET = "s3cr3t-T0KEN"


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("sse_kit")]


def test_one_info_line_per_connect_and_disconnect_without_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with Hub() as hub:
        app = Flask(__name__)
        app.register_blueprint(create_blueprint(hub), url_prefix="/events")
        response = app.test_client().get(
            f"/events/?token={SECRET}&access_token={SECRET}",
            headers={"Authorization": f"Bearer {SECRET}", "Last-Event-ID": SECRET},
            buffered=False,
        )
        first = next(iter(response.response))
        assert b"event: connected" in first
        hub.broadcast_to_pattern("anon:*", "one")
        hub.flush()
        response.close()
    logged = lines(caplog)
    connects = [m for level, m in logged if level == logging.INFO and " connected" in m]
    ends = [m for level, m in logged if level == logging.INFO and "disconnected" in m]
    assert len(connects) == 1 and len(ends) == 1, logged
    assert connects[0].startswith("sse_kit: client 'anon:") and "reset (malformed)" in connects[0]
    assert "disconnected (" in ends[0] and " after " in ends[0] and "event(s)" in ends[0]
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert SECRET not in text and "token" not in text.lower(), text


def test_a_slow_client_cut_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with Hub(client_buffer=1) as hub:
        reader = Reader(hub, "user:slow")
        for i in range(50):
            hub.broadcast_to_pattern("user:slow", str(i))
        hub.flush()
        assert reader.ended()
        assert hub.stats()["slow_disconnects"] == 1
        reader.close()
    warnings = [m for level, m in lines(caplog) if level == logging.WARNING]
    # Besides the cut: the advice a parked stream gives, once (this test's environ
    # names no server, so its streams hold a thread each).
    assert warnings[1:] == ["sse_kit: cut slow client 'user:slow'; it resumes from history"]
    assert "gives every open stream a thread of its own" in warnings[0]
    end = [m for level, m in lines(caplog) if "disconnected" in m]
    assert len(end) == 1 and "disconnected (slow)" in end[0]
