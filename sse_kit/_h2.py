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
#   between threads). It owns the selector, the bytes waiting for the socket
#   (_outbuf, kept near OUT_BUFFER), the drain and the close, and the event
#   streams (sse_kit._h2stream.EventStreams), whose deadlines it keeps.
#
#   Everything other threads touch is in the connection's StreamTable
#   (sse_kit._h2table), under its one lock: the h2 state machine and every
#   stream's queue. Pool threads queue responses there (a pool thread waits
#   while more than RESPONSE_BUFFER bytes of its response wait for window, as
#   it would wait on a full socket over HTTP/1.1); the hub thread queues an
#   event stream's events (never waiting: beyond the hub's client_buffer /
#   client_buffer_bytes they are dropped or the stream is cut with RST_STREAM,
#   per slow_client, like a slow HTTP/1.1 reader). Each stream has its own
#   window and queue, so one whose reader stops stalls none of its siblings.
#   Other threads wake the session thread through the table's mailbox.
#
# Floods: the table's FloodGuard (sse_kit._h2guard) counts what the peer sends
# that carries no request, and the requests it has waiting for the pool; past a
# limit the table sends GOAWAY (ENHANCE_YOUR_CALM), and this thread logs one
# WARNING, has it counted (on_flood) and closes the connection. A request whose
# stream was reset before a pool thread took it is skipped.
#
# Shutdown: the worker calls drain(): new streams are refused (REFUSED_STREAM,
# which a client retries on another connection), the hub ends the event
# streams (a retry: hint, END_STREAM), ordinary responses finish; then GOAWAY
# and the socket is closed. Streams still open after the drain timeout are reset.

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Final

import h2.connection
import h2.errors

from ._client import GONE
from ._h2stream import EventStreams
from ._h2table import OUT_BUFFER, RESPONSE_BUFFER, RequestHead, StreamTable

__all__ = ["OUT_BUFFER", "RESPONSE_BUFFER", "H2Session", "RequestHead", "StreamTable"]

log = logging.getLogger(__name__)

# Bytes read from the socket per recv().
_READ_SIZE: Final = 65536
# Bytes handed to one send(): after a TLS "want write", the same bytes (or
# more) are offered again, as OpenSSL asks.
_WRITE_SIZE: Final = 65536
# Seconds a closing connection reads what the peer still sends after GOAWAY.
_CLOSE_LINGER: Final = 1.0
# Sweep period while the connection drains (how soon it sees its last stream end).
_DRAIN_SWEEP: Final = 0.05
_WOULD_BLOCK: Final = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
                       InterruptedError)

Serve = Callable[[StreamTable, RequestHead], None]
"""Runs one complete request on a pool thread (the worker's glue, sse_kit._h2serve)."""
Submit = Callable[[Callable[[], None]], bool]
"""Hands a job to the worker's thread pool; False when the pool is shut down."""


