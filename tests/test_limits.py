"""The hub's protective limits, each at its edge (in-process, no server)."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_kit import Client, EventTooLarge, Hub, HubFull, serve_sse
from sse_kit._client import CUT, DISCONNECT, DROPPED, OFFERED, SLOW
from sse_kit._history import MAX_EVENT_ID_LENGTH
from sse_kit._wsgi import last_event_id_of
from tests._decoder import decode
from tests._streams import Reader, environ


def test_defaults() -> None:
    hub = Hub()
    assert (hub.max_clients, hub.max_clients_per_id, hub.max_age) == (None, 10, None)
    assert (hub.max_event_size, hub.client_buffer_bytes) == (1 << 20, 4 << 20)
    assert hub.write_timeout == 30.0


@pytest.mark.parametrize("name", ["max_clients", "write_timeout", "fast_path", "backplane"])
def test_options_are_read_only_once_the_hub_is_built(name: str) -> None:
    hub = Hub()
    with pytest.raises(AttributeError, match=rf"Hub.{name} is read-only: pass it to Hub\({name}="):
        setattr(hub, name, None)
    hub.counters = hub.counters  # other attributes are not options


def test_max_clients_per_id_refuses_the_newest() -> None:
    with Hub(max_clients_per_id=2) as hub:
        first, second = Client("user:1"), Client("user:1")
        hub.register(first)
        hub.register(second)
        with pytest.raises(HubFull, match="max_clients_per_id=2") as info:
            hub.register(Client("user:1"))
        assert info.value.limit == "max_clients_per_id"
        hub.register(Client("user:2"))  # another ID is not affected
        assert hub.clients("user:1") == [first, second]  # the oldest were kept
        hub.unregister(first)
        hub.flush()
        hub.register(Client("user:1"))  # a slot came free
        assert hub.stats()["refused_per_id"] == 1


def test_serve_sse_answers_429_for_too_many_streams_per_id() -> None:
    with Hub(max_clients_per_id=1) as hub:
        reader = Reader(hub, "user:1")
        reader.take(1)
        refused = serve_sse(hub, environ(), "user:1")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "3"
        assert refused.get_data(as_text=True).count("\n") == 1
        reader.close()


def test_max_event_size_is_the_encoded_size(caplog: pytest.LogCaptureFixture) -> None:
    with Hub(max_event_size=100) as hub:
        client = Client("c")
        hub.register(client)
        hub.broadcast_to_pattern("*", "x" * 92)  # "data: " + 92 + "\n\n" = 100 bytes
        with pytest.raises(EventTooLarge) as info:
            hub.broadcast_to_pattern("*", "x" * 93)
        assert str(info.value) == "the encoded event is 101 bytes; max_event_size is 100"
        assert isinstance(info.value, ValueError)
        with pytest.raises(EventTooLarge, match="max_event_size is 100"):
            hub.broadcast_to_pattern("*", "a\n" * 40)  # 40 data lines: 6 bytes more each
        assert client.send("y" * 92)
        with pytest.raises(EventTooLarge):
            client.send("y" * 93)  # registered: the hub's limit applies to send() too
        hub.flush()
        assert hub.stats()["too_large"] == 2
        assert "refused a 101-byte event" in caplog.text


def test_client_buffer_bytes_bounds_the_backlog() -> None:
    c = Client("x", buffer=100)
    c._policy, c._max_bytes = DISCONNECT, 10
    assert c._offer(b"0123456789abcdef") == OFFERED  # an empty outbox takes any frame
    assert c._take(0) == ([b"0123456789abcdef"], None)
    assert c._offer(b"12345") == OFFERED
    assert c._offer(b"67890") == OFFERED  # exactly 10 bytes queued
    assert c._offer(b"x") == CUT  # one byte more overflows: the stream ends, resumes later
    assert c._take(0) == ([b"12345", b"67890"], SLOW)


def test_client_buffer_bytes_overflow_follows_the_drop_policy() -> None:
    with Hub(client_buffer_bytes=1000, slow_client="drop", history_size=0) as hub:
        c = Client("c")
        hub.register(c)
        for _ in range(3):
            hub.broadcast_to_pattern("c", "x" * 400)  # ~408 bytes each
        hub.flush()
        assert len(c._take(0)[0]) == 2
        assert hub.stats()["dropped"] == 1
        assert c._offer(b"a") == OFFERED and not c.closed
        c._max_bytes = 1
        assert c._offer(b"b") == DROPPED


def test_max_age_ends_the_stream_with_a_quick_retry() -> None:
    with Hub(max_age=0.2, keepalive_interval=30) as hub:
        reader = Reader(hub, "c")
        first = reader.next()
        assert first.event == "connected"
        assert reader.ended(timeout=5)  # well before the 30 s keep-alive
        assert reader.raw[-1] == b"retry: 250\n\n"
        assert hub.stats()["expired"] == 1


def test_disconnect_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sse_kit")
    with Hub() as hub:
        readers = [Reader(hub, "user:1:a"), Reader(hub, "user:1:b"), Reader(hub, "user:2:a")]
        for r in readers:
            r.take(1)
        assert hub.disconnect("user:1:*") == 2
        for r in readers[:2]:
            assert r.ended()
            assert r.raw[-1] != b"retry: 250\n\n"  # the browser waits its usual retry
        assert hub.stats()["kicked"] == 2
        assert "disconnect('user:1:*') ended 2 stream(s)" in caplog.text
        readers[2].close()


def test_last_event_id_is_capped_and_garbage_gets_a_reset() -> None:
    long = "1" * 10_000
    assert last_event_id_of(environ(**{"Last-Event-ID": long})) == long[: MAX_EVENT_ID_LENGTH + 1]
    with Hub() as hub:
        for garbage in ["", "-", "x" * 300, "\x00\xff", "\u0661-\u0662", "a-99999999999999999999"]:
            reader = Reader(hub, "c", last_event_id=garbage)
            connected, reset = reader.take(2)
            assert (connected.event, reset.event) == ("connected", "reset")
            assert json.loads(reset.data)["reason"] in ("malformed", "unknown")
            reader.close()


def test_a_client_id_must_be_encodable() -> None:
    with pytest.raises(ValueError, match="client id must be encodable as UTF-8"):
        Client("user:\ud800")


# Any code point, lone surrogates included (and often: they are the interesting case).
_ANY_CHAR = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff"])


def test_untrusted_ids_give_one_clean_first_chunk() -> None:
    """Whatever client ID the app derives and whatever Last-Event-ID arrives, the
    first chunk decodes to exactly ``connected`` (with the ID intact) and ``reset``,
    or the client ID is refused with ValueError."""
    with Hub(max_clients_per_id=None) as hub:

        @settings(max_examples=150, deadline=None)
        @given(client_id=st.text(_ANY_CHAR, min_size=1),
               last_event_id=st.text(_ANY_CHAR, max_size=300))
        def check(client_id: str, last_event_id: str) -> None:
            try:
                response = serve_sse(hub, environ(), client_id, last_event_id=last_event_id)
            except ValueError as exc:
                bad = client_id if "client id" in str(exc) else last_event_id
                assert any("\ud800" <= c <= "\udfff" for c in bad)
                assert "must be encodable as UTF-8" in str(exc)
                return
            stream = response.response
            chunk = next(iter(stream))
            stream.close()  # type: ignore[attr-defined]
            connected, reset = decode(chunk)
            assert json.loads(connected.data)["client_id"] == client_id
            assert reset.event == "reset"
            assert json.loads(reset.data)["last_event_id"] == last_event_id

        check()
        hub.flush()
        assert hub.get_client_count() == 0  # refused or closed: nothing left registered


def test_a_stream_that_cannot_start_leaves_no_registration() -> None:
    with Hub() as hub:
        with pytest.raises(ValueError, match="lone surrogate"):
            serve_sse(hub, environ(), "c", metadata={"name": "\udc80"})
        hub.flush()
        assert hub.get_client_count() == 0


def test_a_slot_held_by_a_closed_connection_goes_to_the_new_one() -> None:
    """A browser that reconnects before a keep-alive noticed its old connection is
    gone is not refused: at the limit the hub asks each connection's socket."""
    with Hub(max_clients_per_id=1, max_clients=2, keepalive_interval=30) as hub:
        pairs = [socket.socketpair() for _ in range(4)]
        responses = []  # an open stream's response must stay referenced
        try:
            def open_stream(i: int, cid: str) -> int:
                env = {**environ(), "gunicorn.socket": pairs[i][0]}
                responses.append(serve_sse(hub, env, cid))
                return responses[-1].status_code

            assert open_stream(0, "user:1") == 200
            assert open_stream(1, "user:1") == 429  # the first is still there
            pairs[0][1].close()  # the browser's side goes away (FIN)
            assert open_stream(1, "user:1") == 200  # its slot was reaped
            assert open_stream(2, "user:2") == 200
            assert open_stream(3, "user:3") == 503  # max_clients, and nobody has gone
            pairs[2][1].close()
            assert open_stream(3, "user:3") == 200
            s = hub.stats()
            assert (s["clients"], s["disconnected"], s["refused"], s["refused_per_id"]) == (
                2, 2, 1, 1)
        finally:
            for response in responses:
                response.close()
            for a, b in pairs:
                a.close()
                b.close()


def test_wrong_types_fail_in_the_caller_naming_the_argument() -> None:
    with Hub() as hub:
        with pytest.raises(TypeError, match=r"client must be a sse_kit\.Client, not str"):
            hub.register("user:1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"client must be a sse_kit\.Client"):
            hub.unregister(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="client_id must be a str"):
            hub.get_client(7)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="metadata must be a mapping"):
            Client("c", metadata=[("a", 1)])  # type: ignore[arg-type]
        hub.flush()  # the hub thread is still serving
        assert hub.running and hub.get_client_count() == 0
