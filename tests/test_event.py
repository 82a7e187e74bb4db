"""Event and ConnectedEvent: validation at construction, encoding, the connected payload."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sse_kit._event import (
    EVENT_TYPE_CONNECTED,
    EVENT_TYPE_ERROR,
    EVENT_TYPE_KEEPALIVE,
    EVENT_TYPE_MESSAGE,
    EVENT_TYPE_METRIC,
    EVENT_TYPE_RESET,
    ConnectedEvent,
    Event,
)


def test_event_type_constants() -> None:
    assert (
        EVENT_TYPE_CONNECTED,
        EVENT_TYPE_KEEPALIVE,
        EVENT_TYPE_MESSAGE,
        EVENT_TYPE_ERROR,
        EVENT_TYPE_METRIC,
        EVENT_TYPE_RESET,
    ) == ("connected", "keepalive", "message", "error", "metric", "reset")


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        pytest.param({"data": 1}, TypeError, "data", id="int-data"),
        pytest.param({"data": None}, TypeError, "data", id="none-data"),
        pytest.param({"data": {1, 2}}, TypeError, "data", id="set-data"),
        pytest.param({"data": "x", "event": "a\nb"}, ValueError, "event", id="lf-in-event"),
        pytest.param({"data": "x", "event": "a\x00"}, ValueError, "event", id="nul-in-event"),
        pytest.param({"data": "x", "event": 1}, TypeError, "event", id="int-event"),
        pytest.param({"data": "x", "id": "a\rb"}, ValueError, "id", id="cr-in-id"),
        pytest.param({"data": "x", "id": "a\x00"}, ValueError, "id", id="nul-in-id"),
        pytest.param({"data": "x", "id": 5}, TypeError, "id", id="int-id"),
        pytest.param({"data": "x", "retry": -1}, ValueError, "retry", id="negative-retry"),
        pytest.param({"data": "x", "retry": False}, TypeError, "retry", id="bool-retry"),
        pytest.param({"data": "x", "retry": "5"}, TypeError, "retry", id="str-retry"),
    ],
)
def test_event_rejects_bad_fields_at_construction(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=rf"\b{field}\b"):
        Event(**kwargs)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"\xff", ValueError, id="invalid-utf8"),
        pytest.param("\ud800", ValueError, id="lone-surrogate"),
        pytest.param({"a": float("inf")}, ValueError, id="infinity"),
        pytest.param([object()], TypeError, id="unserialisable"),
    ],
)
def test_event_data_that_cannot_be_encoded_fails_at_encode(
    data: Any, error: type[Exception]
) -> None:
    event = Event(data)
    with pytest.raises(error, match=r"\bdata\b"):
        event.encode()


def test_event_encode() -> None:
    event = Event({"n": 1}, event="update", id="1-7", retry=2000)
    assert event.encode() == b'id: 1-7\nevent: update\nretry: 2000\ndata: {"n":1}\n\n'


def test_event_defaults() -> None:
    event = Event("hi")
    assert (event.event, event.id, event.retry) == (None, None, None)
    assert event.encode() == b"data: hi\n\n"


def test_event_is_frozen_and_slotted() -> None:
    event = Event("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "other"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert event == Event("hi")
    assert hash(event) == hash(Event("hi"))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"client_id": "c1"}, {"client_id": "c1"}, id="only-client-id"),
        pytest.param(
            {"client_id": "c1", "user_id": "", "session_id": "", "metadata": {}},
            {"client_id": "c1"},
            id="empty-values-omitted",
        ),
        pytest.param(
            {"client_id": "c1", "user_id": "u", "session_id": "s", "metadata": {"k": [1]}},
            {"client_id": "c1", "user_id": "u", "session_id": "s", "metadata": {"k": [1]}},
            id="everything",
        ),
        pytest.param(
            {"client_id": "c1", "session_id": "s"},
            {"client_id": "c1", "session_id": "s"},
            id="session-only",
        ),
    ],
)
def test_connected_event_to_dict(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert ConnectedEvent(**kwargs).to_dict() == expected


def test_connected_event_to_json_is_compact_and_ordered() -> None:
    connected = ConnectedEvent("c1", user_id="ü", metadata={"role": "admin"})
    assert connected.to_json() == '{"client_id":"c1","user_id":"ü","metadata":{"role":"admin"}}'


def test_connected_event_metadata_default_is_not_shared() -> None:
    assert ConnectedEvent("a").metadata is not ConnectedEvent("b").metadata


@pytest.mark.parametrize(
    ("client_id", "error"),
    [pytest.param("", ValueError, id="empty"), pytest.param(7, TypeError, id="int")],
)
def test_connected_event_rejects_bad_client_id(client_id: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"\bclient_id\b"):
        ConnectedEvent(client_id)
