"""Argument checks (sse_kit._options): one rule for every documented argument error.

A wrong type raises ``TypeError`` and a wrong value ``ValueError`` (plain builtins,
not ``SSEKitError``s); each names the argument, says what was expected and what was
received. The table below is every argument check the public API documents, each
raised by the real call; the second table is the documented ``SSEKitError``s a call
raises for a condition rather than an argument's type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from sse_kit import (
    BackplaneUnavailable,
    Client,
    Component,
    ConnectedEvent,
    CORSPolicy,
    EventTooLarge,
    Hub,
    HubAlreadyRunning,
    HubFull,
    HubNotRunning,
    InvalidPattern,
    InvalidTicket,
    RateLimit,
    SSEKitError,
    StreamTickets,
    serve_sse,
    with_metadata,
    with_session_id,
    with_user_id,
)
from sse_kit._options import check_int, check_number, check_seconds
from sse_kit._patterns import compile_pattern
from sse_kit.flask import create_blueprint
from sse_kit.gunicorn import MIN_THREAD_STACK, set_thread_stack_size, sizing
from sse_kit.prometheus import HubMetrics
from sse_kit.redis import RedisBackplane
from tests._streams import environ

APP = "https://app.example.com"
REDIS = "redis://localhost:6379/0"  # never connected to: every case fails at construction


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def param(call: Callable[[Hub], object], error: type[Exception], message: str,
          name: str) -> Any:
    return pytest.param(call, error, message, id=name)


# (the call, with the module's running hub; the error; the message, a regex).
ARGUMENT_ERRORS = [
    # -- Hub(...) -----------------------------------------------------------------------
    param(lambda h: Hub(client_buffer=0), ValueError,
          r"^client_buffer must be an int >= 1, got 0$", "Hub-client_buffer-0"),
    param(lambda h: Hub(client_buffer="1"), TypeError,
          r"^client_buffer must be an int, not str$", "Hub-client_buffer-str"),
    param(lambda h: Hub(keepalive_interval=0), ValueError,
          r"^keepalive_interval must be a number of seconds > 0, got 0$", "Hub-keepalive-0"),
    param(lambda h: Hub(keepalive_interval="1"), TypeError,
          r"^keepalive_interval must be a number of seconds, not str$", "Hub-keepalive-str"),
    param(lambda h: Hub(keepalive_interval=math.inf), ValueError,
          r"^keepalive_interval must be finite, got inf$", "Hub-keepalive-inf"),
    param(lambda h: Hub(max_clients=0), ValueError,
          r"^max_clients must be an int >= 1, got 0$", "Hub-max_clients-0"),
    param(lambda h: Hub(max_clients=1.5), TypeError,
          r"^max_clients must be an int or None, not float$", "Hub-max_clients-float"),
    param(lambda h: Hub(history_size=-1), ValueError,
          r"^history_size must be an int >= 0, got -1$", "Hub-history_size"),
    param(lambda h: Hub(history_ttl=0), ValueError,
          r"^history_ttl must be a number of seconds > 0, got 0$", "Hub-history_ttl"),
    param(lambda h: Hub(slow_client="block"), ValueError,
          r"^slow_client must be 'disconnect' or 'drop', got 'block'$", "Hub-slow_client"),
    param(lambda h: Hub(slow_client=1), TypeError,
          r"^slow_client must be a str, not int$", "Hub-slow_client-int"),
    param(lambda h: Hub(retry=-1), ValueError,
          r"^retry must be an int >= 0 milliseconds, got -1$", "Hub-retry"),
    param(lambda h: Hub(shutdown_retry=1.5), TypeError,
          r"^shutdown_retry must be an int, not float$", "Hub-shutdown_retry"),
    param(lambda h: Hub(max_clients_per_id=0), ValueError,
          r"^max_clients_per_id must be an int >= 1, got 0$", "Hub-per_id-0"),
    param(lambda h: Hub(max_clients_per_id=1.5), TypeError,
          r"^max_clients_per_id must be an int or None, not float$", "Hub-per_id-float"),
    param(lambda h: Hub(max_event_size=0), ValueError,
          r"^max_event_size must be an int >= 1 bytes, got 0$", "Hub-max_event_size-0"),
    param(lambda h: Hub(max_event_size="1"), TypeError,
          r"^max_event_size must be an int, not str$", "Hub-max_event_size-str"),
    param(lambda h: Hub(client_buffer_bytes=0), ValueError,
          r"^client_buffer_bytes must be an int >= 1 bytes, got 0$", "Hub-buffer_bytes-0"),
    param(lambda h: Hub(client_buffer_bytes=True), TypeError,
          r"^client_buffer_bytes must be an int, not bool$", "Hub-buffer_bytes-bool"),
    param(lambda h: Hub(max_age=0), ValueError,
          r"^max_age must be a number of seconds > 0, got 0$", "Hub-max_age-0"),
    param(lambda h: Hub(max_age=-1), ValueError,
          r"^max_age must be a number of seconds > 0, got -1$", "Hub-max_age-negative"),
    param(lambda h: Hub(max_age=math.nan), ValueError,
          r"^max_age must be a number of seconds > 0, got nan$", "Hub-max_age-nan"),
    param(lambda h: Hub(max_age=math.inf), ValueError,
          r"^max_age must be finite; use None for no limit, got inf$", "Hub-max_age-inf"),
    param(lambda h: Hub(max_age="5"), TypeError,
          r"^max_age must be a number of seconds or None, not str$", "Hub-max_age-str"),
    param(lambda h: Hub(write_timeout=0), ValueError,
          r"^write_timeout must be a number of seconds > 0, got 0$", "Hub-write_timeout-0"),
    param(lambda h: Hub(write_timeout="30"), TypeError,
          r"^write_timeout must be a number of seconds or None, not str$",
          "Hub-write_timeout-str"),
    param(lambda h: Hub(backplane=object()), TypeError,
          r"^backplane must be a sse_kit\.Backplane \(such as sse_kit\.redis\.RedisBackplane\) "
          r"or None, not object$", "Hub-backplane"),
    param(lambda h: Hub(fast_path="yes"), TypeError,
          r"^fast_path must be a bool, not str$", "Hub-fast_path"),
    param(lambda h: Hub(json_default="iso"), TypeError,
          r"^json_default must be callable or None, not str$", "Hub-json_default"),
    param(lambda h: Hub(presence_ttl=0), ValueError,
          r"^presence_ttl must be a number of seconds > 0, got 0$", "Hub-presence_ttl"),
    param(lambda h: Hub(presence_events="user:*"), TypeError,
          r"^presence_events must be callable or None, not str$", "Hub-presence_events"),
    # -- Hub methods ----------------------------------------------------------------------
    param(lambda h: h.register("user:1"), TypeError,
          r"^client must be a sse_kit\.Client, not str$", "Hub.register"),
    param(lambda h: h.unregister(None), TypeError,
          r"^client must be a sse_kit\.Client, not NoneType$", "Hub.unregister"),
    param(lambda h: h.get_client(7), TypeError,
          r"^client_id must be a str, not int$", "Hub.get_client"),
    param(lambda h: h.on_start("tick"), TypeError,
          r"^callback must be callable, not str$", "Hub.on_start"),
    param(lambda h: h.broadcast_to_pattern(None, "x"), TypeError,
          r"^pattern must be a str, not NoneType$", "Hub.broadcast_to_pattern"),
    param(lambda h: h.disconnect(b"user:*"), TypeError,
          r"^pattern must be a str, not bytes$", "Hub.disconnect"),
    param(lambda h: h.clients(7), TypeError,
          r"^pattern must be a str, not int$", "Hub.clients"),
    param(lambda h: h.presence(None), TypeError,
          r"^pattern must be a str, not NoneType$", "Hub.presence"),
    param(lambda h: compile_pattern(42), TypeError,
          r"^pattern must be a str, not int$", "compile_pattern"),
    # -- Client(...) and its options --------------------------------------------------------
    param(lambda h: Client(""), ValueError,
          r"^client id must be a non-empty str, got ''$", "Client-id-empty"),
    param(lambda h: Client(42), TypeError,
          r"^client id must be a str, not int$", "Client-id-int"),
    param(lambda h: Client("\ud800"), ValueError,
          r"^client id must be encodable as UTF-8, got '\\ud800'$", "Client-id-surrogate"),
    param(lambda h: Client("x", buffer=0), ValueError,
          r"^buffer must be an int >= 1, got 0$", "Client-buffer-0"),
    param(lambda h: Client("x", buffer=True), TypeError,
          r"^buffer must be an int, not bool$", "Client-buffer-bool"),
    param(lambda h: Client("x", metadata=[("a", 1)]), TypeError,
          r"^metadata must be a mapping or None, not list$", "Client-metadata"),
    param(lambda h: Client("x", session_id=1), TypeError,
          r"^session_id must be a str or None, not int$", "Client-session_id"),
    param(lambda h: Client("x", user_id=b"u"), TypeError,
          r"^user_id must be a str or None, not bytes$", "Client-user_id"),
    param(lambda h: Client("x", last_event_id=5), TypeError,
          r"^last_event_id must be a str or None, not int$", "Client-last_event_id"),
    param(lambda h: Client("x", "user:1"), TypeError,
          r"^options must be a sse_kit\.ClientOption, not str$", "Client-options"),
    param(lambda h: with_metadata(1, "v"), TypeError,
          r"^metadata key must be a str, not int$", "with_metadata"),
    param(lambda h: with_session_id(1), TypeError,
          r"^session_id must be a str or None, not int$", "with_session_id"),
    param(lambda h: with_user_id(1), TypeError,
          r"^user_id must be a str or None, not int$", "with_user_id"),
    param(lambda h: ConnectedEvent(client_id=""), ValueError,
          r"^client_id must be a non-empty str, got ''$", "ConnectedEvent-empty"),
    param(lambda h: ConnectedEvent(client_id=5), TypeError,
          r"^client_id must be a str, not int$", "ConnectedEvent-int"),
    # -- serve_sse(...) ---------------------------------------------------------------------
    param(lambda h: serve_sse("not a hub", environ(), "c"), TypeError,
          r"^hub must be a sse_kit\.Hub, not str$", "serve_sse-hub"),
    param(lambda h: serve_sse(h, "GET /", "c"), TypeError,
          r"^request_or_environ must be a werkzeug Request or a WSGI environ, not str$",
          "serve_sse-environ"),
    param(lambda h: serve_sse(h, environ(), 7), TypeError,
          r"^client id must be a str, not int$", "serve_sse-client_id"),
    param(lambda h: serve_sse(h, environ(), "c", cors=[APP]), TypeError,
          r"^cors must be a sse_kit\.CORSPolicy or None, not list$", "serve_sse-cors"),
    param(lambda h: serve_sse(h, environ()), TypeError,
          r"^client id must be a str, not NoneType$", "serve_sse-no-client_id"),
    param(lambda h: serve_sse(h, environ(), tickets="secret"), TypeError,
          r"^tickets must be a sse_kit\.StreamTickets or None, not str$", "serve_sse-tickets"),
    param(lambda h: serve_sse(h, environ(), "c", tickets=StreamTickets("s")), TypeError,
          r"^pass client_id or tickets, not both: the ticket names the client$",
          "serve_sse-client_id-and-tickets"),
    param(lambda h: serve_sse(h, environ(), "c", rate_limit=5), TypeError,
          r"^rate_limit must be a sse_kit\.RateLimit or None, not int$", "serve_sse-rate_limit"),
    param(lambda h: serve_sse(h, environ(), "c", expires_at="soon"), TypeError,
          r"^expires_at must be a datetime or seconds since the epoch, not str$",
          "serve_sse-expires_at"),
    # -- StreamTickets(...), mint(...) -------------------------------------------------------
    param(lambda h: StreamTickets(1), TypeError,
          r"^secret must be a str or bytes, not int$", "StreamTickets-secret"),
    param(lambda h: StreamTickets(""), ValueError,
          r"^secret must be the application's secret key, not empty, got ''$",
          "StreamTickets-secret-empty"),
    param(lambda h: StreamTickets("s", ttl=0), ValueError,
          r"^ttl must be a number of seconds > 0, got 0$", "StreamTickets-ttl"),
    param(lambda h: StreamTickets("s", max_spent=0), ValueError,
          r"^max_spent must be an int >= 1, got 0$", "StreamTickets-max_spent"),
    param(lambda h: StreamTickets("s", clock=3), TypeError,
          r"^clock must be callable, not int$", "StreamTickets-clock"),
    param(lambda h: StreamTickets("s").mint(7), TypeError,
          r"^client_id must be a str, not int$", "mint-client_id"),
    param(lambda h: StreamTickets("s").mint(""), ValueError,
          r"^client_id must be a non-empty str, got ''$", "mint-client_id-empty"),
    param(lambda h: StreamTickets("s").mint("c", expires_at="tomorrow"), TypeError,
          r"^expires_at must be a datetime or seconds since the epoch, not str$",
          "mint-expires_at"),
    param(lambda h: StreamTickets("s").mint("c", expires_at=True), TypeError,
          r"^expires_at must be a datetime or seconds since the epoch, not bool$",
          "mint-expires_at-bool"),
    param(lambda h: StreamTickets("s").mint("c", expires_at=datetime(2030, 1, 1)), ValueError,
          r"^expires_at must be a timezone-aware datetime, got datetime\.datetime\(2030, 1, 1",
          "mint-expires_at-naive"),
    param(lambda h: StreamTickets("s").mint("c", expires_at=math.inf), ValueError,
          r"^expires_at must be finite, got inf$", "mint-expires_at-inf"),
    # -- RateLimit(...) ---------------------------------------------------------------------
    param(lambda h: RateLimit(0), ValueError,
          r"^rate must be a finite number > 0, got 0$", "RateLimit-rate"),
    param(lambda h: RateLimit(math.inf), ValueError,
          r"^rate must be a finite number >= 0, got inf$", "RateLimit-rate-inf"),
    param(lambda h: RateLimit(True), TypeError,
          r"^rate must be a number, not bool$", "RateLimit-rate-bool"),
    param(lambda h: RateLimit(burst=0), ValueError,
          r"^burst must be an int >= 1, got 0$", "RateLimit-burst"),
    param(lambda h: RateLimit(burst=1.5), TypeError,
          r"^burst must be an int, not float$", "RateLimit-burst-float"),
    param(lambda h: RateLimit(max_keys=0), ValueError,
          r"^max_keys must be an int >= 1, got 0$", "RateLimit-max_keys"),
    param(lambda h: RateLimit(key="REMOTE_ADDR"), TypeError,
          r"^key must be a callable \(environ\) -> str \| None or None, not str$",
          "RateLimit-key"),
    param(lambda h: RateLimit(clock=1), TypeError,
          r"^clock must be callable, not int$", "RateLimit-clock"),
    # -- create_blueprint(...) --------------------------------------------------------------
    param(lambda h: create_blueprint("hub"), TypeError,
          r"^hub must be a sse_kit\.Hub, not str$", "create_blueprint-hub"),
    param(lambda h: create_blueprint(h, client_id="user:1"), TypeError,
          r"^client_id must be a callable \(request\) -> str, not str$",
          "create_blueprint-client_id"),
    param(lambda h: create_blueprint(h, metadata=5), TypeError,
          r"^metadata must be a mapping or a callable \(request\) -> mapping or None, not int$",
          "create_blueprint-metadata"),
    param(lambda h: create_blueprint(h, authorize="yes"), TypeError,
          r"^authorize must be a callable \(request\) -> bool \| str \| datetime or None, "
          r"not str$", "create_blueprint-authorize"),
    param(lambda h: create_blueprint(h, tickets="secret"), TypeError,
          r"^tickets must be a sse_kit\.StreamTickets or None, not str$",
          "create_blueprint-tickets"),
    param(lambda h: create_blueprint(h, rate_limit=1.0), TypeError,
          r"^rate_limit must be a sse_kit\.RateLimit or None, not float$",
          "create_blueprint-rate_limit"),
    param(lambda h: create_blueprint(h, cors_credentials=True), ValueError,
          r"^cors_credentials must be False without cors_origins, got True$",
          "create_blueprint-credentials-without-origins"),
    param(lambda h: create_blueprint(h, cors_credentials="yes"), TypeError,
          r"^cors_credentials must be a bool, not str$", "create_blueprint-credentials-str"),
    param(lambda h: create_blueprint(h, cors_origins=[APP], cors_max_age=-5), ValueError,
          r"^cors_max_age must be an int >= 0 seconds, got -5$", "create_blueprint-max_age"),
    # -- CORSPolicy(...) --------------------------------------------------------------------
    param(lambda h: CORSPolicy(APP), TypeError,
          r"^cors_origins must be a list of origins, not str$", "CORSPolicy-one-str"),
    param(lambda h: CORSPolicy(5), TypeError,
          r"^cors_origins must be a list of origins, not int$", "CORSPolicy-int"),
    param(lambda h: CORSPolicy([APP.encode()]), TypeError,
          r"^an origin in cors_origins must be a str, not bytes$", "CORSPolicy-bytes-origin"),
    param(lambda h: CORSPolicy([]), ValueError,
          r"^cors_origins must name at least one origin; use None for no CORS$",
          "CORSPolicy-empty"),
    param(lambda h: CORSPolicy([APP], credentials="yes"), TypeError,
          r"^cors_credentials must be a bool, not str$", "CORSPolicy-credentials"),
    param(lambda h: CORSPolicy([APP], max_age=-1), ValueError,
          r"^cors_max_age must be an int >= 0 seconds, got -1$", "CORSPolicy-max_age"),
    param(lambda h: CORSPolicy([APP], max_age=True), TypeError,
          r"^cors_max_age must be an int, not bool$", "CORSPolicy-max_age-bool"),
    # -- RedisBackplane(...) ----------------------------------------------------------------
    param(lambda h: RedisBackplane("http://localhost"), ValueError,
          r"^url must be a redis://, rediss:// or unix:// URL, got 'http://localhost'$",
          "RedisBackplane-url-scheme"),
    param(lambda h: RedisBackplane(5), TypeError,
          r"^url must be a Redis URL or a connect callable, not int$", "RedisBackplane-url"),
    param(lambda h: RedisBackplane(REDIS, stream=""), ValueError,
          r"^stream must be a non-empty str, got ''$", "RedisBackplane-stream-empty"),
    param(lambda h: RedisBackplane(REDIS, stream=5), TypeError,
          r"^stream must be a str, not int$", "RedisBackplane-stream-int"),
    param(lambda h: RedisBackplane(REDIS, maxlen=0), ValueError,
          r"^maxlen must be an int >= 1, got 0$", "RedisBackplane-maxlen-0"),
    param(lambda h: RedisBackplane(REDIS, maxlen=1.5), TypeError,
          r"^maxlen must be an int, not float$", "RedisBackplane-maxlen-float"),
    param(lambda h: RedisBackplane(REDIS, timeout=0), ValueError,
          r"^timeout must be a finite number >= 0\.001 seconds, got 0$",
          "RedisBackplane-timeout"),
    param(lambda h: RedisBackplane(REDIS, timeout="1"), TypeError,
          r"^timeout must be a number, not str$", "RedisBackplane-timeout-str"),
    param(lambda h: RedisBackplane(REDIS, block=-1), ValueError,
          r"^block must be a finite number >= 0\.001 seconds, got -1$", "RedisBackplane-block"),
    param(lambda h: RedisBackplane(REDIS, count=0), ValueError,
          r"^count must be an int >= 1, got 0$", "RedisBackplane-count"),
    param(lambda h: RedisBackplane(REDIS, reconnect_max=math.inf), ValueError,
          r"^reconnect_max must be a finite number >= 0\.001 seconds, got inf$",
          "RedisBackplane-reconnect_max"),
    # -- the other adapters -----------------------------------------------------------------
    param(lambda h: HubMetrics(object()), TypeError,
          r"^hub must be a sse_kit\.Hub, not object$", "HubMetrics-hub"),
    param(lambda h: HubMetrics(h, hub_label=""), ValueError,
          r"^hub_label must be a non-empty str, got ''$", "HubMetrics-hub_label"),
    param(lambda h: Component("hub"), TypeError,
          r"^hub must be a sse_kit\.Hub or None, not str$", "Component-hub"),
    param(lambda h: Component(path="events"), ValueError,
          r"^path must be a str starting with '/', got 'events'$", "Component-path"),
    param(lambda h: Component(path=5), TypeError,
          r"^path must be a str, not int$", "Component-path-int"),
    param(lambda h: set_thread_stack_size(1024), ValueError,
          rf"^size must be an int >= {MIN_THREAD_STACK} bytes, got 1024$",
          "set_thread_stack_size"),
    param(lambda h: set_thread_stack_size("256k"), TypeError,
          r"^size must be an int, not str$", "set_thread_stack_size-str"),
    param(lambda h: sizing(0), ValueError,
          r"^max_streams must be an int >= 1, got 0$", "sizing-max_streams"),
    param(lambda h: sizing(10, other_requests=0), ValueError,
          r"^other_requests must be an int >= 1, got 0$", "sizing-other_requests"),
    param(lambda h: sizing("10"), TypeError,
          r"^max_streams must be an int, not str$", "sizing-str"),
]


@pytest.mark.parametrize(("call", "error", "message"), ARGUMENT_ERRORS)
def test_a_bad_argument_is_refused_by_name(
    hub: Hub, call: Callable[[Hub], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        call(hub)
    assert type(info.value) is error  # a plain builtin: a mistake in the code, not a condition


def _too_large(hub: Hub) -> object:
    return hub.broadcast_to_pattern("c", "x" * 100)


def _full(hub: Hub) -> object:
    hub.register(Client("c"))
    return hub.register(Client("c"))


def _stopped(hub: Hub) -> object:
    hub.stop()
    return hub.register(Client("c"))


def _unreachable(hub: Hub) -> object:
    # A real connection refused: nothing listens on port 1 of this host.
    with RedisBackplane("redis://127.0.0.1:1/0", timeout=5) as backplane:
        return backplane.broadcast_to_pattern("c", "x")


# (a fresh hub's options; the call; the SSEKitError; its builtin; the message, a regex).
CONDITION_ERRORS = [
    pytest.param({}, lambda h: h.broadcast_to_pattern("", "x"), InvalidPattern, ValueError,
                 r"^pattern must not be empty; use '\*' to address every client$",
                 id="InvalidPattern-broadcast"),
    pytest.param({}, lambda h: h.disconnect(""), InvalidPattern, ValueError,
                 r"^pattern must not be empty", id="InvalidPattern-disconnect"),
    pytest.param({"max_event_size": 50}, _too_large, EventTooLarge, ValueError,
                 r"^the encoded event is 108 bytes; max_event_size is 50$", id="EventTooLarge"),
    pytest.param({"max_clients_per_id": 1}, _full, HubFull, RuntimeError,
                 r"^client ID 'c' already has max_clients_per_id=1 streams$", id="HubFull"),
    pytest.param({}, _stopped, HubNotRunning, RuntimeError,
                 r"^a new stream on a hub that was stopped in this process", id="HubNotRunning"),
    pytest.param({}, lambda h: h.run(), HubAlreadyRunning, RuntimeError,
                 r"^this hub is already running in this process", id="HubAlreadyRunning"),
    pytest.param({}, lambda h: StreamTickets("s").redeem("forged"), InvalidTicket, ValueError,
                 r"^the stream ticket is malformed or not signed by this application$",
                 id="InvalidTicket"),
    pytest.param({}, _unreachable, BackplaneUnavailable, ConnectionError,
                 r"^Redis stream 'sse_kit' unreachable: ", id="BackplaneUnavailable"),
]


@pytest.mark.parametrize(("options", "call", "error", "builtin", "message"), CONDITION_ERRORS)
def test_a_documented_condition_raises_its_sse_kit_error(
    options: dict[str, Any], call: Callable[[Hub], object], error: type[SSEKitError],
    builtin: type[Exception], message: str,
) -> None:
    with Hub(**options) as fresh, pytest.raises(error, match=message) as info:
        call(fresh)
    assert isinstance(info.value, SSEKitError) and isinstance(info.value, builtin)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (lambda v: check_int("n", v, 0), True),
        (lambda v: check_int("n", v, 0), 1.0),
        (lambda v: check_number("n", v, 0), False),
        (lambda v: check_number("n", v, 0), "1"),
        (lambda v: check_seconds("n", v), True),
        (lambda v: check_seconds("n", v), None),
    ],
)
def test_a_bool_or_a_none_is_never_a_number(check: Callable[[object], None],
                                              value: object) -> None:
    with pytest.raises(TypeError, match=rf"^n must be .*, not {type(value).__name__}$"):
        check(value)


@pytest.mark.parametrize("value", [None, 0, 1, 0.5, 10**12])
def test_what_passes_passes(value: object) -> None:
    check_int("n", value if isinstance(value, int) else None, 0, optional=True)
    check_number("n", value, 0, optional=True)
    check_seconds("n", value or None, optional=True)
