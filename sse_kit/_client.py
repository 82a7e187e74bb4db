"""One client connection: its identity and its bounded outbox.

A :class:`Client` is one open stream (one browser tab). Several clients may share
an ID; the hub routes by ID, the stream drains the outbox.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from ._wire import data_to_text, encode_fields

__all__ = [
    "Client",
    "ClientOption",
    "with_metadata",
    "with_session_id",
    "with_user_id",
]

# What happens when a frame does not fit in a client's outbox.
DROP: Final = "drop"  # drop that frame for that client; count it
DISCONNECT: Final = "disconnect"  # end the stream after what is queued; it resumes from history
SlowClientPolicy = Literal["drop", "disconnect"]

# Results of Client._offer(), counted by the hub.
OFFERED: Final = 0  # queued
DROPPED: Final = 1  # outbox full, policy "drop": this frame is lost for this client
CUT: Final = 2  # outbox full, policy "disconnect": the stream ends now, resumes later
ENDED: Final = 3  # the stream is already ending; it resumes from history if it reconnects

# Why a stream ended; the stream writes a short retry: hint for SHUTDOWN.
CLOSED: Final = "closed"  # Client.close() or Hub.unregister()
SLOW: Final = "slow"  # outbox overflowed under the "disconnect" policy
SHUTDOWN: Final = "shutdown"  # the hub stopped
KICKED: Final = "disconnected"  # Hub.disconnect() matched it
EXPIRED: Final = "max_age"  # the stream reached the hub's max_age


@dataclass(frozen=True, slots=True)
class ClientOption:
    """A functional option for :class:`Client`, as gokit ``sse.ClientOption``.

    Build one with :func:`with_metadata`, :func:`with_session_id` or
    :func:`with_user_id`; keyword arguments to :class:`Client` do the same.
    """

    name: Literal["metadata", "session_id", "user_id"]
    value: Any
    key: str | None = None


def with_metadata(key: str, value: Any) -> ClientOption:
    """Option: set metadata *key* to *value* on the client."""
    if not isinstance(key, str):
        raise TypeError(f"metadata key must be a str, not {type(key).__name__}")
    return ClientOption("metadata", value, key)


def with_session_id(session_id: str) -> ClientOption:
    """Option: set the client's session ID."""
    return ClientOption("session_id", _opt_str("session_id", session_id))


def with_user_id(user_id: str) -> ClientOption:
    """Option: set the client's user ID."""
    return ClientOption("user_id", _opt_str("user_id", user_id))


