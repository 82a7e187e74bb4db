"""Event streams on an HTTP/2 connection: what the hub side writes, and when
they end (the HTTP/2 counterpart of :mod:`sse_kit._outlet`).

An event stream served by :class:`sse_kit._h2.H2Session` detaches after its
first chunk, as on HTTP/1.1: its pool thread returns, and an :class:`H2Sink`
becomes the client's connection. The hub thread (or a caller of
``Client.send``) queues its events in the connection's
:class:`sse_kit._h2table.StreamTable`, and the session thread sends them as
DATA frames as the stream's flow-control window allows; :class:`EventStreams`, run
by the session thread, keeps every such stream's deadlines (keep-alive,
``max_age``, ``write_timeout``) and carries out its end: a clean END_STREAM
after what is queued (with a short ``retry:`` hint after a shutdown or
``max_age``), or RST_STREAM for a stream cut as slow, timed out or gone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

import h2.errors

from ._client import (
    COME_BACK,
    DEFERRED,
    DROPPED,
    ENDED,
    GONE,
    SLOW,
    TIMED_OUT,
    UNBOUNDED,
    WRITTEN,
    Client,
    overflow,
)
from ._connection import Expiry, note_closed, note_end, note_expired, reason_text
from ._outlet import LINGER, MAX_SWEEP
from ._wire import encode_comment, encode_retry

if TYPE_CHECKING:
    from ._h2table import StreamTable
    from ._hub import Hub

__all__ = ["EventStreams", "H2Handover", "H2Sink"]

log = logging.getLogger("sse_kit._connection")  # one logger for a stream's life, any path

# End reasons that reset the stream at once instead of sending what is queued:
# the peer is not reading (or gone), and a resume brings the events back.
_CUT: Final = frozenset({SLOW, TIMED_OUT, GONE})
# Sweep period while a stream lingers on its end.
_LINGER_SWEEP: Final = 0.1


class H2Sink:
    """One detached event stream on an HTTP/2 connection (see the module docstring).

    :meth:`send` and :meth:`start` are called with the client's lock held.
    """

    # deliver() hands this sink its events unframed (HTTP/2 has its own framing).
    framed: Final = False

    __slots__ = ("_max_bytes", "_max_events", "_policy", "_table", "body_bytes", "client",
                 "closing_since", "events", "expires", "finished", "hub", "opened",
                 "peer_gone", "stream_id")

    def __init__(self, table: StreamTable, stream_id: int, hub: Hub, client: Client, *,
                 expires: Expiry | None, events: int, body_bytes: int, opened: float) -> None:
        self._table = table
        self.stream_id = stream_id
        self.hub = hub
        self.client = client
        limits = client.limits()
        self._policy = limits.policy
        self._max_bytes = limits.byte_bound
        self._max_events = limits.max_events
        self.expires = expires
        self.events = events
        self.body_bytes = body_bytes
        self.opened = opened
        self.peer_gone = False
        # Session thread only: when the end began (the linger runs from then),
        # and whether the stream is finished (unregistered, logged).
        self.closing_since: float | None = None
        self.finished = False

    def send(self, chunk: bytes, events: int, may_cut: bool, now: float) -> int:
        """Queue *chunk* (*events* events) on the stream; never blocks.

        :returns: WRITTEN (nothing was waiting before it), DEFERRED (queued
            behind bytes waiting for window), DROPPED or CUT (no room within
            the client's limits, per ``slow_client``), ENDED (the stream is gone).
        """
        outcome = self._table.queue_event(self.stream_id, chunk, events, self._max_bytes,
                                            self._max_events)
        if outcome == DROPPED:
            return overflow(self._policy, may_cut)
        if outcome == ENDED:
            self.peer_gone = True
            return ENDED
        self.events += events
        self.body_bytes += len(chunk)
        return outcome

    def start(self, frames: list[bytes]) -> None:
        """Take over what the client's outbox held when it detached, in order."""
        if frames:
            chunk = b"".join(frames)
            if self._table.queue_event(self.stream_id, chunk, 0, UNBOUNDED, UNBOUNDED) != ENDED:
                self.events += len(frames)
                self.body_bytes += len(chunk)

    def post_end(self) -> None:
        """The stream is ending (the client's end is set). Any thread; never blocks."""
        self._table.post(self)

    def peer_closed(self) -> bool:
        """Whether the peer has reset the stream or closed the connection."""
        return self.peer_gone or not self._table.is_open(self.stream_id)


class H2Handover:
    """What a detaching event stream gets from an HTTP/2 response (see
    :data:`sse_kit._connection.Detach`): :meth:`adopt` makes an :class:`H2Sink`
    its connection."""

    def __init__(self, table: StreamTable, stream_id: int) -> None:
        self._table = table
        self._stream_id = stream_id

    def adopt(self, hub: Hub, client: Client, *, expires: Expiry | None, events: int,
              body_bytes: int, opened: float) -> None:
        """From now on every event for *client* is queued on the HTTP/2 stream;
        the session ends it (and unregisters the client) when it is over."""
        sink = H2Sink(self._table, self._stream_id, hub, client, expires=expires,
                      events=events, body_bytes=body_bytes, opened=opened)
        client._detach_to(sink)
        hub.counters.add("detached")
        self._table.adopt(self._stream_id, sink)


class EventStreams:
    """The event streams of one HTTP/2 connection; the session thread's alone."""

    def __init__(self, table: StreamTable) -> None:
        self._table = table
        self._sinks: set[H2Sink] = set()
        self._period = MAX_SWEEP
        self._lingering = 0  # streams whose end is queued behind bytes
        self._next_sweep = time.monotonic() + MAX_SWEEP

    def __len__(self) -> int:
        return len(self._sinks)

    def timeout(self, now: float) -> float:
        """Seconds until the next sweep."""
        return max(0.0, self._next_sweep - now)

    def look_at(self, sink: H2Sink) -> None:
        """A new stream, one whose end was posted, or one whose HTTP/2 stream is over."""
        if sink.finished:
            return
        if sink not in self._sinks:
            self._sinks.add(sink)
            hub = sink.hub
            self._period = min(self._period, hub.keepalive_interval / 4,
                               (hub.write_timeout or MAX_SWEEP) / 4)
            self._next_sweep = min(self._next_sweep, time.monotonic() + self._period)
        client = sink.client
        if self._table.waiting(sink.stream_id) is None:  # reset, ended or gone
            if client._finish(GONE):
                sink.peer_gone = True
            self.finish(sink)
        elif client.end_reason is not None and sink.closing_since is None:
            reason = client.end_reason
            tail = encode_retry(sink.hub.shutdown_retry) if reason in COME_BACK else b""
            if self._table.end_event_stream(sink, tail, cut=reason in _CUT):
                self.finish(sink)
            else:
                sink.closing_since = time.monotonic()
                self._lingering += 1

    def sweep(self, now: float) -> None:
        """Keep every stream's deadlines, at most every sweep period."""
        if now < self._next_sweep:
            return
        keepalive: bytes | None = None
        for sink in list(self._sinks):
            client, hub = sink.client, sink.hub
            if sink.closing_since is not None:
                if now - sink.closing_since >= LINGER:
                    self._table.reset_stream(sink.stream_id, h2.errors.ErrorCodes.CANCEL)
                continue
            if client.end_reason is not None:
                continue  # its end is posted
            if sink.expires is not None and now >= sink.expires.at:
                if client._finish(sink.expires.end):
                    note_expired(hub, client.id, sink.expires.end)
                continue
            state = self._table.waiting(sink.stream_id)
            if state is None:
                continue  # over: posted to look_at
            waiting, progress = state
            if waiting:
                if hub.write_timeout is not None and now - progress >= hub.write_timeout:
                    hub.counters.add("write_timeouts")
                    log.warning(
                        "sse_kit: cut client %r: nothing could be written for %gs "
                        "(write_timeout); it resumes from history", client.id, hub.write_timeout)
                    client._finish(TIMED_OUT)
            elif now - progress >= hub.keepalive_interval:
                if keepalive is None:
                    keepalive = encode_comment(f"keepalive {int(time.time())}")
                with client._lock:
                    outcome = ENDED if client.end_reason is not None else sink.send(
                        keepalive, 0, False, now)
                if outcome in (WRITTEN, DEFERRED):
                    hub.counters.add("keepalives")
        self._next_sweep = now + (_LINGER_SWEEP if self._lingering else self._period)

    def finish(self, sink: H2Sink) -> None:
        """The stream is over: unregister its client and log its end; once."""
        if sink.finished:
            return
        sink.finished = True
        self._sinks.discard(sink)
        if sink.closing_since is not None:
            self._lingering -= 1
        client = sink.client
        end = client.end_reason or GONE
        note_end(client.id, end)
        sink.hub.unregister(client)
        note_closed(client.id, reason_text(end), sink.opened, sink.events, sink.body_bytes)

    def close_all(self) -> None:
        """The connection is gone: every stream ends as gone."""
        for sink in list(self._sinks):
            sink.peer_gone = True
            sink.client._finish(GONE)
            self.finish(sink)
