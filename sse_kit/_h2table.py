"""The shared state of one HTTP/2 connection: its h2 state machine and its streams.

Every thread that writes to an HTTP/2 connection served by sse_kit
(:class:`sse_kit._h2.H2Session`) goes through its :class:`StreamTable`: pool
threads queue a response's headers and body (gunicorn's ``HTTP2Response``
calls :meth:`StreamTable.send_response_headers`, :meth:`~StreamTable.send_data`
and :meth:`~StreamTable.end_stream`), the hub thread queues an event stream's
events (:meth:`~StreamTable.queue_event`, through an
:class:`sse_kit._h2stream.H2Sink`), and the session thread feeds it what it
read (:meth:`~StreamTable.receive`) and takes the frames to write
(:meth:`~StreamTable.pump`). It also holds the session thread's mailbox: a
wake-up socket and the event streams posted to it.
"""

# design: see sse_kit._h2 for who owns what. Here, _lock guards the h2 state
# machine (_h2), every _Stream (its request body, the bytes waiting for window,
# its end), _streams, _ready, _highest, closed and refusing. Held briefly by the
# session thread, by pool threads and by the hub thread (which holds the
# client's lock already: the order is always Client._lock, then _lock, never
# the reverse). It also guards _guard and _in_flight (the flood limits, see
# sse_kit._h2guard) and flood. Nothing blocks, waits on a client or touches the
# socket while holding it; _space (over _lock) is where a pool thread waits for its
# response's bytes to go out.

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from ._client import DEFERRED, DROPPED, ENDED, WRITTEN
from ._h2guard import FloodGuard
from ._h2queue import ChunkQueue
from ._h2stream import H2Handover

if TYPE_CHECKING:
    from ._h2stream import H2Sink

__all__ = ["MAX_BODY", "OUT_BUFFER", "RESPONSE_BUFFER", "RequestHead", "StreamTable"]

log = logging.getLogger("sse_kit._h2")

# Bytes of one ordinary response that may wait for window before its pool
# thread waits too.
RESPONSE_BUFFER: Final = 256 * 1024
# Framed bytes waiting for the socket above which no more DATA is framed
# (streams keep their bytes in their own queue meanwhile).
OUT_BUFFER: Final = 256 * 1024
# Largest request body held for the application (it is read whole before the
# request is dispatched); a larger one is answered 413.
MAX_BODY: Final = 16 * 1024 * 1024
# Headers a HTTP/2 response must not carry (RFC 9113 section 8.2.2).
_CONNECTION_HEADERS: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"})


class RequestHead:
    """A complete request: its headers as gunicorn's ``HTTP2Request`` reads them
    from a stream, and its body."""

    __slots__ = ("body", "expect_continue", "headers", "priority_depends_on",
                 "priority_weight", "stream_id", "trailers")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.body = body  # the whole request body
        self.priority_weight = 16
        self.priority_depends_on = 0
        self.expect_continue = False
        self.trailers: list[tuple[str, str]] | None = None

    def get_pseudo_headers(self) -> dict[str, str]:
        """``:method``, ``:path``, ... as a dict."""
        return {name: value for name, value in self.headers if name.startswith(":")}

    def get_regular_headers(self) -> list[tuple[str, str]]:
        """Every other header, in order."""
        return [(name, value) for name, value in self.headers if not name.startswith(":")]


class _Stream:
    """One stream's state; every field guarded by the table's _lock."""

    __slots__ = ("body", "body_size", "dispatched", "end", "headers", "id", "pending",
                 "pending_events", "progress", "reset", "sent_headers", "sink", "trailers")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.id = stream_id
        self.headers = headers
        self.body: list[bytes] = []
        self.body_size = 0
        self.dispatched = False
        self.pending = ChunkQueue()  # response bytes waiting for window
        self.pending_events = 0  # events among them (an event stream's)
        self.progress = time.monotonic()  # when bytes last went into a DATA frame
        self.end = False  # END_STREAM goes after pending
        self.trailers: list[tuple[str, str]] | None = None
        self.reset = False  # reset (either side) or closed: nothing more is sent
        self.sent_headers = False
        self.sink: H2Sink | None = None  # set once it is a detached event stream


