"""CORSPolicy: the exact allow-list, preflight answers, and what it refuses to configure."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from sse_kit import CORSPolicy

APP = "https://app.example.com"


def environ(method: str = "GET", **headers: str) -> dict[str, Any]:
    return EnvironBuilder(path="/events/", method=method, headers=headers).get_environ()


@pytest.mark.parametrize(
    ("origins", "error", "match"),
    [
        (["*"], ValueError, "would admit any page"),
        (["null"], ValueError, "would admit any page"),
        (["https://app.example.com/"], ValueError, "nothing else"),
        (["https://app.example.com/path"], ValueError, "nothing else"),
        (["https://app.example.com?x"], ValueError, "nothing else"),
        (["https://user@app.example.com"], ValueError, "nothing else"),
        (["app.example.com"], ValueError, "nothing else"),
        (["ftp://app.example.com"], ValueError, "nothing else"),
        (["https://app.example.com:443"], ValueError, "default port"),
        (["http://app.example.com:80"], ValueError, "default port"),
        (["http://app.example.com:99999"], ValueError, "is not an origin"),
        ([], ValueError, "at least one origin"),
    ],
)
def test_only_exact_origins_can_be_configured(
    origins: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CORSPolicy(origins)


def test_origins_are_compared_as_browsers_serialise_them() -> None:
    cors = CORSPolicy(["HTTPS://App.Example.com", "http://localhost:3000"])
    assert cors.origins == {APP, "http://localhost:3000"}
    assert cors.allows(APP) and cors.allows("http://localhost:3000")
    for other in [None, "", "https://app.example.com.evil.com", "https://evil.com",
                  "http://app.example.com", "https://app.example.com:8443", "null", "*"]:
        assert not cors.allows(other)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # no Origin: not a cross-origin browser request
        ({"Origin": APP}, False),
        ({"Origin": "https://evil.example.com"}, True),
        ({"Origin": "null"}, True),
        ({"Origin": "http://[", "Host": "localhost"}, True),  # garbage is refused, not a 500
        ({"Origin": "http://localhost", "Host": "localhost"}, False),  # same host
    ],
)
def test_refusal(headers: dict[str, str], refused: bool) -> None:
    assert (CORSPolicy([APP]).refusal(environ(**headers)) is not None) is refused


@pytest.mark.parametrize("credentials", [False, True])
def test_headers_name_only_an_allowed_origin(credentials: bool) -> None:
    cors = CORSPolicy([APP], credentials=credentials)
    allowed = dict(cors.headers(environ(Origin=APP)))
    assert allowed["Access-Control-Allow-Origin"] == APP
    assert allowed["Vary"] == "Origin"
    assert ("Access-Control-Allow-Credentials" in allowed) is credentials
    assert cors.headers(environ(Origin="https://evil.example.com")) == [("Vary", "Origin")]
    assert cors.headers(environ()) == [("Vary", "Origin")]


def test_preflight_allows_get_with_last_event_id() -> None:
    cors = CORSPolicy([APP], max_age=120)
    answer = cors.preflight(environ(
        "OPTIONS", Origin=APP, **{"Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "Last-Event-ID, cache-control"},
    ))
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    assert answer.headers["Access-Control-Allow-Methods"] == "GET"
    assert answer.headers["Access-Control-Allow-Headers"] == "Last-Event-ID, Cache-Control, Accept"
    assert answer.headers["Access-Control-Max-Age"] == "120"
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert "Origin" in answer.headers["Vary"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Origin": "https://evil.example.com"}, "this origin may not open the event stream"),
        ({}, "this origin may not open the event stream"),
        ({"Origin": APP, "Access-Control-Request-Method": "POST"},
         "an event stream is opened with GET, not POST"),
        ({"Origin": APP, "Access-Control-Request-Headers": "Authorization, X-Token"},
         "request header(s) not allowed: authorization, x-token"),
    ],
)
def test_preflight_refusals_allow_nothing(headers: dict[str, str], reason: str) -> None:
    answer = CORSPolicy([APP], credentials=True).preflight(environ("OPTIONS", **headers))
    assert answer.status_code == 403
    assert answer.get_data(as_text=True) == reason + "\n"
    assert not [h for h, _ in answer.headers if h.startswith("Access-Control-Allow")]
