"""One HTTP/2 connection, its streams served at once (sse_kit's worker class).

gunicorn's gthread worker serves the requests of one HTTP/2 connection one
after another on one thread, so an open event stream there blocks every other
request of the connection (a browser sends all of a page's requests over one).
:class:`sse_kit.gunicorn.ThreadWorker` hands such a connection to an
:class:`H2Session` instead: its thread reads the frames, hands each request to
the worker's thread pool as soon as it is complete, and writes every response
as DATA frames, within HTTP/2's flow-control windows. An event stream detaches
after its first chunk, as on HTTP/1.1: it becomes an
:class:`sse_kit._h2stream.H2Sink` and holds no thread of the pool.
"""

# design:
# Who owns what on one HTTP/2 connection.
#
#   The session thread ("sse_kit-h2", one per connection) is the only thread
#   that reads or writes the socket (a TLS socket's state must not be shared
#   between threads) and the only one that sends what h2 has framed. It owns
#   the selector, the outgoing byte buffer (_outbuf) and the set of event
#   streams (sse_kit._h2stream.EventStreams), whose deadlines it keeps.
#
#   _lock guards the h2 state machine (_h2) and every _Stream: its request
#   body, the bytes waiting for window (pending) and its end. Held briefly by
#   the session thread (to feed h2 what it read and to move pending bytes into
#   DATA frames), by pool threads (to queue a response's headers and body), by
#   the hub thread (to queue an event stream's events, with the client's lock
#   already held: the order is always Client._lock, then _lock, never the
#   reverse). Nothing blocks or touches the socket while holding it.
#
#   A pool thread writing an ordinary response waits (on _space, over _lock)
#   while more than RESPONSE_BUFFER bytes of it wait for window, as it would
#   wait on a full socket over HTTP/1.1. An event stream never waits: beyond
#   the hub's client_buffer/client_buffer_bytes its events are dropped or the
#   stream is cut (RST_STREAM), per slow_client, like a slow HTTP/1.1 reader.
#   Its siblings are not stalled: each stream has its own window and queue,
#   and DATA frames of every stream share _outbuf, kept under OUT_BUFFER bytes.
#
# Shutdown: the worker calls drain(): new streams are refused (REFUSED_STREAM,
# which a client retries on another connection), the hub ends the event
# streams (a retry: hint, END_STREAM), ordinary responses finish; then GOAWAY
# and the socket is closed. Streams still open after the drain timeout are reset.

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from ._client import DEFERRED, DROPPED, ENDED, GONE, WRITTEN
from ._h2stream import EventStreams, H2Handover

if TYPE_CHECKING:
    from ._h2stream import H2Sink

__all__ = ["H2Session", "RequestHead"]

log = logging.getLogger(__name__)

# Bytes of one ordinary response that may wait for window before its pool
# thread waits too.
RESPONSE_BUFFER: Final = 256 * 1024
# Framed bytes waiting for the socket above which no more DATA is framed
# (streams keep their bytes in their own queue meanwhile).
OUT_BUFFER: Final = 256 * 1024
# Largest request body held for the application (it is read whole before the
# request is dispatched); a larger one is answered 413.
MAX_BODY: Final = 16 * 1024 * 1024
# Bytes read from the socket per recv().
_READ_SIZE: Final = 65536
# Bytes handed to one send(): after a TLS "want write", the same bytes (or
# more) are offered again, as OpenSSL asks.
_WRITE_SIZE: Final = 65536
# Seconds a closing connection reads what the peer still sends after GOAWAY.
_CLOSE_LINGER: Final = 1.0
# Headers a HTTP/2 response must not carry (RFC 9113 section 8.2.2).
_CONNECTION_HEADERS: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"})
_WOULD_BLOCK: Final = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
                       InterruptedError)


