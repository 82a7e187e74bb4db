"""Stream tickets: minted, redeemed once, refused when replayed, expired, forged
or missing; the identity expiry they carry; through serve_sse as a stream request."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask, abort

from sse_kit import Hub, Identity, InvalidTicket, StreamTickets, serve_sse
from sse_kit._tickets import (
    BAD_TICKET,
    EXPIRED_IDENTITY,
    EXPIRED_TICKET,
    NO_TICKET,
    SPENT_TICKET,
    TOO_MANY,
)
from sse_kit.flask import create_blueprint
from tests._streams import Reader, TestLog, environ

SECRET = "s3cret"


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def test_a_ticket_names_its_client_and_opens_once() -> None:
    tickets = StreamTickets(SECRET)
    ticket = tickets.mint("user:42")
    assert tickets.redeem(ticket) == Identity("user:42", None)
    with pytest.raises(InvalidTicket, match=SPENT_TICKET) as refused:
        tickets.redeem(ticket)
    assert refused.value.status == 401
    # Another ticket for the same client is a ticket of its own.
    assert tickets.redeem(tickets.mint("user:42")).client_id == "user:42"


def test_a_ticket_is_url_safe_and_does_not_hold_the_secret() -> None:
    ticket = StreamTickets(SECRET).mint("user:42 é/?&")
    assert ticket.isascii() and all(c.isalnum() or c in "-_." for c in ticket), ticket
    assert SECRET not in ticket


def test_an_expired_ticket_is_refused_and_not_spent() -> None:
    clock = Clock()
    tickets = StreamTickets(SECRET, ttl=30, clock=clock)
    ticket = tickets.mint("user:1")
    clock.now += 30.5
    with pytest.raises(InvalidTicket, match=EXPIRED_TICKET):
        tickets.redeem(ticket)
    assert len(tickets._spent) == 0


def test_a_ticket_used_within_its_ttl_is_let_in() -> None:
    clock = Clock()
    tickets = StreamTickets(SECRET, ttl=30, clock=clock)
    ticket = tickets.mint("user:1")
    clock.now += 29.9
    assert tickets.redeem(ticket).client_id == "user:1"


@pytest.mark.parametrize("forged", [
    "", "garbage", "a.b", "é", "W10.sig",
])
def test_malformed_or_forged_tickets_are_refused(forged: str) -> None:
    with pytest.raises(InvalidTicket, match=BAD_TICKET if forged else NO_TICKET):
        StreamTickets(SECRET).redeem(forged)


def test_a_ticket_signed_with_another_secret_or_salt_is_refused() -> None:
    ticket = StreamTickets("another secret").mint("user:1")
    with pytest.raises(InvalidTicket, match=BAD_TICKET):
        StreamTickets(SECRET).redeem(ticket)
    ticket = StreamTickets(SECRET, salt="elsewhere").mint("user:1")
    with pytest.raises(InvalidTicket, match=BAD_TICKET):
        StreamTickets(SECRET).redeem(ticket)


def test_a_signed_payload_of_another_shape_is_refused() -> None:
    tickets = StreamTickets(SECRET)
    for payload in (["user:1"], {"c": "user:1"}, ["", "n", 1e12, None], [1, "n", 1e12, None]):
        forged = tickets._serializer.dumps(payload)
        with pytest.raises(InvalidTicket, match=BAD_TICKET):
            tickets.redeem(forged)


def test_no_ticket_is_refused() -> None:
    with pytest.raises(InvalidTicket, match=NO_TICKET):
        StreamTickets(SECRET).redeem(None)


def test_a_refusal_never_quotes_the_ticket() -> None:
    tickets = StreamTickets(SECRET)
    ticket = tickets.mint("user:1")
    tickets.redeem(ticket)
    for bad in (ticket, ticket[:-2] + "xx"):
        with pytest.raises(InvalidTicket) as refused:
            tickets.redeem(bad)
        assert bad not in str(refused.value) and ticket not in repr(refused.value)


@pytest.mark.parametrize("expiry", [
    datetime(2030, 1, 1, tzinfo=UTC),
    datetime(2030, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    datetime(2030, 1, 1, tzinfo=UTC).timestamp(),
    int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()),
])
def test_a_ticket_carries_its_identity_expiry(expiry: Any) -> None:
    tickets = StreamTickets(SECRET)
    identity = tickets.redeem(tickets.mint("user:1", expires_at=expiry))
    assert identity.expires_at == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


def test_a_ticket_whose_identity_expired_is_refused() -> None:
    clock = Clock()
    tickets = StreamTickets(SECRET, clock=clock)
    ticket = tickets.mint("user:1", expires_at=clock.now + 5)
    clock.now += 5
    with pytest.raises(InvalidTicket, match=EXPIRED_IDENTITY):
        tickets.redeem(ticket)


def test_bytes_secrets_work() -> None:
    tickets = StreamTickets(b"\x00\xffkey")
    assert tickets.redeem(tickets.mint("c")).client_id == "c"


def test_the_spent_tickets_are_bounded_and_forgotten_once_expired() -> None:
    clock = Clock()
    tickets = StreamTickets(SECRET, ttl=10, max_spent=3, clock=clock)
    for _ in range(3):
        tickets.redeem(tickets.mint("c"))
    fourth = tickets.mint("c")
    # Full of tickets that could still be replayed: refuse, never forget one early.
    with pytest.raises(InvalidTicket, match=TOO_MANY) as refused:
        tickets.redeem(fourth)
    assert refused.value.status == 503
    # Once they have expired (plus the margin) they are forgotten, and room is back.
    clock.now += 16
    fifth = tickets.mint("c")
    assert tickets.redeem(fifth).client_id == "c"
    assert len(tickets._spent) == 1


def test_a_full_table_of_spent_tickets_is_a_503_told_once(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sse_kit")
    tickets = StreamTickets(SECRET, max_spent=1)
    serve_sse(hub, ticket_environ(tickets.mint("c")), tickets=tickets).close()
    for _ in range(2):
        refused = serve_sse(hub, ticket_environ(tickets.mint("c")), tickets=tickets)
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "1")
        assert refused.get_data(as_text=True) == TOO_MANY + "\n"
    lines = [r.getMessage() for r in caplog.records if "max_spent" in r.getMessage()]
    assert len(lines) == 1 and "max_spent=1" in lines[0] and "backplane" in lines[0]
    assert hub.stats()["tickets_refused"] == 2


def test_with_a_backplane_the_claim_is_the_backplanes() -> None:
    log = TestLog()
    tickets = StreamTickets(SECRET)
    ticket = tickets.mint("user:1")
    assert tickets.redeem(ticket, backplane=log).client_id == "user:1"
    (claim,) = log.claims
    assert claim.startswith("ticket:") and claim.removeprefix("ticket:") not in ticket.split(".")
    assert len(tickets._spent) == 0
    # Another process's StreamTickets, with the same secret and backplane: spent there too.
    with pytest.raises(InvalidTicket, match=SPENT_TICKET):
        StreamTickets(SECRET).redeem(ticket, backplane=log)


class Unclaiming:
    """A backplane without claim_once: its hub's tickets are spent per worker."""

    def __init__(self) -> None:
        self.log = TestLog()

    def publish(self, pattern: str, body: bytes) -> str:
        return self.log.publish(pattern, body)

    def start_reader(self, feed: Any) -> TestLog:
        return self.log.start_reader(feed)

    def replay(self, after: str) -> Any:
        return self.log.replay(after)

    def close(self) -> None:
        """Nothing to release."""


