"""Who may hear what, for real: session identity, authorize, disconnect, max_age,
CORS, limits and logs, against gunicorn gthread over real sockets."""

from __future__ import annotations

import json

import httpx
import pytest
from flask import Flask

from tests._decoder import decode
from tests.live._secure import (
    Start,
    login,
    publish,
    start,
    stats,
    stream,
    wait_clients,
)

pytestmark = pytest.mark.live


def connected_id(body: bytes) -> str:
    event = decode(body)[0]
    assert event.event == "connected"
    client_id: str = json.loads(event.data)["client_id"]
    return client_id


def forged_cookie(payload: dict[str, str], secret: str) -> str:
    """A Flask session cookie for *payload*, signed with *secret*."""
    app = Flask("forger")
    app.secret_key = secret
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    return f"session={serializer.dumps(payload)}"


def test_a_client_cannot_choose_whose_events_it_hears(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    alice, bob = login(server, "alice"), login(server, "bob")
    with stream(server, **alice) as mine:
        connected = mine.read_until(b"\n\n")
        assert connected_id(connected) == "user:alice"
        before = decode(connected)[0].id
        assert publish(server, "user:alice", "alice's secret 1").status_code == 200
        mine.read_until(b"secret 1")
        # Bob asks for Alice's stream by query parameter, by header, and by resuming
        # from before Alice's private event: he is still user:bob, and hears nothing of hers.
        attempts = [
            stream(server, "/events/?cid=user:alice&client_id=user:alice&user=alice",
                   **bob),
            stream(server, "/events/", **bob, **{
                "X-Client-ID": "user:alice", "X-User": "alice", "Last-Event-ID": before,
            }),
            stream(server, "/anon/?cid=user:alice", **{"X-Client-ID": "user:alice"}),
        ]
        for raw in attempts:
            assert raw.status == 200
            assert connected_id(raw.read_until(b"\n\n")) != "user:alice"
        assert attempts[0].body.count(b"event: connected") == 1
        assert publish(server, "user:alice", "alice's secret 2").status_code == 200
        assert publish(server, "*", "marker").status_code == 200
        mine.read_until(b"marker")
        assert b"secret 2" in mine.body
        for raw in attempts:
            body = raw.read_until(b"marker")
            assert b"secret" not in body, body
            raw.close()
        # Without a valid signature there is no identity: 401, no stream.
        for cookie in [
            forged_cookie({"user": "alice"}, "guessed-secret"),
            bob["Cookie"].replace("session=", "session=x"),
            "",
        ]:
            r = httpx.get(f"{server.url}/events/?cid=user:alice",
                          headers={"Cookie": cookie} if cookie else {})
            assert (r.status_code, r.text) == (401, "log in first\n")
    assert stats(server)["forbidden"] == 3


def test_authorize_refusals_are_one_line_and_open_no_stream(gunicorn_server: Start) -> None:
    server = start(gunicorn_server)
    cases = [
        (None, 401, "log in first\n"),
        (login(server, "mallory"), 403, "forbidden\n"),  # authorize returned False
        (login(server, "gail", role="guest"), 403, "guests may not subscribe\n"),  # a str
    ]
    for client, status, text in cases:
        headers = client or {}
        r = httpx.get(f"{server.url}/events/", headers=headers)
        assert (r.status_code, r.text) == (status, text)
        assert r.headers["content-type"].startswith("text/plain")
    s = stats(server)
    assert (s["forbidden"], s["connects"], s["clients"]) == (3, 0, 0)


def test_logout_ends_the_users_streams_and_the_reconnect_is_refused(
    gunicorn_server: Start,
) -> None:
    server = start(gunicorn_server)
    alice, bob = login(server, "alice"), login(server, "bob")
    tabs = [stream(server, **alice) for _ in range(2)]
    other = stream(server, **bob)
    for raw in [*tabs, other]:
        raw.read_until(b"\n\n")
    r = httpx.post(f"{server.url}/logout", headers=alice)
    assert r.json() == {"ended": 2}
    assert "session=;" in r.headers["set-cookie"]  # the browser forgets the session
    for raw in tabs:
        raw.read_to_end(timeout=5)
        assert raw.complete  # ended by the server, cleanly
        raw.close()
    # The browser's reconnect carries the cookie the logout cleared: refused.
    assert httpx.get(f"{server.url}/events/").status_code == 401
    assert publish(server, "user:bob", "still here").status_code == 200
    other.read_until(b"still here")
    other.close()
    wait_clients(server, 0)
    assert stats(server)["kicked"] == 2


def test_max_age_ends_the_stream_and_the_reconnect_resumes_losslessly(
    gunicorn_server: Start,
) -> None:
    server = start(gunicorn_server, SSE_MAX_AGE="1")
    alice = login(server, "alice")
    raw = stream(server, **alice)
    raw.read_until(b"\n\n")
    publish(server, "user:alice", "a", "b")
    body = raw.read_to_end(timeout=5)  # ends by itself within max_age
    assert raw.complete and body.endswith(b"retry: 250\n\n")
    events = decode(body)
    assert [e.data for e in events[1:]] == ["a", "b"]
    last_id = events[-1].id
    raw.close()
    publish(server, "user:alice", "c", "d")  # while the browser was away
    again = stream(server, **alice, **{"Last-Event-ID": last_id})
    body = again.read_until(b"data: d\n\n")
    assert [e.data for e in decode(body)] == [json.dumps({"client_id": "user:alice"},
                                                         separators=(",", ":")), "c", "d"]
    assert again.read_to_end(timeout=5).endswith(b"retry: 250\n\n")  # it expires too
    again.close()
    wait_clients(server, 0)
    s = stats(server)
    assert (s["expired"], s["resumed"], s["replayed"], s["resets"]) == (2, 1, 2, 0)


ORIGIN = "https://app.example.com"


def test_cors_allow_list_preflight_and_credentials(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_CORS=f"{ORIGIN},http://localhost:3000",
                   SSE_CORS_CREDENTIALS="1")
    alice = login(server, "alice")
    with stream(server, Origin=ORIGIN, **alice) as raw:
        assert raw.status == 200
        assert raw.headers["access-control-allow-origin"] == ORIGIN
        assert raw.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in raw.headers["vary"].split(", ")  # Flask adds Cookie
    for origin in ["https://evil.example.com", "https://app.example.com.evil.com", "null",
                   "https://app.example.com:8443", "*"]:
        r = httpx.get(f"{server.url}/events/", headers={"Origin": origin, **alice})
        assert (r.status_code, r.text) == (403, "this origin may not open the event stream\n")
        assert "access-control-allow-origin" not in r.headers
        assert "Origin" in r.headers["vary"].split(", ")
    # Refusals to an allowed origin still name it, so the page can see why.
    r = httpx.get(f"{server.url}/events/", headers={"Origin": ORIGIN})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "last-event-id, cache-control"}
    r = httpx.options(f"{server.url}/events/", headers=preflight)  # no cookie, as browsers do
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-methods"] == "GET"
    assert "Last-Event-ID" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-allow-credentials"] == "true"
    assert int(r.headers["access-control-max-age"]) > 0
    for bad in [{"Origin": "https://evil.example.com"},
                {"Access-Control-Request-Method": "POST"},
                {"Access-Control-Request-Headers": "authorization"}]:
        r = httpx.options(f"{server.url}/events/", headers={**preflight, **bad})
        assert r.status_code == 403 and r.text.count("\n") == 1
        assert "access-control-allow-origin" not in r.headers
    # The anonymous blueprint has no CORS configured: nothing is allowed cross-origin.
    with stream(server, "/anon/", Origin=ORIGIN) as raw:
        assert not any(h.startswith("access-control-") for h in raw.headers)
    r = httpx.options(f"{server.url}/anon/", headers=preflight)
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_limits_at_their_edges(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_MAX_PER_ID="2", SSE_MAX_EVENT="1000", SSE_KEEPALIVE="60")
    alice, bob = login(server, "alice"), login(server, "bob")
    tabs = [stream(server, **alice) for _ in range(2)]
    for raw in tabs:
        raw.read_until(b"\n\n")
    third = httpx.get(f"{server.url}/events/", headers=alice)
    assert third.status_code == 429 and third.headers["retry-after"] == "3"
    assert third.text == "client ID 'user:alice' already has max_clients_per_id=2 streams\n"
    with stream(server, **bob) as other:  # another ID is not affected
        assert other.status == 200
    # The newest was refused; the oldest two still stream. An event whose encoding
    # ("data: " + text + "\n\n") is exactly max_event_size passes; one byte more does not.
    assert publish(server, "user:alice", "x" * 992).status_code == 200
    r = publish(server, "user:alice", "y" * 993)
    assert r.status_code == 413
    assert r.json()["error"] == "the encoded event is 1001 bytes; max_event_size is 1000"
    publish(server, "user:alice", "after")
    for raw in tabs:
        body = raw.read_until(b"after")
        assert b"x" * 992 in body and b"y" * 993 not in body
    # A tab reloads: its old connection closes and the new one comes at once, long
    # before a keep-alive (60 s here) would notice. The hub finds the dead one.
    tabs[0].close()
    with stream(server, **alice) as fourth:
        assert fourth.status == 200
    tabs[1].close()
    s = stats(server)
    assert (s["refused_per_id"], s["too_large"]) == (1, 1)


def test_no_query_string_reaches_a_log(gunicorn_server: Start) -> None:
    server = start(gunicorn_server, SSE_LOG="1", SSE_KEEPALIVE="0.2")
    alice = login(server, "alice")
    secret = "tok3n-s3cr3t"
    with stream(server, f"/events/?token={secret}", **alice) as raw:
        raw.read_until(b": keepalive")
    with stream(server, f"/anon/?access_token={secret}") as raw:
        raw.read_until(b"\n\n")
    assert httpx.get(f"{server.url}/events/?token={secret}").status_code == 401
    assert httpx.post(f"{server.url}/events/?token={secret}").status_code == 405
    r = httpx.get(f"{server.url}/events/?token={secret}", headers={"Accept": "text/html"})
    assert r.status_code == 406
    assert httpx.get(f"{server.url}/healthz?visible=yes").status_code == 200
    wait_clients(server, 0)
    log = server.log_text()
    assert "sse_kit: refused GET '/events/': 401 log in first" in log  # sse_kit does log
    assert '"GET /events/?<redacted> HTTP/1.1" 200' in log  # gunicorn's access log
    assert '"GET /healthz?visible=yes HTTP/1.1" 200' in log  # other routes are untouched
    assert secret not in log