class RequestHead:
    """A request's headers as gunicorn's ``HTTP2Request`` reads them from a stream."""

    __slots__ = ("expect_continue", "headers", "priority_depends_on", "priority_weight",
                 "stream_id", "trailers")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.stream_id = stream_id
        self.headers = headers
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
    """One stream's state; every field guarded by the session's _lock."""

    __slots__ = ("body", "body_size", "dispatched", "end", "headers", "id", "pending",
                 "pending_events", "progress", "reset", "sent_headers", "sink", "trailers")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.id = stream_id
        self.headers = headers
        self.body: list[bytes] = []
        self.body_size = 0
        self.dispatched = False
        self.pending = bytearray()  # response bytes waiting for window
        self.pending_events = 0  # events among them (an event stream's)
        self.progress = time.monotonic()  # when bytes last went into a DATA frame
        self.end = False  # END_STREAM goes after pending
        self.trailers: list[tuple[str, str]] | None = None
        self.reset = False  # reset (either side) or closed: nothing more is sent
        self.sent_headers = False
        self.sink: H2Sink | None = None  # set once it is a detached event stream


Serve = Callable[["H2Session", RequestHead, bytes], None]
"""Runs one request on a pool thread (the worker's glue, sse_kit.gunicorn)."""
Submit = Callable[[Callable[[], None]], bool]
"""Hands a job to the worker's thread pool; False when the pool is shut down."""


