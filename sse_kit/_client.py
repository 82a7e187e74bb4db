"""One client connection: its identity and its bounded outbox.

A :class:`Client` is one open stream (one browser tab). Several clients may share
an ID; the hub routes by ID, the stream drains the outbox.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from ._exceptions import EventTooLarge
from ._options import check_int, check_str, check_type, value_error
from ._wire import data_to_text, encode_fields, frame_chunk

if TYPE_CHECKING:
    from typing import TypeAlias

    from ._h2stream import H2Sink
    from ._outlet import OwnedSocket

    Sink: TypeAlias = "OwnedSocket | H2Sink"

__all__ = [
    "Client",
    "ClientLimits",
    "ClientOption",
    "deliver",
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
WRITTEN: Final = 4  # detached stream: written to the socket at once
DEFERRED: Final = 5  # detached stream: the socket is full; kept in its tail

# Why a stream ended; the stream writes a short retry: hint for SHUTDOWN.
CLOSED: Final = "closed"  # Client.close() or Hub.unregister()
SLOW: Final = "slow"  # outbox overflowed under the "disconnect" policy
SHUTDOWN: Final = "shutdown"  # the hub stopped
KICKED: Final = "disconnected"  # Hub.disconnect() matched it
EXPIRED: Final = "max_age"  # the stream reached the hub's max_age
IDENTITY_EXPIRED: Final = "identity_expired"  # the identity it was opened with expired
GONE: Final = "gone"  # the peer closed the connection, or a write to it failed
TIMED_OUT: Final = "write_timeout"  # nothing could be written for write_timeout seconds
# End reasons after which the browser should come back at once (a short retry:
# hint is written). Not after disconnect(): the browser waits its usual retry.
COME_BACK: Final = frozenset({SHUTDOWN, EXPIRED, IDENTITY_EXPIRED})


# A bound no backlog reaches: a detached stream's byte limit when none is set.
UNBOUNDED: Final = 1 << 62


def overflow(policy: SlowClientPolicy, may_cut: bool) -> int:
    """What a full outbox or tail does with one more frame: DROPPED under
    "drop" (or where a cut could not bring the frame back), else CUT."""
    return DROPPED if policy == DROP or not may_cut else CUT


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What a client may have waiting to be written, and what happens beyond it
    (the hub's ``client_buffer``, ``client_buffer_bytes`` and ``slow_client``)."""

    max_events: int
    max_bytes: int | None
    policy: SlowClientPolicy
    max_event_size: int | None

    @property
    def byte_bound(self) -> int:
        """``max_bytes``, or a bound no backlog reaches (``1 << 62``) where there is none."""
        return self.max_bytes if self.max_bytes is not None else UNBOUNDED


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
    check_type("metadata key", key, str)
    return ClientOption("metadata", value, key)


def with_session_id(session_id: str) -> ClientOption:
    """Option: set the client's session ID."""
    check_type("session_id", session_id, str, optional=True)
    return ClientOption("session_id", session_id)


def with_user_id(user_id: str) -> ClientOption:
    """Option: set the client's user ID."""
    check_type("user_id", user_id, str, optional=True)
    return ClientOption("user_id", user_id)


def _check_encodable(name: str, value: str | None) -> None:
    # Both are sent back in the stream's first events, which must be UTF-8.
    if value is not None and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise value_error(name, "encodable as UTF-8", value) from None