class H2Session:
    """The owner of one HTTP/2 connection (see the module's design).

    :param sock: the connection (TLS or cleartext), its preface and SETTINGS done.
    :param conn: the h2 state machine gunicorn set up for it.
    :param serve: runs a complete request on a pool thread.
    :param submit: hands a job to the pool.
    :param on_close: called once, by the session thread, when the connection is closed.
    :param on_flood: called by the session thread when it closes the connection
        as a flood (see sse_kit._h2guard), after its WARNING.
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
        on_flood: Callable[[], None],
        idle_timeout: float | None,
        stall_timeout: float,
        drain_timeout: float,
    ) -> None:
        self._sock = sock
        self.table = StreamTable(conn, stall_timeout)
        self._serve = serve
        self._submit = submit
        self._on_close = on_close
        self._on_flood = on_flood
        self._idle_timeout = idle_timeout
        self._stall_timeout = stall_timeout
        self._drain_timeout = drain_timeout
        self._draining = False  # set by drain() (any thread, a signal handler too)
        # Session thread only:
        self._outbuf = bytearray()
        self._out_progress = time.monotonic()
        self._idle_since: float | None = time.monotonic()
        self._events = EventStreams(self.table)
        self._drain_deadline: float | None = None
        self._goaway_sent = False
        self._early: tuple[RequestHead | None, bytes] = (None, b"")  # set by start()
        self._thread = threading.Thread(target=self._run, name="sse_kit-h2", daemon=True)

    def start(self, upgraded: RequestHead | None = None, early: bytes = b"") -> None:
        """Start the session thread; from now on it owns the socket.

        :param upgraded: after an HTTP/1.1 ``Upgrade: h2c``, the request that
            asked for it (stream 1, RFC 7540 section 3.2), to serve first.
        :param early: bytes the peer sent that were read before the session
            took the socket (frames behind the upgrade request).
        """
        self._sock.setblocking(False)
        self._early = (upgraded, early)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for the session thread to close the connection."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self) -> None:
        """Refuse new streams, let the open ones end, then close (see the
        design). Safe in a signal handler: it only sets a flag and wakes."""
        self._draining = True
        self.table.wake()

    # -- the session thread ----------------------------------------------------

    def _run(self) -> None:
        table = self.table
        selector = selectors.DefaultSelector()
        selector.register(table.wake_r, selectors.EVENT_READ, None)
        selector.register(self._sock, selectors.EVENT_READ, self)
        writing = False
        try:
            upgraded, early = self._early
            if upgraded is not None:
                table.open_upgraded(upgraded)
                self._dispatch(upgraded)
            alive = not early or self._received(early)
            while alive:
                for key, mask in selector.select(self._timeout()):
                    if key.data is None:
                        table.woken()
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
        if self.table.has_posted:
            return 0.0
        timeout = self._events.timeout(time.monotonic())
        return min(timeout, _DRAIN_SWEEP) if self._draining else timeout

    def _step(self) -> bool:
        """Everything but reading, after each wake-up; False: close now."""
        table, events = self.table, self._events
        while (sink := table.take_posted()) is not None:
            events.look_at(sink)
        table.pump(self._outbuf)
        now = time.monotonic()
        events.sweep(now)
        if not self._flush():
            return False
        if self._outbuf and now - self._out_progress > self._stall_timeout:
            log.info("sse_kit HTTP/2: the peer took nothing for %gs; closing the connection",
                     self._stall_timeout)
            return False
        open_streams = table.open_streams()
        if open_streams or len(events):
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif self._idle_timeout and now - self._idle_since > self._idle_timeout:
            return self._goaway()
        if self._draining:
            table.refusing = True
            if self._drain_deadline is None:
                self._drain_deadline = now + self._drain_timeout
            if open_streams and now < self._drain_deadline:
                return True
            table.reset_all()
            return self._goaway()
        return True

    def _goaway(self) -> bool:
        """Send GOAWAY (the last stream served), flush briefly; False (close)."""
        self.table.goaway(self._outbuf)
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
            if not data or not self._received(data):
                return False

    def _received(self, data: bytes) -> bool:
        """Act on *data* from the peer; False: the connection is over."""
        alive, requests, gone = self.table.receive(data, self._outbuf)
        for head in requests:
            self._dispatch(head)
        for sink in gone:
            sink.peer_gone = True
            sink.client._finish(GONE)
        if not alive:
            if self.table.flood is not None:
                self._flooded(self.table.flood)
            self._flush()
        return alive

    def _flooded(self, what: str) -> None:
        peer = "?"
        with contextlib.suppress(OSError):
            peer = str(self._sock.getpeername())
        log.warning("sse_kit HTTP/2: closed the connection from %s with GOAWAY "
                    "(ENHANCE_YOUR_CALM): %s (see docs/security.md)", peer, what)
        self._on_flood()
        self._goaway_sent = True

    def _dispatch(self, head: RequestHead) -> None:
        table, serve = self.table, self._serve

        def job() -> None:
            try:
                if table.is_open(head.stream_id):  # not reset while it waited
                    serve(table, head)
            finally:
                table.job_done()

        if not self._submit(job):
            table.job_done()
            table.reset_stream(head.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

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
        table = self.table
        table.close()
        while (sink := table.take_posted()) is not None:
            self._events.look_at(sink)
        self._events.close_all()
        _close_socket(self._sock, graceful=self._goaway_sent)
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