class H2Session:
    """The owner of one HTTP/2 connection (see the module's design).

    :param sock: the connection (TLS or cleartext), its preface and SETTINGS done.
    :param conn: the h2 state machine gunicorn set up for it.
    :param serve: runs a complete request on a pool thread.
    :param submit: hands a job to the pool.
    :param on_close: called once, by the session thread, when the connection is closed.
    :param idle_timeout: seconds a connection with no stream open is kept, or ``None``.
    :param stall_timeout: seconds the socket (or an ordinary response's window)
        may take nothing before the connection (or the response) is given up.
    :param drain_timeout: seconds a draining connection waits for its streams.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: h2.connection.H2Connection,
        *,
        serve: Serve,
        submit: Submit,
        on_close: Callable[[H2Session], None],
        idle_timeout: float | None,
        stall_timeout: float,
        drain_timeout: float,
    ) -> None:
        self._sock = sock
        self._h2 = conn
        self._serve = serve
        self._submit = submit
        self._on_close = on_close
        self._idle_timeout = idle_timeout
        self._stall_timeout = stall_timeout
        self._drain_timeout = drain_timeout
        # See the design comment for what _lock guards and the lock order.
        self._lock = threading.Lock()
        # Pool threads waiting for an ordinary response's bytes to go out.
        self._space = threading.Condition(self._lock)
        self._streams: dict[int, _Stream] = {}
        self._ready: dict[int, _Stream] = {}  # streams with bytes or an end to send
        self._highest = 0  # the highest stream ID opened by the peer (for GOAWAY)
        self.closed = False  # set under _lock: nothing more is sent or accepted
        # Session thread only:
        self._outbuf = bytearray()
        self._out_progress = time.monotonic()
        self._idle_since: float | None = time.monotonic()
        self._events = EventStreams(self)
        self._drain_deadline: float | None = None
        self._goaway_sent = False
        # Any thread: event streams to look at (new or ending), and the wake-up.
        self._posted: collections.deque[H2Sink] = collections.deque()
        self._draining = False
        # _awake: True while a wake-up byte is in the pair or the session thread
        # is about to look at what changed; saves a write per event while it is busy.
        self._awake = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="sse_kit-h2", daemon=True)

    def start(self) -> None:
        """Start the session thread; from now on it owns the socket."""
        self._sock.setblocking(False)
        self._thread.start()

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

    def drain(self) -> None:
        """Refuse new streams, let the open ones end, then close (see the
        design). Safe in a signal handler: it only sets a flag and wakes."""
        self._draining = True
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
            self._h2.send_headers(stream_id, fields, end_stream=end_stream)
            if end_stream:
                self._forget(st)
        self.wake()
        return True

    def send_informational(self, stream_id: int, status: int,
                           headers: Iterable[tuple[str, str]]) -> None:
        """Queue a 1xx response (e.g. 103 Early Hints)."""
        fields = [(":status", str(status))] + [(n.lower(), str(v)) for n, v in headers]
        with self._lock:
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
            st.pending += data
            st.end = st.end or end_stream
            self._ready[stream_id] = st
        self.wake()
        deadline = time.monotonic() + self._stall_timeout
        with self._space:
            while len(st.pending) > RESPONSE_BUFFER and not st.reset:
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
            waiting = len(st.pending)
            if waiting and (waiting + len(data) > max_bytes
                            or st.pending_events + events > max_events):
                return DROPPED
            if not waiting:
                st.progress = time.monotonic()  # nothing was stuck until now
            st.pending += data
            st.pending_events += events
            self._ready[stream_id] = st
        self.wake()
        return DEFERRED if waiting else WRITTEN

    # -- the session thread ----------------------------------------------------

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
            st.pending += tail
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
            return len(st.pending), st.progress

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

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        selector.register(self._sock, selectors.EVENT_READ, self)
        writing = False
        try:
            alive = self._flush()
            while alive:
                for key, mask in selector.select(self._timeout()):
                    if key.data is None:
                        # In this order: the bytes out, then _awake cleared, then
                        # _step(): a wake() after the clear writes a new byte.
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        self._awake = False
                    elif mask & selectors.EVENT_READ:
                        alive = self._read() and alive
                alive = self._step() and alive
                if writing != bool(self._outbuf):
                    writing = bool(self._outbuf)
                    selector.modify(self._sock, selectors.EVENT_READ | (
                        selectors.EVENT_WRITE if writing else 0), self)
        except Exception:  # a bug must not leave the connection open forever
            log.exception("sse_kit HTTP/2: connection failed; closing it")
        finally:
            selector.close()
            self._close()

    def _timeout(self) -> float:
        if self._posted:
            return 0.0
        timeout = self._events.timeout(time.monotonic())
        return min(timeout, 0.05) if self._draining else timeout

    def _step(self) -> bool:
        """Everything but reading, after each wake-up; False: close now."""
        events = self._events
        while self._posted:
            events.look_at(self._posted.popleft())
        self._pump()
        now = time.monotonic()
        events.sweep(now)
        if not self._flush():
            return False
        if self._outbuf and now - self._out_progress > self._stall_timeout:
            log.info("sse_kit HTTP/2: the peer took nothing for %gs; closing the connection",
                     self._stall_timeout)
            return False
        with self._lock:
            open_streams = len(self._streams)
        if open_streams or len(events):
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif self._idle_timeout and now - self._idle_since > self._idle_timeout:
            return self._goaway()
        if self._draining:
            return self._drain_step(now, open_streams)
        return True

    def _drain_step(self, now: float, open_streams: int) -> bool:
        if self._drain_deadline is None:
            self._drain_deadline = now + self._drain_timeout
        if open_streams and now < self._drain_deadline:
            return True
        with self._lock:
            for st in list(self._streams.values()):
                self._reset(st, h2.errors.ErrorCodes.CANCEL)
        return self._goaway()

    def _goaway(self) -> bool:
        """Send GOAWAY (the last stream served), flush briefly; False (close)."""
        with self._lock:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection(last_stream_id=self._highest)
            self._outbuf += self._h2.data_to_send()
            self.closed = True
        self._goaway_sent = True
        deadline = time.monotonic() + 1.0
        with selectors.DefaultSelector() as waiter:
            waiter.register(self._sock, selectors.EVENT_WRITE)
            while self._flush() and self._outbuf and time.monotonic() < deadline:
                waiter.select(max(0.0, deadline - time.monotonic()))
        return False

    def _read(self) -> bool:
        """Read what the peer sent and act on it; False once it has gone."""
        while True:
            try:
                data = self._sock.recv(_READ_SIZE)
            except _WOULD_BLOCK:
                return True
            except OSError:
                return False
            if not data:
                return False
            if not self._receive(data):
                return False

    def _receive(self, data: bytes) -> bool:
        dispatch: list[_Stream] = []
        gone: list[H2Sink] = []
        with self._lock:
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                log.info("sse_kit HTTP/2: protocol error from the peer (%s); closing", exc)
                code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.close_connection(error_code=code)
                self._outbuf += self._h2.data_to_send()
                self._flush()
                return False
            alive = True
            for event in events:
                alive = self._on_event(event, dispatch, gone) and alive
            self._outbuf += self._h2.data_to_send()
        for st in dispatch:
            self._dispatch(st)
        for sink in gone:
            sink.peer_gone = True
            sink.client._finish(GONE)
        return alive

    def _on_event(self, event: h2.events.Event, dispatch: list[_Stream],
                  gone: list[H2Sink]) -> bool:
        """Act on one h2 event (with _lock held); False: the connection is over."""
        st: _Stream | None
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            self._highest = max(self._highest, sid)
            headers = [(_text(n), _text(v)) for n, v in event.headers or ()]
            if self._draining:
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
                self._draining = True  # the peer opens no more: finish what is open
                return True
            return False
        return True

    def _dispatch(self, st: _Stream) -> None:
        head = RequestHead(st.id, st.headers)
        body = b"".join(st.body)
        st.body.clear()
        if not self._submit(lambda: self._serve(self, head, body)):
            self.reset_stream(st.id, h2.errors.ErrorCodes.REFUSED_STREAM)

    def _pump(self) -> None:
        """Move waiting bytes into DATA frames, as far as the windows and
        OUT_BUFFER allow; END_STREAM after the last of a stream's bytes."""
        conn = self._h2
        with self._lock:
            now = time.monotonic()
            for st in list(self._ready.values()):
                if len(self._outbuf) >= OUT_BUFFER:
                    break
                try:
                    while st.pending and len(self._outbuf) < OUT_BUFFER:
                        size = min(conn.local_flow_control_window(st.id),
                                   conn.max_outbound_frame_size, len(st.pending))
                        if size <= 0:
                            break
                        conn.send_data(st.id, bytes(st.pending[:size]))
                        del st.pending[:size]
                        st.progress = now
                        self._outbuf += conn.data_to_send()
                    if not st.pending:
                        st.pending_events = 0
                        del self._ready[st.id]
                        if st.end:
                            if st.trailers:
                                conn.send_headers(st.id, st.trailers, end_stream=True)
                            else:
                                conn.end_stream(st.id)
                            self._forget(st)
                except h2.exceptions.ProtocolError:  # closed under us (a reset crossing)
                    self._forget(st)
            self._outbuf += conn.data_to_send()
            self._space.notify_all()

    def _flush(self) -> bool:
        """Write what the socket takes now; False if the connection is dead."""
        out = self._outbuf
        while out:
            try:
                sent = self._sock.send(out[:_WRITE_SIZE])
            except _WOULD_BLOCK:
                return True
            except OSError:
                return False
            if not sent:
                return True
            del out[:sent]
            self._out_progress = time.monotonic()
        return True

    def _close(self) -> None:
        """The connection is over: every stream ends, the socket closes. Once."""
        with self._lock:
            self.closed = True
            for st in list(self._streams.values()):
                self._forget(st)
        while self._posted:
            self._events.look_at(self._posted.popleft())
        self._events.close_all()
        _close_socket(self._sock, graceful=self._goaway_sent)
        self._wake_r.close()
        self._wake_w.close()
        self._on_close(self)


def _close_socket(sock: socket.socket, graceful: bool) -> None:
    """Close *sock*; after a GOAWAY, half-close first and read what the peer
    still sends (briefly), so the kernel does not answer unread bytes with a
    reset that would destroy the GOAWAY in flight (as gunicorn's close_graceful)."""
    with contextlib.suppress(OSError, ValueError):
        if graceful:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _CLOSE_LINGER
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                if not sock.recv(_READ_SIZE):
                    break
    with contextlib.suppress(OSError):
        sock.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
