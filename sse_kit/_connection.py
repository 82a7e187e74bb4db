"""One open stream: what it writes, in what order, and how it ends.

A :class:`Stream` is the WSGI response iterable of one connection. It owns the
ordering and framing of everything written on that connection:

1. the first chunk, written at once: the ``connected`` event (carrying the
   ``retry:`` hint and the ID the stream continues from), then a ``reset`` event
   or the events replayed from history;
2. then live events, every frame queued since the last write joined into one
   chunk, or a keep-alive comment after ``keepalive_interval`` of silence;
3. at the end, whatever was queued, plus a short ``retry:`` hint when the hub is
   shutting down, the stream reached the hub's ``max_age``, or the identity it
   was opened with expired (its :class:`Expiry`: the browser comes back at once
   and goes through the application's authorization again).

Where the server can hand the connection over (gunicorn's gthread worker, see
:mod:`sse_kit.gunicorn`), the stream *detaches* after step 1: the server asks for
the second chunk, the stream gives the socket to the hub's outlet
(:mod:`sse_kit._outlet`) and ends the response as far as the server is concerned;
steps 2 and 3 are then done by the hub side and no server thread is held.
Everywhere else (HTTP/1.0, TLS, other servers, ``Hub(fast_path=False)``) the
stream's thread parks between chunks: the *parked* path.

``close()`` (which every WSGI server calls, even for a response it never
iterated) unregisters the client; so does garbage collection as a last resort.

Logging: one ``INFO`` line when the stream opens and one when it closes (client
ID, duration, events, bytes, why it ended), a ``WARNING`` when it is cut as a
slow client. Only the client ID identifies a stream in the log: never the URL,
its query string or a header, which may carry tokens.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from ._client import COME_BACK, EXPIRED, GONE, IDENTITY_EXPIRED, SLOW, Client
from ._event import EVENT_TYPE_CONNECTED, ConnectedEvent, encode_reset
from ._wire import encode_comment, encode_fields, encode_retry

if TYPE_CHECKING:
    from ._hub import Hub
    from ._router import _Registration

__all__ = [
    "DETACH_KEY", "Adopter", "Detach", "Expiry", "Stream", "expiry_of", "note_closed",
    "note_end", "note_expired", "reason_text",
]

log = logging.getLogger(__name__)

_DONE: Final = b""  # returned by _next_chunk when nothing more will be written
_GONE: Final = "client gone"  # end reason when the server closed the response, not the hub
# A stream ends between (1 - _AGE_JITTER) * max_age and max_age after it opened, so
# streams opened together (after a deploy) do not all reconnect together.
_AGE_JITTER: Final = 0.1

# The environ key under which a server adapter offers a stream its Detach.
DETACH_KEY: Final = "sse_kit.detach"

class Adopter(Protocol):
    """What a server adapter may hand a detaching stream instead of a socket:
    a connection that is not the stream's alone (an HTTP/2 stream,
    :class:`sse_kit._h2stream.H2Handover`)."""

    def adopt(self, hub: Hub, client: Client, *, expires: Expiry | None, events: int,
              body_bytes: int, opened: float) -> None:
        """Make the connection *client*'s writer from now on (see
        :meth:`sse_kit._outlet.Outlet.adopt`); the adopter ends the stream and
        unregisters *client* when it is over."""


Detach = Callable[[], "socket.socket | Adopter | None"]
"""What a server adapter offers a stream (``environ[DETACH_KEY]``): called once
the server has written the headers and the first chunk, it returns sse_kit's own
descriptor of the connection (or an :class:`Adopter`) and ends the response on
the server's side (which then writes nothing more, closes only its own
descriptor and counts the request as finished); ``None`` when this response
cannot be detached (it then goes on as usual). Called at most once, from the
request's thread."""


@dataclass(frozen=True, slots=True)
class Expiry:
    """When a stream ends by itself, and why.

    :ivar at: the ``time.monotonic()`` at which it ends.
    :ivar end: its end reason: ``EXPIRED`` (the hub's ``max_age``) or
        ``IDENTITY_EXPIRED`` (the identity it was opened with).
    """

    at: float
    end: str