def _gather(
    options: tuple[ClientOption, ...], metadata: Mapping[str, Any] | None,
    session_id: str | None, user_id: str | None,
) -> tuple[dict[str, Any], str | None, str | None]:
    """The metadata, session ID and user ID of a client: the keyword arguments,
    then the :class:`ClientOption` values, which win."""
    check_type("metadata", metadata, Mapping, optional=True, what="a mapping")
    check_type("session_id", session_id, str, optional=True)
    check_type("user_id", user_id, str, optional=True)
    meta = dict(metadata or {})
    for option in options:
        check_type("options", option, ClientOption)
        if option.name == "metadata":
            assert option.key is not None
            meta[option.key] = option.value
        elif option.name == "session_id":
            session_id = option.value
        else:
            user_id = option.value
    return meta, session_id, user_id


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
    :raises TypeError: if an argument is of the wrong type (*id* not a ``str``,
        *buffer* not an ``int``, ...); the message names it.
    :raises ValueError: if *id* is empty, *id* or *last_event_id* holds a lone
        surrogate, or *buffer* is smaller than 1.
    """

    # Slots: less memory per idle stream (docs/benchmarks.md, RSS/stream).
    __slots__ = (
        "__weakref__", "_buffer", "_bytes", "_end", "_frames", "_id", "_json_default", "_lock",
        "_max_bytes", "_max_event_size", "_metadata", "_policy", "_probe", "_session_id",
        "_sink", "_user_id", "_waiting", "_wake", "last_event_id",
    )

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
        check_str("client id", id)
        check_int("buffer", buffer, 1)
        check_type("last_event_id", last_event_id, str, optional=True)
        _check_encodable("client id", id)
        _check_encodable("last_event_id", last_event_id)
        meta, session_id, user_id = _gather(options, metadata, session_id, user_id)
        self._id = id
        self._metadata: Mapping[str, Any] = MappingProxyType(meta)
        self._session_id = session_id
        self._user_id = user_id
        self._buffer = buffer
        self.last_event_id = last_event_id
        # _lock guards _frames, _bytes, _end, _waiting, _sink and, once the stream
        # has detached, the OwnedSocket's tail and socket (sse_kit._outlet). Held
        # by the hub thread (or a send() caller) to append one frame or to make
        # one non-blocking write, by the stream thread to swap the outbox out,
        # by the outlet thread to flush a tail; never held while blocking or waiting.
        self._lock = threading.Lock()
        # _wake: a binary semaphore, held while nobody has woken the stream thread;
        # released (under _lock, only when _waiting) by whoever wakes it. Cheaper
        # than a Condition, which allocates a lock per wait.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._frames: list[bytes] = []
        self._bytes = 0  # total length of _frames
        self._end: str | None = None
        self._waiting = False
        # The detached connection (sse_kit._outlet), once the stream has handed
        # its socket to the hub side; then the outbox stays empty.
        self._sink: Sink | None = None
        # Set by the hub on register (_configure), before any frame is offered.
        self._policy: SlowClientPolicy = DROP
        self._max_bytes: int | None = None  # the hub's client_buffer_bytes
        self._max_event_size: int | None = None  # the hub's max_event_size
        self._json_default: Callable[[Any], Any] | None = None  # the hub's json_default
        # Where the server exposes the socket (_watch_peer): False once the peer
        # is known to be gone (see sse_kit._socket). Never blocks.
        self._probe: Callable[[], bool] | None = None

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

    @property
    def end_reason(self) -> str | None:
        """Why the stream is ending (``"closed"``, ``"slow"``, ``"shutdown"``,
        ``"disconnected"``, ``"max_age"``, ``"identity_expired"``, ``"gone"``,
        ``"write_timeout"``), or ``None`` while it is open."""
        return self._end

    @property
    def detached(self) -> bool:
        """True once the stream's socket is owned by the hub side (no server
        thread holds it; see ``docs/performance.md``)."""
        return self._sink is not None

    def limits(self) -> ClientLimits:
        """What this client may have waiting to be written (set by the hub on
        register)."""
        return ClientLimits(self._buffer, self._max_bytes, self._policy, self._max_event_size)

    def send(self, data: Any, *, event: str | None = None) -> bool:
        """Queue one event for this connection only; never blocks.

        The event carries no ``id:`` (it is not in the hub's history, so it is not
        replayed on resume).

        :returns: ``False`` when the outbox is full (the client is slow) or the
            stream has ended; the event was not queued. A full outbox never ends
            the stream here, whatever the hub's ``slow_client`` policy: an event
            sent this way is not in the history, so a resume could not bring it back.
        :raises ValueError: if *event* contains CR, LF or NUL, or bytes are not UTF-8.
        :raises EventTooLarge: if the encoded event exceeds the hub's ``max_event_size``.
        :raises TypeError: if *data* is not str, bytes, dict or list.
        """
        frame = encode_fields(data_to_text(data, self._json_default), event=event)
        if self._max_event_size is not None and len(frame) > self._max_event_size:
            raise EventTooLarge(
                f"the encoded event is {len(frame)} bytes; max_event_size is "
                f"{self._max_event_size}"
            )
        return self._offer(frame, may_cut=False) in (OFFERED, WRITTEN, DEFERRED)

    def close(self) -> None:
        """End this connection's stream after the events already queued."""
        self._finish(CLOSED)

    # -- used by the hub and the stream ------------------------------------------

    def _configure(
        self, policy: SlowClientPolicy, max_bytes: int | None, max_event_size: int | None,
        json_default: Callable[[Any], Any] | None = None,
    ) -> None:
        """The hub's limits (and JSON default) for this client; set on register,
        before any offer."""
        self._policy = policy
        self._max_bytes = max_bytes
        self._max_event_size = max_event_size
        self._json_default = json_default

    def _watch_peer(self, probe: Callable[[], bool] | None) -> None:
        """Where the server exposes the socket: *probe* says (never blocking)
        whether the peer may still be there. Set before registering."""
        self._probe = probe

    def _detach_to(self, sink: Sink) -> None:
        """From now on *sink* is this stream's connection: what the outbox holds
        goes first, then every offer is written to it (sse_kit._outlet)."""
        with self._lock:
            sink.start(self._frames)
            self._frames, self._bytes = [], 0
            self._sink = sink

    def _offer(self, frame: bytes, *, may_cut: bool = True) -> int:
        """Queue *frame*, or write it straight to the socket on the fast path
        (:func:`deliver` for this one client).

        A full outbox drops *frame*, or ends the stream under the "disconnect"
        policy when *may_cut* (the frame is in the history, so a resume brings it).

        :returns: OFFERED, WRITTEN, DEFERRED, DROPPED, CUT or ENDED. Never blocks.
        """
        _, written, queued, deferred, dropped, cut = deliver((self,), (frame,), may_cut=may_cut)
        return (WRITTEN if written else DEFERRED if deferred else OFFERED if queued
                else DROPPED if dropped else CUT if cut else ENDED)

    def _enqueue(self, frame: bytes, may_cut: bool) -> int:
        """The queue path of :meth:`_offer`; called with _lock held."""
        if self._end is not None:
            return ENDED
        # An empty outbox takes any frame, so one event larger than
        # client_buffer_bytes is still delivered; the limits bound the backlog.
        if self._frames and (
            len(self._frames) >= self._buffer
            or (self._max_bytes is not None and self._bytes + len(frame) > self._max_bytes)
        ):
            outcome = overflow(self._policy, may_cut)
            if outcome == CUT:
                self._end = SLOW
                self._notify()
            return outcome
        self._frames.append(frame)
        self._bytes += len(frame)
        self._notify()
        return OFFERED

    def _enqueue_all(self, frames: Sequence[bytes], may_cut: bool) -> tuple[int, int, int]:
        """:meth:`_enqueue` each of *frames* (a broadcast batch), in order; return
        how many were (queued, dropped, cut). Called with _lock held."""
        queued = dropped = 0
        for frame in frames:
            result = self._enqueue(frame, may_cut)
            if result == OFFERED:
                queued += 1
            elif result == DROPPED:
                dropped += 1
            elif result == CUT:
                return queued, dropped, 1
            else:  # ENDED: the stream was already ending
                break
        return queued, dropped, 0

    def _end_locked(self, reason: str) -> None:
        """:meth:`_finish` for a caller that holds _lock and knows the stream is open."""
        self._end = reason
        sink = self._sink
        if sink is None:
            self._notify()
        else:
            sink.post_end()

    def _notify(self) -> None:
        """Wake the stream thread if it is parked; called with _lock held."""
        if self._waiting:
            self._waiting = False
            self._wake.release()

    def _gone(self) -> bool:
        """Whether the peer is known to have closed the connection."""
        sink = self._sink
        if sink is not None:
            return sink.peer_closed()
        probe = self._probe
        return probe is not None and not probe()

    def _finish(self, reason: str) -> bool:
        """Mark the stream as ending for *reason*; False if it already was.

        Once this returns nothing more is offered to the stream: a parked stream
        wakes to write its end, a detached one's end is written by the outlet.
        """
        with self._lock:
            if self._end is not None:
                return False
            self._end_locked(reason)
        return True

    def _take(self, timeout: float) -> tuple[list[bytes], str | None]:
        """Wait up to *timeout* seconds for frames (a parked stream's thread);
        return them and the end reason. Once the end reason is set no frame is
        accepted, so the frames returned with it are the last ones."""
        lock = self._lock
        with lock:
            if not self._frames and self._end is None:
                self._waiting = True
                lock.release()
                try:
                    woken = self._wake.acquire(True, timeout)
                finally:
                    lock.acquire()
                if not woken:
                    if self._waiting:
                        self._waiting = False
                    else:  # woken after the timeout: consume the release
                        self._wake.acquire()
            frames, end = self._frames, self._end
            self._frames, self._bytes = [], 0
            return frames, end

    def __repr__(self) -> str:
        return f"<Client {self._id!r}{' closed' if self.closed else ''}>"


