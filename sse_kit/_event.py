"""The event value types: :class:`Event`, :class:`ConnectedEvent`, and the event types
sse_kit itself sends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._options import check_str
from ._wire import (
    EventData,
    data_to_text,
    encode_fields,
    validate_data,
    validate_event,
    validate_id,
    validate_retry,
)

__all__ = [
    "EVENT_TYPE_CONNECTED",
    "EVENT_TYPE_ERROR",
    "EVENT_TYPE_KEEPALIVE",
    "EVENT_TYPE_MESSAGE",
    "EVENT_TYPE_METRIC",
    "EVENT_TYPE_PRESENCE",
    "EVENT_TYPE_RESET",
    "ConnectedEvent",
    "Event",
    "encode_reset",
    "presence_data",
]

EVENT_TYPE_CONNECTED: Final = "connected"  # first event of every stream; data is ConnectedEvent
EVENT_TYPE_KEEPALIVE: Final = "keepalive"  # names keep-alives; the wire sends them as comments
EVENT_TYPE_MESSAGE: Final = "message"  # the spec's default type, what onmessage receives
# A client ID joined or left (Hub(presence_events=...)); data {"client_id", "state"}.
EVENT_TYPE_PRESENCE: Final = "presence"
EVENT_TYPE_ERROR: Final = "error"  # a server-side failure reported to the client in-band
EVENT_TYPE_METRIC: Final = "metric"  # periodic hub statistics for dashboards
EVENT_TYPE_RESET: Final = "reset"  # a Last-Event-ID resume failed; the client must resync


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event, checked when it is built so a bad one never reaches a stream.

    :param data: text, UTF-8 bytes, or a mapping/sequence sent as compact JSON.
    :param event: the event type; ``None`` or ``""`` sends none, which clients
        dispatch as "message".
    :param id: the event ID; ``""`` clears the client's ``Last-Event-ID``.
    :param retry: the client's reconnection time in milliseconds.
    :raises TypeError: if a field has the wrong type (the message names the field).
    :raises ValueError: if *event* or *id* holds CR, LF, NUL or a lone surrogate,
        or *retry* is negative.
    """

    data: EventData
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        validate_data(self.data)
        validate_event(self.event)
        validate_id(self.id)
        validate_retry(self.retry)

    def encode(self) -> bytes:
        """Encode the whole frame, ``id`` line included.

        :raises ValueError: if bytes data is not UTF-8, text data holds a lone
            surrogate, or JSON data holds NaN or a circular reference.
        :raises TypeError: if a value inside mapping/sequence data is not JSON-serialisable.
        """
        return encode_fields(
            data_to_text(self.data), event=self.event, id=self.id, retry=self.retry
        )


@dataclass(frozen=True)
class ConnectedEvent:
    """The payload of the ``connected`` event sent first on every stream.

    It tells the client the ID the hub addresses it by (mirrors gokit sse's
    ``ConnectedEvent``).

    :param client_id: the client's ID; must be a non-empty ``str``.
    :param user_id: the authenticated user, if any.
    :param session_id: the session, if any.
    :param metadata: extra JSON-serialisable values for the client.
    :raises ValueError: if *client_id* is empty.
    :raises TypeError: if *client_id* is not a ``str``.
    """

    client_id: str
    user_id: str | None = None
    session_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_str("client_id", self.client_id)  # typed str, but checked: it comes from apps

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: ``client_id`` always, the other keys only when non-empty."""
        out: dict[str, Any] = {"client_id": self.client_id}
        if self.user_id:
            out["user_id"] = self.user_id
        if self.session_id:
            out["session_id"] = self.session_id
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON, as sent on the wire."""
        return data_to_text(self.to_dict())


def encode_reset(reason: str, last_event_id: str | None, *, id: str | None = None) -> bytes:
    """The ``reset`` event: the stream cannot be resumed losslessly (*reason*), so
    the page must refetch its state. Its data is ``{"reason", "last_event_id"}``;
    *id*, when given, is the position the stream continues from."""
    data = data_to_text({"reason": reason, "last_event_id": last_event_id})
    return encode_fields(data, event=EVENT_TYPE_RESET, id=id)


def presence_data(client_id: str, state: str) -> dict[str, str]:
    """The data of a ``presence`` event: ``{"client_id": ..., "state": "join"|"leave"}``."""
    return {"client_id": client_id, "state": state}