def expiry_of(hub: Hub, opened: float, expires_at: float | None) -> Expiry | None:
    """The :class:`Expiry` of a stream opened at *opened* (monotonic): the hub's
    ``max_age`` (jittered), or *expires_at* (seconds since the epoch, the
    identity's expiry) if that comes first; ``None`` if neither applies."""
    expiry = None
    if hub.max_age is not None:
        expiry = Expiry(opened + hub.max_age * (1.0 - _AGE_JITTER * random.random()), EXPIRED)
    if expires_at is not None:
        at = opened + (expires_at - time.time())
        if expiry is None or at < expiry.at:
            expiry = Expiry(at, IDENTITY_EXPIRED)
    return expiry


def first_chunk(hub: Hub, reg: _Registration) -> bytes:
    """The bytes a stream writes before any live event."""
    client = reg.client
    connected = ConnectedEvent(
        client_id=client.id,
        user_id=client.user_id,
        session_id=client.session_id,
        metadata=dict(client.metadata),
    )
    parts = [
        encode_fields(
            connected.to_json(), event=EVENT_TYPE_CONNECTED, id=reg.position, retry=hub.retry
        )
    ]
    if reg.resume.reset is not None:
        parts.append(encode_reset(reg.resume.reset, client.last_event_id))
    parts.extend(reg.resume.frames)
    return b"".join(parts)