def deliver(
    clients: Iterable[Client], frames: Sequence[bytes], *, may_cut: bool = True
) -> tuple[int, int, int, int, int, int]:
    """Offer a batch of broadcasts to each of *clients*: the hub thread's hot loop.

    *frames* are consecutive broadcasts to the same recipients, oldest first
    (several when they waited in the hub's inbox together). A detached stream gets
    them as ONE chunk, written at once or kept in its tail (``OwnedSocket.send``);
    a parked stream gets each queued as by :meth:`Client._offer`. *may_cut*: whether
    a full outbox may end a stream under the "disconnect" policy.

    :returns: how many open streams were offered the batch, then how many
        deliveries (client x event) were (written at once, queued, kept in a
        detached stream's tail, dropped, cut); streams already ended are not counted.
    """
    n = len(frames)
    # Joined (and framed as an HTTP/1.1 chunk) once, at the first detached
    # stream that needs it (many batches reach nobody).
    joined = chunk = b""
    now = time.monotonic()  # one clock read per batch: keep-alive timing needs no more
    reached = written = queued = deferred = dropped = cut = 0
    for client in clients:
        with client._lock:
            sink = client._sink
            if sink is None:
                q, d, c = client._enqueue_all(frames, may_cut)
            else:
                if client._end is not None:
                    continue
                reached += 1
                if not joined:
                    joined = frames[0] if n == 1 else b"".join(frames)
                if sink.framed:
                    if not chunk:
                        chunk = frame_chunk(joined)
                    outcome = sink.send(chunk, n, may_cut, now)
                else:  # an HTTP/2 stream (sse_kit._h2stream): its own framing
                    outcome = sink.send(joined, n, may_cut, now)
                if outcome == WRITTEN:
                    written += n
                elif outcome == DEFERRED:
                    deferred += n
                elif outcome == DROPPED:
                    dropped += n
                elif outcome == CUT:
                    client._end_locked(SLOW)
                    cut += 1
                else:  # ENDED: the write failed, the peer is gone
                    client._end_locked(GONE)
                continue
        if q or d or c:
            reached += 1
        queued += q
        dropped += d
        cut += c
    return reached, written, queued, deferred, dropped, cut
