"""serve_sse() as a plain WSGI application and as a Flask view's return value."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from werkzeug.test import Client as WerkzeugClient

from sse_kit import Hub, serve_sse, with_user_id
from tests._decoder import SSEDecoder
from tests._live import wait_for
from tests._streams import environ


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def test_callable_as_a_plain_wsgi_app(hub: Hub) -> None:
    def app(env: dict[str, object], start_response: object) -> object:
        return serve_sse(hub, env, "plain:1", with_user_id("u"))(env, start_response)  # type: ignore[arg-type]

    client = WerkzeugClient(app)
    response = client.get("/", buffered=False)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert "Connection" not in response.headers and "Content-Length" not in response.headers
    chunks = iter(response.response)
    (connected,) = SSEDecoder().feed(next(chunks))
    assert connected.event == "connected" and '"user_id":"u"' in connected.data
    hub.broadcast_to_pattern("plain:*", "hi")
    assert SSEDecoder().feed(next(chunks))[0].data == "hi"
    response.close()
    wait_for(lambda: hub.get_client_count() == 0, message="the client to be unregistered")


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("POST", {}, 405),
        ("PUT", {}, 405),
        ("GET", {"Accept": "application/json"}, 406),
        ("GET", {"Accept": "text/html, text/event-stream;q=0"}, 406),
        ("GET", {"Accept": "*/*"}, 200),
        ("GET", {"Accept": "text/event-stream"}, 200),  # what EventSource sends
        ("GET", {"Accept": "text/event-stream;q=0"}, 406),
        ("GET", {"Accept": "text/*"}, 200),
        ("GET", {}, 200),
    ],
)
def test_method_and_accept(hub: Hub, method: str, headers: dict[str, str], status: int) -> None:
    env = environ(**headers)
    env["REQUEST_METHOD"] = method
    response = serve_sse(hub, env, "c")
    assert response.status_code == status
    if status != 200:
        assert response.get_data().count(b"\n") == 1
        assert hub.get_client_count() == 0
    else:
        response.close()


def test_a_hub_that_never_ran_starts_with_the_first_stream() -> None:
    hub = Hub()
    response = serve_sse(hub, environ(), "c")
    assert response.status_code == 200 and hub.running
    response.close()
    hub.stop()


def test_503_when_the_hub_was_stopped() -> None:
    hub = Hub().start()
    hub.stop()
    response = serve_sse(hub, environ(), "c")
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    assert response.get_data() == b"the event hub is shutting down\n"


def test_a_response_that_is_never_iterated_still_unregisters(hub: Hub) -> None:
    response = serve_sse(hub, environ(), "c")
    assert hub.get_client_count() == 1
    response.close()  # what a server does when it drops the response
    wait_for(lambda: hub.get_client_count() == 0, message="the client to be unregistered")


def test_a_dropped_response_is_unregistered_when_collected(hub: Hub) -> None:
    import gc

    serve_sse(hub, environ(), "c")
    gc.collect()
    wait_for(lambda: hub.get_client_count() == 0, message="the client to be unregistered")


def test_events_queued_while_the_stream_writes_go_out_in_one_chunk(hub: Hub) -> None:
    response = serve_sse(hub, environ(), "c")
    chunks = iter(response.response)
    next(chunks)  # the connected event
    for i in range(5):
        hub.broadcast_to_pattern("c", str(i))
    hub.flush()
    chunk = next(chunks)
    assert [e.data for e in SSEDecoder().feed(chunk)] == ["0", "1", "2", "3", "4"]
    response.close()