class Stream:
    """The WSGI iterable that streams one client's events.

    Built by :func:`sse_kit.serve_sse` after the client is registered; iterating
    it blocks the server thread between events, as WSGI streaming does.
    """

    def __init__(
        self,
        hub: Hub,
        reg: _Registration,
        *,
        on_abort: Callable[[], None] | None = None,
        detach: Detach | None = None,
        expires_at: float | None = None,
    ) -> None:
        self._hub = hub
        # Called by close() when the server gave up before the last chunk was
        # written (a write failed or timed out): the connection is dead.
        self._on_abort = on_abort
        self._complete = False  # the server asked for a chunk after the last one
        # Called at the second chunk to hand the connection to the hub side.
        self._detach = detach
        self._client = reg.client
        self._first: bytes | None = first_chunk(hub, reg)
        self._interval = hub.keepalive_interval
        self._ended = False
        self._opened = time.monotonic()
        # expires_at: the identity's expiry (seconds since the epoch), if it has one.
        self._expires = expiry_of(hub, self._opened, expires_at)
        self._events = len(reg.resume.frames)  # events written (replayed ones included)
        self._bytes = 0
        self._end: str = _GONE  # why the stream ended; _GONE until the hub says otherwise
        # (The hub counted the connect, resume or reset when it registered the client.)
        if reg.resume.reset is not None:
            how = f"reset ({reg.resume.reset})"
        elif reg.client.last_event_id is not None:
            how = f"resumed, {len(reg.resume.frames)} replayed"
        else:
            how = "new"
        log.info("sse_kit: client %r connected: %s (%d open)", reg.client.id, how,
                 hub.get_client_count())
        self._released = False  # close() (or __del__) has unregistered the client

    @property
    def client(self) -> Client:
        """The client this stream writes to."""
        return self._client

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._detach is not None and self._first is None:
            detach, self._detach = self._detach, None
            if self._detached(detach):
                self._complete = True
                raise StopIteration
        chunk = self._next_chunk()
        if not chunk:
            self._complete = True
            raise StopIteration
        self._bytes += len(chunk)
        return chunk

    def _detached(self, detach: Detach) -> bool:
        """Hand the connection to the hub's outlet; False if it stays with this
        thread (the server could not detach it, or the stream already ended)."""
        client = self._client
        outlet = None if client.closed else self._hub._outlet()
        if outlet is None:
            return False  # ended, or the hub stopped: end it here, as the server expects
        taken = detach()
        if taken is None:
            return False
        if isinstance(taken, socket.socket):
            outlet.adopt(client, taken, expires=self._expires, events=self._events,
                         body_bytes=self._bytes, opened=self._opened)
        else:
            taken.adopt(self._hub, client, expires=self._expires, events=self._events,
                        body_bytes=self._bytes, opened=self._opened)
        # The outlet owns the stream now: it logs its end and unregisters it.
        self._released = True
        self._end = "detached"
        return True

    def _next_chunk(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._ended:
            return _DONE
        # The parked path: this thread waits for frames, a keep-alive or the end.
        client, interval, expires = self._client, self._interval, self._expires
        deadline = time.monotonic() + interval
        if expires is not None:
            deadline = min(deadline, expires.at)
        while True:
            frames, end = client._take(max(deadline - time.monotonic(), 0.0))
            if end is None and expires is not None and time.monotonic() >= expires.at:
                client._finish(expires.end)  # unless another end reason came first
                more, end = client._take(0.0)
                frames += more
            if frames:
                self._events += len(frames)
                # The outbox only grows until it is drained: this is its peak.
                self._hub.counters.observe_max("queue_high_water", len(frames))
            if end is not None:
                self._ended = True
                self._end = end
                if end in COME_BACK:
                    frames.append(encode_retry(self._hub.shutdown_retry))
                if end in (EXPIRED, IDENTITY_EXPIRED):
                    note_expired(self._hub, client.id, end)
                else:
                    note_end(client.id, end)
                return b"".join(frames)
            if frames:
                return frames[0] if len(frames) == 1 else b"".join(frames)
            if time.monotonic() >= deadline:
                self._hub.counters.add("keepalives")
                return encode_comment(f"keepalive {int(time.time())}")

    def __del__(self) -> None:
        # A server that drops the response without close() still unregisters it.
        # (Not weakref.finalize: building one inside __init__ nests two Python
        # constructors, a 4 KiB deeper stack that a parked stream thread keeps;
        # see sse_kit._router.signal.) unregister() never blocks.
        if not getattr(self, "_released", True):  # True: __init__ did not finish
            self._released = True
            _release(self._hub, self._client)

    def close(self) -> None:
        """Unregister the client; called by the WSGI server when the response ends
        or the connection is lost. Idempotent."""
        if self._released:
            return
        self._released = True
        self._ended = True
        if not self._complete and self._on_abort is not None:
            self._on_abort()
        _release(self._hub, self._client)
        note_closed(self._client.id, self._end, self._opened, self._events, self._bytes)


def _release(hub: Hub, client: Client) -> None:
    hub.unregister(client)


# A stream's end, logged the same way whoever ends it: its own thread (parked)
# or the hub's outlet (detached, sse_kit._outlet).


def note_expired(hub: Hub, client_id: str, end: str) -> None:
    """Count and log a stream that reached its :class:`Expiry`."""
    if end == IDENTITY_EXPIRED:
        hub.counters.add("identity_expired")
        log.info("sse_kit: client %r: its identity expired; it comes back through "
                 "authorization and resumes", client_id)
    else:
        hub.counters.add("expired")
        log.info("sse_kit: client %r reached max_age; it resumes on reconnect", client_id)


def note_end(client_id: str, end: str) -> None:
    """Log why a stream ends, where the reason needs a line of its own."""
    if end == SLOW:
        log.warning("sse_kit: cut slow client %r; it resumes from history", client_id)
    elif end == GONE:
        log.info("sse_kit: client %r went away", client_id)


def reason_text(reason: str) -> str:
    """An end reason as the closing line says it."""
    return "client gone" if reason == GONE else reason


def note_closed(client_id: str, why: str, opened: float, events: int, body_bytes: int) -> None:
    """The one line a stream logs when it is closed."""
    log.info("sse_kit: client %r disconnected (%s) after %.1fs: %d event(s), %d byte(s)",
             client_id, why, time.monotonic() - opened, events, body_bytes)

