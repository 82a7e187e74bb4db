"""The blueprint's gate: request checks, authorize, CORS; and what sse_kit logs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Request, abort
from werkzeug.exceptions import Unauthorized
from werkzeug.test import TestResponse

from sse_kit import CORSPolicy, Hub, serve_sse
from sse_kit.flask import create_blueprint
from tests._streams import environ

APP = "https://app.example.com"


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def make_app(hub: Hub, **options: Any) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub, **options), url_prefix="/events")
    return app


def get(app: Flask, method: str = "GET", path: str = "/events/", **headers: str) -> TestResponse:
    response = app.test_client().open(path, method=method, headers=headers)
    response.close()  # a stream is not read: close() unregisters it
    return response


def verdict(value: object) -> Callable[[Request], Any]:
    return lambda request: value


def _raise(code: int, text: str) -> Callable[[Request], Any]:
    def authorize(request: Request) -> bool:
        abort(code, text)

    return authorize


@pytest.mark.parametrize(
    ("authorize", "status", "text"),
    [
        (verdict(False), 403, "forbidden\n"),
        (verdict("your plan has no live updates"), 403, "your plan has no live updates\n"),
        (verdict(""), 403, "forbidden\n"),
        (verdict("two\nlines\r\nhere"), 403, "two lines here\n"),
        (verdict("x" * 500), 403, "x" * 197 + "...\n"),
        (verdict("word " * 100), 403, ("word " * 39).rstrip() + "...\n"),
        (_raise(401, "log in first"), 401, "log in first\n"),
        (_raise(429, "slow down"), 429, "slow down\n"),
    ],
)
def test_authorize_refusals_are_one_line(
    hub: Hub, authorize: Callable[[Request], Any], status: int, text: str
) -> None:
    calls: list[str] = []
    app = make_app(hub, authorize=authorize, client_id=lambda r: calls.append("id") or "c")
    r = get(app)
    assert (r.status_code, r.get_data(as_text=True)) == (status, text)
    assert r.mimetype == "text/plain"
    assert calls == []  # client_id is not asked for a refused request
    assert hub.get_client_count() == 0


def test_authorize_true_opens_the_stream(hub: Hub) -> None:
    r = get(make_app(hub, authorize=verdict(True)))
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert hub.stats()["connects"] == 1


def test_authorize_must_answer_with_a_bool_a_str_or_a_datetime(hub: Hub) -> None:
    app = make_app(hub, authorize=verdict(1))
    app.testing = True  # a programming error propagates instead of becoming a 500
    with pytest.raises(TypeError, match="authorize must return True, False, a str or a datetime"):
        app.test_client().get("/events/")


def test_a_long_refusal_is_cut_at_a_word_and_says_so(hub: Hub) -> None:
    # werkzeug's own 401 text (abort(401) with no description) is over 200 characters.
    r = get(make_app(hub, client_id=lambda r: abort(401)))
    text = r.get_data(as_text=True)
    assert r.status_code == 401 and text.endswith("...\n") and len(text) <= 201
    assert text.startswith("The server could not verify that you are authorized")
    assert text[:-4].split()[-1] in Unauthorized.description.split()  # a whole word


def test_client_id_may_refuse_with_401(hub: Hub) -> None:
    r = get(make_app(hub, client_id=_raise(401, "who are you?")))
    assert (r.status_code, r.get_data(as_text=True)) == (401, "who are you?\n")
    assert hub.stats()["forbidden"] == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_wrong_methods_get_a_one_line_405(hub: Hub, method: str) -> None:
    r = get(make_app(hub), method)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    if method != "HEAD":
        assert r.get_data(as_text=True) == f"an event stream is opened with GET, not {method}\n"
    assert hub.stats()["rejected"] == 1


def test_cors_through_the_blueprint(hub: Hub) -> None:
    app = make_app(hub, cors_origins=[APP], cors_credentials=True)
    ok = get(app, Origin=APP)
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    preflight = get(app, "OPTIONS", Origin=APP, **{"Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert get(app, "POST", Origin=APP).headers["Allow"] == "GET, OPTIONS"
    evil = get(app, Origin="https://evil.example.com")
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    plain = get(make_app(Hub(), name="plain"), Origin=APP)  # CORS is off by default
    assert "Access-Control-Allow-Origin" not in plain.headers and "Vary" not in plain.headers


def test_serve_sse_checks_cors_type(hub: Hub) -> None:
    with pytest.raises(TypeError, match=r"cors must be a sse_kit\.CORSPolicy"):
        serve_sse(hub, environ(), "c", cors=[APP])  # type: ignore[arg-type]
    response = serve_sse(hub, environ(Origin=APP), "c", cors=CORSPolicy([APP]))
    assert response.headers["Access-Control-Allow-Origin"] == APP
    response.close()


def test_sse_kit_never_logs_a_query_string(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sse_kit")
    secret = "s3cr3t-t0k3n"
    app = make_app(hub, authorize=verdict(False))
    open_app = make_app(hub, name="open")
    for a, method, headers in [
        (app, "GET", {}),
        (open_app, "POST", {}),
        (open_app, "GET", {"Accept": "text/html"}),
        (open_app, "GET", {"Last-Event-ID": secret}),
    ]:
        get(a, method, f"/events/?token={secret}", **headers)
    assert "refused GET '/events/': 403 forbidden" in caplog.text
    assert "refused POST '/events/': 405" in caplog.text
    assert "connected" in caplog.text and "disconnected" in caplog.text
    assert secret not in caplog.text