def test_a_backplane_that_cannot_claim_spends_tickets_here_and_says_so(
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sse_kit")
    tickets = StreamTickets(SECRET)
    with Hub(backplane=Unclaiming()) as hub:
        ticket = tickets.mint("user:1")
        serve_sse(hub, environ(f"/events?ticket={ticket}"), tickets=tickets).close()
        replay = serve_sse(hub, environ(f"/events?ticket={ticket}"), tickets=tickets)
        assert replay.status_code == 401
    (line,) = [r.getMessage() for r in caplog.records if "stream tickets" in r.getMessage()]
    assert "Unclaiming has no claim_once" in line and "RedisBackplane" in line


# -- through serve_sse -----------------------------------------------------------


def ticket_environ(ticket: str | None, **headers: str) -> dict[str, Any]:
    path = "/events" if ticket is None else f"/events?ticket={ticket}"
    return environ(path, **headers)


def test_serve_sse_opens_the_tickets_stream_once(hub: Hub) -> None:
    tickets = StreamTickets(SECRET)
    ticket = tickets.mint("user:7")
    response = serve_sse(hub, ticket_environ(ticket), tickets=tickets)
    assert response.status_code == 200
    response.close()
    again = serve_sse(hub, ticket_environ(ticket), tickets=tickets)
    assert (again.status_code, again.get_data(as_text=True)) == (401, SPENT_TICKET + "\n")
    assert hub.stats()["tickets_refused"] == 1


@pytest.mark.parametrize(("ticket", "reason"), [
    (None, NO_TICKET), ("", NO_TICKET), ("forged.ticket", BAD_TICKET),
])
def test_serve_sse_answers_a_bad_ticket_with_401_and_one_line(
    hub: Hub, ticket: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    response = serve_sse(hub, ticket_environ(ticket), tickets=StreamTickets(SECRET))
    assert response.status_code == 401
    assert response.get_data(as_text=True) == reason + "\n"
    assert hub.stats()["tickets_refused"] == 1
    if ticket:
        assert ticket not in caplog.text


def test_a_tickets_stream_ends_at_its_identity_expiry_and_says_come_back(hub: Hub) -> None:
    tickets = StreamTickets(SECRET)
    # 1.5 s: the few calls between here and the check must not outlast it, even on a
    # busy machine; the stream then ends by itself, at whatever speed.
    ticket = tickets.mint("user:7", expires_at=time.time() + 1.5)
    response = serve_sse(hub, ticket_environ(ticket), tickets=tickets)
    assert response.status_code == 200
    chunks = list(response.response)  # the parked path: it ends by itself
    response.close()
    assert b"retry: %d" % hub.shutdown_retry in chunks[-1]
    hub.flush()
    stats = hub.stats()
    assert (stats["identity_expired"], stats["expired"], stats["clients"]) == (1, 0, 0)


def test_an_expiry_passed_to_serve_sse_ends_the_stream(hub: Hub) -> None:
    reader = Reader(hub, "user:8", expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    assert reader.next().event == "connected"
    assert [ev.event for ev in reader.rest()] == []  # then it ends, by itself
    assert reader.ended()
    reader.close()
    assert hub.stats()["identity_expired"] == 1


def test_an_identity_already_expired_gets_401(hub: Hub) -> None:
    response = serve_sse(hub, environ(), "user:9", expires_at=time.time() - 1)
    assert response.status_code == 401
    assert response.get_data(as_text=True) == "the identity of this request has expired\n"
    assert hub.stats()["forbidden"] == 1


def test_max_age_still_ends_a_stream_whose_identity_lasts_longer() -> None:
    with Hub(max_age=0.3) as hub:
        reader = Reader(hub, "user:1", expires_at=time.time() + 3600)
        assert reader.next().event == "connected"
        assert list(reader.rest()) == []
        reader.close()
        stats = hub.stats()
        assert (stats["expired"], stats["identity_expired"]) == (1, 0)


def test_without_a_backplane_under_several_workers_it_warns_once(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sse_kit")
    tickets = StreamTickets(SECRET)
    for _ in range(2):
        env = ticket_environ(tickets.mint("user:1"))
        env["wsgi.multiprocess"] = True
        serve_sse(hub, env, tickets=tickets).close()
    (line,) = [r.getMessage() for r in caplog.records if "tickets" in r.getMessage()]
    assert "spent in this worker only" in line and "RedisBackplane" in line
    # Each warning counted once (this server's parked-stream advice among them).
    assert hub.stats()["misconfigured"] == len(caplog.records)


# -- the Flask blueprint ------------------------------------------------------------


def ticket_app(hub: Hub, tickets: StreamTickets, **options: Any) -> Flask:
    app = Flask(__name__)

    def authorize(request: Any) -> bool | datetime:
        if request.headers.get("X-User") is None:
            abort(401, "log in first")
        if until := request.headers.get("X-Until"):
            return datetime.fromtimestamp(float(until), UTC)
        return True

    app.register_blueprint(
        create_blueprint(hub, tickets=tickets, authorize=authorize,
                         client_id=lambda r: f"user:{r.headers['X-User']}", **options),
        url_prefix="/events")
    return app


def test_the_blueprint_mints_from_the_session_and_streams_by_ticket(hub: Hub) -> None:
    tickets = StreamTickets(SECRET)
    client = ticket_app(hub, tickets).test_client()
    minted = client.get("/events/ticket", headers={"X-User": "42"})
    assert minted.status_code == 200
    assert minted.headers["Cache-Control"] == "no-store"
    body = minted.get_json()
    assert body["expires_in"] == 30.0
    # The stream request needs no session: the ticket is its authorization.
    with client.get(f"/events/?ticket={body['ticket']}") as stream:
        assert stream.status_code == 200
        first = next(stream.response)
    assert b'"client_id":"user:42"' in first
    replayed = client.get(f"/events/?ticket={body['ticket']}")
    assert (replayed.status_code, replayed.text) == (401, SPENT_TICKET + "\n")
    missing = client.get("/events/")
    assert (missing.status_code, missing.text) == (401, NO_TICKET + "\n")
    assert hub.stats()["tickets_refused"] == 2


def test_the_ticket_route_refuses_whom_authorize_refuses(hub: Hub) -> None:
    client = ticket_app(hub, StreamTickets(SECRET)).test_client()
    refused = client.get("/events/ticket")
    assert (refused.status_code, refused.text) == (401, "log in first\n")
    expired = client.get("/events/ticket", headers={"X-User": "1", "X-Until": "1000"})
    assert expired.status_code == 401
    assert hub.stats()["forbidden"] == 2


def test_authorizes_expiry_goes_into_the_ticket(hub: Hub) -> None:
    tickets = StreamTickets(SECRET)
    client = ticket_app(hub, tickets).test_client()
    until = time.time() + 3600
    body = client.get("/events/ticket", headers={"X-User": "1", "X-Until": str(until)}).get_json()
    assert tickets.redeem(body["ticket"]) == Identity("user:1", pytest.approx(until))


def test_authorize_returning_a_datetime_ends_the_stream_then(hub: Hub) -> None:
    app = Flask(__name__)
    until = datetime.now(UTC) + timedelta(seconds=1.5)
    app.register_blueprint(create_blueprint(hub, authorize=lambda r: until),
                           url_prefix="/events")
    with app.test_client().get("/events/") as stream:
        assert stream.status_code == 200
        chunks = list(stream.response)  # ends by itself
    assert b"retry: %d" % hub.shutdown_retry in chunks[-1]
    assert hub.stats()["identity_expired"] == 1


def test_the_ticket_route_carries_cors_headers(hub: Hub) -> None:
    client = ticket_app(hub, StreamTickets(SECRET), cors_origins=["https://app.example"],
                        cors_credentials=True).test_client()
    answer = client.get("/events/ticket", headers={"X-User": "1",
                                                   "Origin": "https://app.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"


def test_no_ticket_route_without_tickets(hub: Hub) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub), url_prefix="/events")
    assert app.test_client().get("/events/ticket").status_code == 404
