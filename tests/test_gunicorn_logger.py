"""sse_kit.gunicorn.AccessLogger: stream requests are logged without their query string."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config

from sse_kit.gunicorn import REDACTED, AccessLogger, is_stream_request


def atoms(environ: dict[str, Any], content_type: str = "text/plain") -> dict[str, Any]:
    logger = AccessLogger(Config())
    resp = SimpleNamespace(status="200 OK", sent=10, headers=[("Content-Type", content_type)])
    req = SimpleNamespace(headers=[("ACCEPT", environ.get("HTTP_ACCEPT", ""))])
    base = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/events/",
            "QUERY_STRING": "token=abc", "RAW_URI": "/events/?token=abc"}
    result: dict[str, Any] = logger.atoms(
        resp, req, {**base, **environ}, datetime.timedelta(seconds=1)
    )
    return result


@pytest.mark.parametrize(
    ("environ", "content_type"),
    [
        ({"HTTP_ACCEPT": "text/event-stream"}, "text/plain"),  # EventSource, even if refused
        ({}, "text/event-stream; charset=utf-8"),  # the answer was a stream
        ({"sse_kit.stream_request": True}, "text/plain"),  # an sse_kit endpoint refused it
    ],
)
def test_stream_requests_lose_their_query_string(
    environ: dict[str, Any], content_type: str
) -> None:
    got = atoms(environ, content_type)
    assert got["r"] == f"GET /events/?{REDACTED} HTTP/1.1"
    assert got["q"] == REDACTED
    assert got["{raw_uri}e"] == f"/events/?{REDACTED}"
    assert got["{query_string}e"] == REDACTED
    assert "abc" not in " ".join(str(v) for v in got.values())


def test_other_requests_are_logged_as_gunicorn_would() -> None:
    got = atoms({"HTTP_ACCEPT": "text/html", "RAW_URI": "/page?x=1", "QUERY_STRING": "x=1"})
    assert got["r"] == "GET /page?x=1 HTTP/1.1" and got["q"] == "x=1"


def test_is_stream_request() -> None:
    assert is_stream_request({"HTTP_ACCEPT": "text/event-stream"})
    assert is_stream_request({}, {"content-type": "text/event-stream"})
    assert not is_stream_request({"HTTP_ACCEPT": "application/json"}, [("X", "y")])