def _opt_str(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    return value


class Client:
    """One SSE connection: an ID to route on, metadata, and a bounded outbox.

    :param id: the client ID that broadcast patterns match (``user:42:tab``).
        Derive it from your own session or auth, never from the request alone.
    :param options: :class:`ClientOption` values (gokit style).
    :param metadata: arbitrary JSON-serialisable data, sent in the ``connected``
        event and readable with :meth:`get_metadata`.
    :param session_id: the session this connection belongs to.
    :param user_id: the user this connection belongs to.
    :param buffer: how many events may wait for the stream to write them.
    :param last_event_id: the ``Last-Event-ID`` the browser resumed with.
    :raises TypeError: if *id* is not a ``str``.
    :raises ValueError: if *id* is empty or *buffer* is smaller than 1.
    """

    def __init__(
        self,
        id: str,
        *options: ClientOption,
        metadata: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        buffer: int = 256,
        last_event_id: str | None = None,
    ) -> None:
        if not isinstance(id, str):
            raise TypeError(f"client id must be a str, not {type(id).__name__}")
        if not id:
            raise ValueError("client id must not be empty")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be an int >= 1, got {buffer!r}")
        meta = dict(metadata or {})
        session_id = _opt_str("session_id", session_id)
        user_id = _opt_str("user_id", user_id)
        for option in options:
            if not isinstance(option, ClientOption):
                raise TypeError(f"options must be ClientOption, not {type(option).__name__}")
            if option.name == "metadata":
                assert option.key is not None
                meta[option.key] = option.value
            elif option.name == "session_id":
                session_id = option.value
            else:
                user_id = option.value
        self._id = id
        self._metadata: Mapping[str, Any] = MappingProxyType(meta)
        self._session_id = session_id
        self._user_id = user_id
        self._buffer = buffer
        self.last_event_id = _opt_str("last_event_id", last_event_id)
        # _lock guards _frames, _end and _waiting. Held by the hub thread (or a
        # send() caller) to append one frame, and by the stream thread to swap the
        # list out; never held while writing to a socket or waiting on the hub.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._frames: list[bytes] = []
        self._end: str | None = None
        self._waiting = False
        self._policy: SlowClientPolicy = DROP  # set by the hub on register

    @property
    def id(self) -> str:
        """The client ID broadcast patterns match."""
        return self._id

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Read-only metadata given at construction."""
        return self._metadata

    def get_metadata(self, key: str, default: Any = None) -> Any:
        """The metadata value for *key*, or *default*."""
        return self._metadata.get(key, default)

    @property
    def session_id(self) -> str | None:
        """The session this connection belongs to, if given."""
        return self._session_id

    @property
    def user_id(self) -> str | None:
        """The user this connection belongs to, if given."""
        return self._user_id

    @property
    def closed(self) -> bool:
        """True once the stream is ending (closed, cut, or the hub stopped)."""
        return self._end is not None

    def send(self, data: Any, *, event: str | None = None) -> bool:
        """Queue one event for this connection only; never blocks.

        The event carries no ``id:`` (it is not in the hub's history, so it is not
        replayed on resume).

        :returns: ``False`` when the outbox is full (the client is slow) or the
            stream has ended; the event was not queued. A full outbox never ends
            the stream here, whatever the hub's ``slow_client`` policy: an event
            sent this way is not in the history, so a resume could not bring it back.
        :raises ValueError: if *event* contains CR, LF or NUL, or bytes are not UTF-8.
        :raises TypeError: if *data* is not str, bytes, dict or list.
        """
        frame = encode_fields(data_to_text(data), event=event)
        return self._offer(frame, may_cut=False) == OFFERED

    def close(self) -> None:
        """End this connection's stream after the events already queued."""
        self._finish(CLOSED)

    # -- used by the hub and the stream ------------------------------------------

    def _offer(self, frame: bytes, *, may_cut: bool = True) -> int:
        """Queue *frame*; return OFFERED, DROPPED, CUT or ENDED. Never blocks.

        A full outbox drops *frame*, or ends the stream under the "disconnect"
        policy when *may_cut* (the frame is in the history, so a resume brings it).
        """
        with self._lock:
            if self._end is not None:
                return ENDED
            if len(self._frames) >= self._buffer:
                if self._policy == DROP or not may_cut:
                    return DROPPED
                self._end = SLOW
                self._ready.notify()
                return CUT
            self._frames.append(frame)
            if self._waiting:
                self._ready.notify()
        return OFFERED

    def _finish(self, reason: str) -> bool:
        """Mark the stream as ending for *reason*; False if it already was."""
        with self._lock:
            if self._end is not None:
                return False
            self._end = reason
            self._ready.notify()
        return True

    def _take(self, timeout: float) -> tuple[list[bytes], str | None]:
        """Wait up to *timeout* seconds for frames; return them and the end reason.

        Once the end reason is set no frame is accepted, so the frames returned
        with it are the last ones.
        """
        with self._lock:
            if not self._frames and self._end is None:
                self._waiting = True
                self._ready.wait(timeout)
                self._waiting = False
            frames, self._frames = self._frames, []
            return frames, self._end

    def __repr__(self) -> str:
        return f"<Client {self._id!r}{' closed' if self.closed else ''}>"