class StreamTable:
    """One HTTP/2 connection's h2 state machine and streams (see the module docstring).

    :param conn: the h2 state machine gunicorn set up for the connection.
    :param stall_timeout: seconds an ordinary response may wait for window
        before it is reset (its pool thread returns).
    """

    def __init__(self, conn: h2.connection.H2Connection, stall_timeout: float) -> None:
        self._h2 = conn
        self._stall_timeout = stall_timeout
        # See the design comment for what _lock guards and the lock order.
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._streams: dict[int, _Stream] = {}
        self._ready: dict[int, _Stream] = {}  # streams with bytes or an end to send
        self._highest = 0  # the highest stream ID the peer opened (for GOAWAY)
        self.closed = False  # nothing more is sent or accepted
        self.refusing = False  # new streams are refused (the connection drains)
        self._guard = FloodGuard()
        self._in_flight = 0  # requests handed to the pool whose job has not returned
        self.flood: str | None = None  # why the connection was closed as a flood
        # The session thread's mailbox (any thread posts; a deque needs no lock).
        self._posted: collections.deque[H2Sink] = collections.deque()
        # _awake: True while a wake-up byte is in the pair or the session thread
        # is about to look at what changed; saves a write per event while it is busy.
        self._awake = False
        self.wake_r, self._wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- any thread ---------------------------------------------------------------

    def wake(self) -> None:
        """Make the session thread look at what changed. Never blocks."""
        if not self._awake:
            self._awake = True
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def post(self, sink: H2Sink) -> None:
        """Ask the session thread to look at *sink* (new, or ending)."""
        self._posted.append(sink)
        self.wake()

    # -- pool threads: gunicorn's HTTP2Response writes through these ------------

    def send_response_headers(self, stream_id: int, status: int,
                              headers: Iterable[tuple[str, str]], end_stream: bool = False
                              ) -> bool:
        """Queue the response's HEADERS; False if the stream is gone."""
        fields = [(":status", str(status))]
        fields += [(name.lower(), str(value)) for name, value in headers
                   if name.lower() not in _CONNECTION_HEADERS]
        with self._lock:
            st = self._open(stream_id)
            if st is None or st.sent_headers:
                return False
            st.sent_headers = True
            try:
                self._h2.send_headers(stream_id, fields, end_stream=end_stream)
            except h2.exceptions.ProtocolError:  # reset by the peer meanwhile
                self._forget(st)
                return False
            if end_stream:
                self._forget(st)
        self.wake()
        return True

    def send_informational(self, stream_id: int, status: int,
                           headers: Iterable[tuple[str, str]]) -> None:
        """Queue a 1xx response (e.g. 103 Early Hints)."""
        fields = [(":status", str(status))] + [(n.lower(), str(v)) for n, v in headers]
        with self._lock, contextlib.suppress(h2.exceptions.ProtocolError):
            if self._open(stream_id) is not None:
                self._h2.send_headers(stream_id, fields)
        self.wake()

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> bool:
        """Queue body bytes; waits while too many of them wait for window.
        False if the stream is gone (reset, or stalled past the stall timeout)."""
        with self._space:
            st = self._open(stream_id)
            if st is None:
                return False
            st.pending.append(bytes(data))  # the caller may reuse a mutable buffer
            st.end = st.end or end_stream
            self._ready[stream_id] = st
        self.wake()
        deadline = time.monotonic() + self._stall_timeout
        with self._space:
            while st.pending.size > RESPONSE_BUFFER and not st.reset:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._reset(st, h2.errors.ErrorCodes.CANCEL)
                    break
                self._space.wait(remaining)
            ok = not st.reset
        if not ok:
            self.wake()
        return ok

    def end_stream(self, stream_id: int, trailers: list[tuple[str, str]] | None = None) -> bool:
        """End the response after its queued bytes (with *trailers*, if any).
        A detached event stream is ended by its sink, not here."""
        with self._lock:
            st = self._open(stream_id)
            if st is None:
                return False
            if st.sink is None:
                st.end = True
                st.trailers = [(n.lower(), str(v)) for n, v in trailers or ()] or None
                self._ready[stream_id] = st
        self.wake()
        return True

    def send_error(self, stream_id: int, status: int) -> None:
        """Answer *status* if nothing was sent yet, else reset the stream."""
        if not self.send_response_headers(stream_id, status, [("content-length", "0")],
                                          end_stream=True):
            self.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)

    def reset_stream(self, stream_id: int, code: int) -> None:
        """Reset a stream that is still open."""
        with self._lock:
            st = self._streams.get(stream_id)
            if st is not None:
                self._reset(st, code)
        self.wake()

    def finished(self, stream_id: int) -> None:
        """The pool job of *stream_id* returned: a response it left unfinished is reset."""
        with self._lock:
            st = self._streams.get(stream_id)
            if st is None or st.sink is not None or st.end:
                return
            self._reset(st, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.wake()

    def open_upgraded(self, head: RequestHead) -> None:
        """Stream 1 is the request that asked for ``Upgrade: h2c``, complete
        (h2 opened it, half closed, when the upgrade began); it is dispatched now."""
        with self._lock:
            self._streams[head.stream_id] = st = _Stream(head.stream_id, head.headers)
            st.dispatched = True
            self._highest = max(self._highest, head.stream_id)
            self._in_flight += 1

    def job_done(self) -> None:
        """A request handed to the pool is done with (served, skipped or refused)."""
        with self._lock:
            self._in_flight -= 1

    def handover(self, response: Any) -> H2Handover | None:
        """For a detaching event stream (``environ[DETACH_KEY]``, see
        sse_kit._detach): its HTTP/2 stream, once gunicorn's *response* has
        sent its headers; ``None`` if it cannot detach now."""
        stream_id = response.stream_id
        if not response.headers_sent or not self.is_open(stream_id):
            return None
        return H2Handover(self, stream_id)

    def adopt(self, stream_id: int, sink: H2Sink) -> None:
        """Make *sink* the writer of *stream_id* (an event stream that detached).
        If the stream is gone meanwhile, the session thread ends the sink."""
        with self._lock:
            st = self._open(stream_id)
            if st is not None:
                st.sink = sink
                st.progress = time.monotonic()
        self.post(sink)

    def is_open(self, stream_id: int) -> bool:
        """Whether *stream_id* may still be written to."""
        st = self._streams.get(stream_id)  # a dict read: atomic, no lock needed
        return st is not None and not st.reset and not self.closed

    # -- the hub thread (through an H2Sink, with the client's lock held) ---------

    def queue_event(self, stream_id: int, data: bytes, events: int, max_bytes: int,
                    max_events: int) -> int:
        """Queue an event stream's bytes (*events* events) unless more than
        *max_bytes* bytes or *max_events* events would then wait for window.

        :returns: WRITTEN (nothing was waiting), DEFERRED (queued behind bytes
            waiting), DROPPED (no room: nothing queued) or ENDED (the stream is over).
        """
        with self._lock:
            st = self._streams.get(stream_id)
            if st is None or st.reset or st.end or self.closed:
                return ENDED
            waiting = st.pending.size
            if waiting and (waiting + len(data) > max_bytes
                            or st.pending_events + events > max_events):
                return DROPPED
            if not waiting:
                st.progress = time.monotonic()  # nothing was stuck until now
            st.pending.append(data)  # the fan-out's own bytes, never copied
            st.pending_events += events
            self._ready[stream_id] = st
        self.wake()
        return DEFERRED if waiting else WRITTEN

    # -- the session thread ----------------------------------------------------

    def woken(self) -> None:
        """The wake-up byte was seen. In this order: the bytes out, then _awake
        cleared, then the caller looks at everything: a later wake() writes anew."""
        with contextlib.suppress(OSError):
            while self.wake_r.recv(4096):
                pass
        self._awake = False

    def take_posted(self) -> H2Sink | None:
        """The next event stream posted to the session thread, or ``None``."""
        return self._posted.popleft() if self._posted else None

    @property
    def has_posted(self) -> bool:
        """Whether an event stream waits to be looked at."""
        return bool(self._posted)

    def open_streams(self) -> int:
        """Streams not over yet (requests being served, event streams open)."""
        with self._lock:
            return len(self._streams)

    def end_event_stream(self, sink: H2Sink, tail: bytes, cut: bool) -> bool:
        """End *sink*'s stream: reset it at once when *cut*, else send *tail*
        (the retry: hint, or nothing) and END_STREAM after what is queued.
        True when the stream is over already (reset, or gone)."""
        with self._lock:
            st = self._streams.get(sink.stream_id)
            if st is None or st.reset or self.closed:
                return True
            if cut:
                self._reset(st, h2.errors.ErrorCodes.CANCEL)
                return True
            st.pending.append(tail)
            st.end = True
            self._ready[st.id] = st
            return False

    def waiting(self, stream_id: int) -> tuple[int, float] | None:
        """Bytes of *stream_id* waiting for window, and when bytes of it last
        went out; ``None`` once the stream is over."""
        with self._lock:
            st = self._streams.get(stream_id)
            if st is None or st.reset:
                return None
            return st.pending.size, st.progress

    def _open(self, stream_id: int) -> _Stream | None:
        """The stream, if it may still be written to; called with _lock held."""
        st = self._streams.get(stream_id)
        return None if st is None or st.reset or st.end or self.closed else st

    def _reset(self, st: _Stream, code: int) -> None:
        """Reset *st* (RST_STREAM); called with _lock held."""
        if not st.reset:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.reset_stream(st.id, error_code=code)
        self._forget(st)

    def _forget(self, st: _Stream) -> None:
        """*st* is over; called with _lock held. Its sink, if any, is finished
        by the session thread (posted to it here)."""
        st.reset = True
        st.pending.clear()
        self._streams.pop(st.id, None)
        self._ready.pop(st.id, None)
        self._space.notify_all()
        if st.sink is not None:
            self._posted.append(st.sink)  # the session thread finishes it

    def receive(self, data: bytes, out: bytearray
                ) -> tuple[bool, list[RequestHead], list[H2Sink]]:
        """Feed *data* (read from the socket) to h2; what h2 answers goes to *out*.

        :returns: whether the connection lives on, the requests now complete
            (to dispatch, with their bodies), and the event streams the peer reset.
        """
        dispatch: list[_Stream] = []
        gone: list[H2Sink] = []
        with self._lock:
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.flood = FloodGuard.protocol_error(exc)
                if self.flood is None:
                    log.info("sse_kit HTTP/2: protocol error from the peer (%s); closing", exc)
                code = (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM if self.flood else
                        getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR))
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.close_connection(error_code=code)
                out += self._h2.data_to_send()
                return False, [], []
            alive = True
            now = time.monotonic()
            for event in events:
                self.flood = self._guard.check(event, now)
                if self.flood is not None:
                    break
                alive = self._on_event(event, dispatch, gone) and alive
            if self.flood is None and dispatch:
                self._in_flight += len(dispatch)
                self.flood = FloodGuard.queue(self._in_flight,
                                              self._h2.local_settings.max_concurrent_streams)
            if self.flood is not None:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                              last_stream_id=self._highest)
                out += self._h2.data_to_send()
                self.closed = True
                return False, [], gone
            out += self._h2.data_to_send()
            heads = [RequestHead(st.id, st.headers, b"".join(st.body)) for st in dispatch]
            for st in dispatch:
                st.body.clear()
        return alive, heads, gone

    def _on_event(self, event: h2.events.Event, dispatch: list[_Stream],
                  gone: list[H2Sink]) -> bool:
        """Act on one h2 event (with _lock held); False: the connection is over."""
        st: _Stream | None
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            self._highest = max(self._highest, sid)
            headers = [(_text(n), _text(v)) for n, v in event.headers or ()]
            if self.refusing:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.reset_stream(sid, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
                return True
            new = self._streams[sid] = _Stream(sid, headers)
            if event.stream_ended is not None:
                new.dispatched = True
                dispatch.append(new)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
                self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
            st = self._streams.get(sid)
            if st is not None and not st.dispatched and event.data:
                st.body.append(event.data)
                st.body_size += len(event.data)
                if st.body_size > MAX_BODY:
                    st.dispatched = True
                    st.body.clear()
                    st.sent_headers = True
                    self._h2.send_headers(sid, [(":status", "413"), ("content-length", "0")],
                                          end_stream=True)
                    self._forget(st)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.TrailersReceived)):
            st = self._streams.get(event.stream_id)
            if st is not None and not st.dispatched:
                st.dispatched = True
                dispatch.append(st)
        elif isinstance(event, h2.events.StreamReset):
            st = self._streams.get(event.stream_id)
            if st is not None:
                if st.sink is not None:
                    gone.append(st.sink)
                self._forget(st)
        elif isinstance(event, h2.events.ConnectionTerminated):
            if event.error_code == h2.errors.ErrorCodes.NO_ERROR and self._streams:
                self.refusing = True  # the peer opens no more: finish what is open
                return True
            return False
        return True

    def pump(self, out: bytearray) -> None:
        """Move waiting bytes into DATA frames on *out*, as far as the windows
        and OUT_BUFFER allow; END_STREAM after the last of a stream's bytes.
        The lock is taken per stream, so a writer never waits for a whole pass."""
        conn = self._h2
        with self._lock:
            ready = list(self._ready.values())
        now = time.monotonic()
        for st in ready:
            if len(out) >= OUT_BUFFER:
                break
            with self._lock:
                if st.reset:
                    continue
                try:
                    self._frame(conn, st, out, now)
                except h2.exceptions.ProtocolError:  # closed under us (a reset crossing)
                    self._forget(st)
                out += conn.data_to_send()
                self._space.notify_all()

    def _frame(self, conn: h2.connection.H2Connection, st: _Stream, out: bytearray,
               now: float) -> None:
        """:meth:`pump` for one stream; called with _lock held."""
        while st.pending.size and len(out) < OUT_BUFFER:
            size = min(conn.local_flow_control_window(st.id), conn.max_outbound_frame_size,
                       st.pending.size)
            if size <= 0:
                return
            conn.send_data(st.id, st.pending.take(size))
            st.progress = now
            out += conn.data_to_send()
        if st.pending.size:
            return
        st.pending_events = 0
        self._ready.pop(st.id, None)
        if st.end:
            if st.trailers:
                conn.send_headers(st.id, st.trailers, end_stream=True)
            else:
                conn.end_stream(st.id)
            self._forget(st)

    def goaway(self, out: bytearray) -> None:
        """Close the connection with GOAWAY naming the last stream the peer
        opened; nothing more is sent after it."""
        with self._lock:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection(last_stream_id=self._highest)
            out += self._h2.data_to_send()
            self.closed = True

    def reset_all(self) -> None:
        """Reset every stream still open (a drain that ran out of time)."""
        with self._lock:
            for st in list(self._streams.values()):
                self._reset(st, h2.errors.ErrorCodes.CANCEL)

    def close(self) -> None:
        """The connection is gone: every stream is over, the mailbox closes."""
        with self._lock:
            self.closed = True
            for st in list(self._streams.values()):
                self._forget(st)
        self.wake_r.close()
        self._wake_w.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
