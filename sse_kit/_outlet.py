"""Detached streams: after the first chunk, the hub side owns the socket.

A stream served by a server that can hand its connection over (gunicorn's
gthread worker, through :mod:`sse_kit.gunicorn`) holds no server thread for its
life: once the server has written the headers and the first chunk, the
connection becomes an :class:`OwnedSocket`, and one :class:`Outlet` thread per
hub watches every such socket. The server's thread goes back to its pool.
"""

# design:
# Who owns a detached stream's socket, and when.
#
#   1. The request thread writes the headers and the first chunk, as for any
#      WSGI response (sse_kit._connection.Stream).
#   2. When the server asks for the next chunk, the stream detaches: the server
#      adapter duplicates the connection's descriptor for sse_kit and replaces
#      the server's own descriptor with an unconnected stand-in, so that what
#      the server does next (end the response, close, count) touches only the
#      stand-in. The request ends; its thread returns to the pool.
#   3. From then on, this module's OwnedSocket is the connection. Every byte is
#      written by OwnedSocket.send or OwnedSocket.flush, under the client's lock
#      (Client._lock: one lock for the client's outbox, end and socket), by
#      whichever thread has something to write: the hub thread for broadcasts,
#      a caller of Client.send, the outlet thread for the tail, keep-alives and
#      the end. A write never waits: what the kernel does not take is the tail,
#      bounded by the hub's client limits and finished when the selector
#      reports the socket writable.
#   4. The outlet thread ("sse_kit-outlet") owns the selector and is the only
#      thread that registers, unregisters or closes a detached socket, so a
#      descriptor is never closed while registered nor reused under the
#      selector. Other threads hand it a socket through post() (a deque and a
#      wake-up pipe). It also keeps every detached stream's deadlines:
#      keep-alive, max_age, write_timeout, and the linger of a stream that is
#      ending. A peer that closes makes its socket readable, then EOF: the
#      stream ends at once, without waiting for a keep-alive write.
#
# Shutdown: the hub ends every stream (Client._finish(SHUTDOWN) posts each
# OwnedSocket here), then Outlet.close(): the outlet writes each stream's end
# (the retry: hint and the last-chunk), lingers at most LINGER seconds for
# slow peers to take it, closes every socket and returns.

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING, Final

from ._client import (
    COME_BACK,
    DEFERRED,
    ENDED,
    GONE,
    SHUTDOWN,
    TIMED_OUT,
    WRITTEN,
    Client,
    SlowClientPolicy,
    overflow,
)
from ._connection import Expiry, note_closed, note_end, note_expired, reason_text
from ._socket import peer_open
from ._wire import LAST_CHUNK, encode_comment, encode_retry, frame_chunk

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["Outlet", "OwnedSocket"]

log = logging.getLogger("sse_kit._connection")  # one logger for a stream's life, either path

# Seconds an ending stream may take to let its peer read the end (the retry:
# hint and the last-chunk) before its socket is closed anyway.
LINGER: Final = 2.0
# Longest pause between two sweeps of the deadlines (keep-alive, max_age,
# write_timeout): the resolution of max_age and write_timeout for detached streams.
MAX_SWEEP: Final = 1.0
# A peer's bytes read (and discarded) per readable event: EventSource sends
# nothing after its request, so anything else is drained, never buffered.
_READ_SIZE: Final = 4096
# Most buffers one sendmsg(2) takes (Linux's IOV_MAX): a longer tail is written
# over several writable events.
_IOV_MAX: Final = 1024
_READ: Final = selectors.EVENT_READ
_READ_WRITE: Final = selectors.EVENT_READ | selectors.EVENT_WRITE


class OwnedSocket:
    """One detached stream's connection: direct writes, the tail, the end.

    Everything but :meth:`post_end` is called with the client's lock held
    (``Client._lock``); only the outlet thread closes the socket.

    :param client: the stream's client; its outbox is empty from now on.
    :param sock: sse_kit's own descriptor of the connection (non-blocking).
    :param expires: when the stream ends by itself (``max_age``, its identity's
        expiry), or ``None``.
    :param events: events already written (the first chunk's replay).
    :param body_bytes: bytes already written (the first chunk); counts on with
        every chunk written or kept in the tail, framing included.
    :param opened: the monotonic time the stream opened.
    """

    # deliver() hands this sink its events framed as one HTTP/1.1 chunk.
    framed: Final = True

    __slots__ = (
        "_outlet", "_policy", "_send", "_sock", "_tail", "_tail_bytes", "_tail_events",
        "body_bytes", "client",
        "closing_since", "events", "expires", "fd", "last_write", "max_bytes", "max_events",
        "opened", "peer_gone", "registered",
    )

    def __init__(
        self,
        outlet: Outlet,
        client: Client,
        sock: socket.socket,
        *,
        expires: Expiry | None,
        events: int,
        body_bytes: int,
        opened: float,
    ) -> None:
        self._outlet = outlet
        self.client = client
        self._sock = sock
        self._send = sock.send  # bound once: the hub thread calls it per delivery
        self.fd = sock.fileno()
        limits = client.limits()
        self._policy: SlowClientPolicy = limits.policy
        # No byte limit given (a hub always gives one): the tail is bounded by events.
        self.max_bytes = limits.byte_bound
        self.max_events = limits.max_events
        # The tail: framed chunks the kernel has not taken yet, oldest first,
        # the first one possibly a view of what is left of it. The chunks are
        # the hub's, shared by every stream of a fan-out, never copied here:
        # a stalled stream costs a reference per chunk, not its bytes again.
        self._tail: collections.deque[bytes | memoryview] = collections.deque()
        self._tail_bytes = 0  # bytes in the tail (bounded by max_bytes)
        self._tail_events = 0
        self.last_write = time.monotonic()  # the first chunk was just written
        self.expires = expires
        self.events = events
        self.body_bytes = body_bytes
        self.opened = opened
        self.peer_gone = False
        # Set by the outlet thread only: the socket is in the selector; when
        # the end was first seen (the linger runs from then).
        self.registered = False
        self.closing_since: float | None = None

    @property
    def tail_size(self) -> int:
        """Bytes waiting for the socket to be writable."""
        return self._tail_bytes

    def send(self, chunk: bytes, events: int, may_cut: bool, now: float) -> int:
        """Write *chunk* (*events* events, framed) now, or keep it in the tail.

        Called with the client's lock held, only while the stream is open; *now*
        is the caller's ``time.monotonic()`` (one clock read per broadcast batch).

        :returns: one of sse_kit._client's offer outcomes: WRITTEN (the kernel
            took it all), DEFERRED (part of it waits in the tail), DROPPED (the
            tail is full, policy "drop"), CUT (the tail is full, policy
            "disconnect": the caller ends the stream as SLOW) or ENDED (the
            write failed: the caller ends it as GONE).
        """
        tail = self._tail
        if tail:
            if self._tail_bytes + len(chunk) > self.max_bytes or (
                self._tail_events + events > self.max_events
            ):
                return overflow(self._policy, may_cut)
            tail.append(chunk)
            self._tail_bytes += len(chunk)
            self._tail_events += events
            self.events += events
            self.body_bytes += len(chunk)
            return DEFERRED
        try:
            sent = self._send(chunk)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.peer_gone = True
            return ENDED
        self.events += events
        self.body_bytes += len(chunk)
        if sent:
            self.last_write = now
        if sent == len(chunk):
            return WRITTEN
        tail.append(memoryview(chunk)[sent:] if sent else chunk)
        self._tail_bytes = len(chunk) - sent
        self._tail_events = events
        self._outlet.post(self)  # watch for writability
        return DEFERRED

    def start(self, frames: list[bytes]) -> None:
        """Take over what the stream's outbox held when it detached, in order.
        Called with the client's lock held, before any other write."""
        if frames:
            chunk = frame_chunk(b"".join(frames))
            self._tail.append(chunk)
            self._tail_bytes = len(chunk)
            self._tail_events = len(frames)
            self.events += len(frames)
            self.body_bytes += len(chunk)

    def flush(self) -> bool:
        """Write as much of the tail as the kernel takes; True when it is empty.
        Called with the client's lock held (by the outlet thread). A failed
        write marks the peer gone (True: nothing more can be written)."""
        tail = self._tail
        if not tail:
            return True
        try:
            if len(tail) == 1:
                sent = self._sock.send(tail[0])
            else:  # one write(2) for many chunks, none copied
                sent = self._sock.sendmsg(itertools.islice(tail, _IOV_MAX))
        except BlockingIOError:
            return False
        except OSError:
            self.peer_gone = True
            tail.clear()
            self._tail_bytes = 0
            return True
        if sent:
            self.last_write = time.monotonic()
            self._tail_bytes -= sent
            while sent:
                head = tail[0]
                if sent < len(head):
                    tail[0] = memoryview(head)[sent:]
                    break
                sent -= len(head)
                tail.popleft()
        if tail:
            return False
        self._tail_events = 0
        return True

    def finish(self, reason: str, shutdown_retry: int) -> None:
        """Queue the stream's end after the tail: a short ``retry:`` hint when the
        browser should come back at once, then the last-chunk. Called with the
        client's lock held, once, by the outlet thread."""
        if self.peer_gone:
            return
        end = frame_chunk(encode_retry(shutdown_retry)) if reason in COME_BACK else b""
        end += LAST_CHUNK
        self._tail.append(end)
        self._tail_bytes += len(end)

    def post_end(self) -> None:
        """The stream is ending (the client's end is set): let the outlet thread
        write the end and close the socket. Any thread; never blocks."""
        self._outlet.post(self)

    def peer_closed(self) -> bool:
        """Whether the peer has closed the connection, asked now (the hub thread
        at a limit: a tab that reloads closes its old stream a moment before the
        new one registers, sooner than the outlet may have noticed). Never
        blocks and consumes nothing (see :func:`sse_kit._socket.peer_open`)."""
        return self.peer_gone or not peer_open(self._sock)

    def read_peer(self) -> bool:
        """Drain what the peer sent; False once it has closed or reset the
        connection. Called by the outlet thread (no lock: reading is its alone)."""
        try:
            return bool(self._sock.recv(_READ_SIZE))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def fileobj(self) -> socket.socket:
        """The socket, for the outlet's selector."""
        return self._sock

    def close(self) -> None:
        """Close sse_kit's descriptor: the TCP connection ends. Outlet thread only."""
        with contextlib.suppress(OSError):
            self._sock.close()


class Outlet:
    """The thread that watches a hub's detached sockets (see the module's design).

    :param hub: the hub whose streams it serves (keep-alive interval, write
        timeout, shutdown retry, counters, unregistering a closed stream).
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._selector = selectors.DefaultSelector()
        # A socket pair, not a pipe: once closed, a socket object refuses to
        # write (its descriptor is -1), where a late os.write() to a closed
        # pipe's number could reach whatever file reused it.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, None)
        # Sockets other threads handed over, for the outlet thread to look at.
        # A deque: append and popleft are atomic, no lock needed.
        self._posted: collections.deque[OwnedSocket] = collections.deque()
        # _awake: True while a wake-up byte is in the pipe or the outlet thread
        # is about to look at _posted; saves a write(2) per post while it is busy.
        self._awake = False
        self._sinks: dict[int, OwnedSocket] = {}  # by descriptor; outlet thread only
        self._ending: set[OwnedSocket] = set()  # ending, tail not yet flushed
        # _lock guards _closed: adopt() hands a socket over only while the
        # outlet is open, so none arrives after the thread has finished.
        # Held briefly, never while waiting; adopt() takes a client's lock under it.
        self._lock = threading.Lock()
        self._closed = False  # set by close(); the thread ends once every socket is closed
        self._thread = threading.Thread(target=self._run, name="sse_kit-outlet", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------

    def adopt(self, client: Client, sock: socket.socket, *, expires: Expiry | None,
              events: int, body_bytes: int, opened: float) -> OwnedSocket:
        """Make *sock* the detached connection of *client*; from now on every
        event for *client* is written to it by the hub side. If the outlet has
        closed meanwhile (the hub stopped, which ended the client), the stream's
        end is written here and the socket closed."""
        sock.setblocking(False)
        sink = OwnedSocket(self, client, sock, expires=expires, events=events,
                           body_bytes=body_bytes, opened=opened)
        with self._lock:
            client._detach_to(sink)  # takes the outbox over, under the client's lock
            if not self._closed:
                self._hub.counters.add("detached")
                self.post(sink)
                return sink
        # Too late for the outlet thread: end it in this (the request's) thread,
        # without waiting for a slow peer.
        client._finish(SHUTDOWN)
        with client._lock:
            sink.finish(client.end_reason or SHUTDOWN, self._hub.shutdown_retry)
            sink.flush()
            sink.close()
        self._hub.unregister(client)
        return sink

    def post(self, sink: OwnedSocket) -> None:
        """Ask the outlet thread to look at *sink* (new, has a tail, or ending)."""
        self._posted.append(sink)
        if not self._awake:
            self._awake = True
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def close(self, timeout: float) -> None:
        """End the outlet: every stream is written its end (the hub has ended
        them), lingering at most :data:`LINGER` seconds; waits up to *timeout*
        seconds for the thread."""
        with self._lock:
            self._closed = True
        self._awake = False
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the outlet thread --------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        next_sweep = time.monotonic() + self._sweep_period()
        try:
            while True:
                timeout = max(0.0, next_sweep - time.monotonic())
                for key, mask in selector.select(timeout):
                    sink = key.data
                    if sink is None:
                        self._take_posted()
                    else:
                        self._on_ready(sink, mask)
                if self._posted:  # posted while this thread was busy
                    self._take_posted()
                if self._closed:
                    self._take_posted()  # adopted before close(): end those too
                    self._end_all()
                    if not self._sinks:
                        break
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + self._sweep_period()
        except Exception:  # a bug must not leave sockets open forever
            log.exception("sse_kit outlet: failed; closing its %d stream(s)", len(self._sinks))
        finally:
            for sink in list(self._sinks.values()):
                self._close(sink)
            selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _sweep_period(self) -> float:
        hub = self._hub
        period = min(MAX_SWEEP, hub.keepalive_interval / 4)
        if hub.write_timeout is not None:
            period = min(period, hub.write_timeout / 4)
        if self._ending:
            period = min(period, 0.1)
        return period

    def _take_posted(self) -> None:
        # In this order: bytes out of the pipe, then _awake cleared, then the
        # deque drained. A post that saw _awake still set appended before the
        # drain, so its socket is taken here; a later one writes a new byte.
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        self._awake = False
        posted = self._posted
        while posted:
            self._look_at(posted.popleft())

    def _look_at(self, sink: OwnedSocket) -> None:
        """Register a new socket, watch one with a tail, or carry out an end."""
        client = sink.client
        if sink.registered and self._sinks.get(sink.fd) is not sink:
            return  # closed already
        if not sink.registered:
            sink.registered = True
            self._sinks[sink.fd] = sink
            self._selector.register(sink.fileobj(), _READ, sink)
        if client.end_reason is not None:
            self._begin_end(sink)
            return
        with client._lock:
            flushed = sink.flush()
        if sink.peer_gone:
            client._finish(GONE)
            self._begin_end(sink)
        else:
            self._selector.modify(sink.fileobj(), _READ if flushed else _READ_WRITE, sink)

    def _on_ready(self, sink: OwnedSocket, mask: int) -> None:
        client = sink.client
        if mask & selectors.EVENT_READ and not sink.read_peer():
            sink.peer_gone = True
            client._finish(GONE)
            self._close(sink)
            return
        if mask & selectors.EVENT_WRITE:
            with client._lock:
                flushed = sink.flush()
            if sink.peer_gone:
                client._finish(GONE)
                self._close(sink)
            elif flushed:
                if sink in self._ending:
                    self._close(sink)
                else:
                    self._selector.modify(sink.fileobj(), _READ, sink)

    def _begin_end(self, sink: OwnedSocket) -> None:
        """Queue the end after the tail and flush; close at once if it all went."""
        if sink in self._ending:
            return
        client = sink.client
        reason = client.end_reason or GONE
        with client._lock:
            sink.finish(reason, self._hub.shutdown_retry)
            flushed = sink.flush()
        if flushed or sink.peer_gone:
            self._close(sink)
            return
        sink.closing_since = time.monotonic()
        self._ending.add(sink)
        self._selector.modify(sink.fileobj(), _READ_WRITE, sink)

    def _end_all(self) -> None:
        for sink in list(self._sinks.values()):
            if sink not in self._ending:
                self._begin_end(sink)

    def _sweep(self, now: float) -> None:
        """Keep every detached stream's deadlines (one pass, at most every
        :data:`MAX_SWEEP` seconds)."""
        hub = self._hub
        interval, write_timeout = hub.keepalive_interval, hub.write_timeout
        keepalive: bytes | None = None
        for sink in list(self._sinks.values()):
            client = sink.client
            if sink in self._ending:
                assert sink.closing_since is not None
                if now - sink.closing_since >= LINGER:
                    self._close(sink)
                continue
            if client.end_reason is not None:
                continue  # its end is posted
            if sink.expires is not None and now >= sink.expires.at:
                # After the tail, as on the parked path: a reader that is behind expires too.
                if client._finish(sink.expires.end):
                    note_expired(hub, client.id, sink.expires.end)
                continue
            if sink.tail_size:
                if write_timeout is not None and now - sink.last_write >= write_timeout:
                    hub.counters.add("write_timeouts")
                    log.warning(
                        "sse_kit: cut client %r: nothing could be written for %gs "
                        "(write_timeout); it resumes from history", client.id, write_timeout)
                    sink.peer_gone = True  # do not wait on it any longer
                    client._finish(TIMED_OUT)
                    self._close(sink)
                continue
            if now - sink.last_write >= interval:
                if keepalive is None:
                    keepalive = frame_chunk(encode_comment(f"keepalive {int(time.time())}"))
                with client._lock:
                    outcome = ENDED if client.end_reason is not None else sink.send(
                        keepalive, 0, False, now)
                if outcome == ENDED and sink.peer_gone:
                    client._finish(GONE)
                    self._close(sink)
                elif outcome in (WRITTEN, DEFERRED):
                    hub.counters.add("keepalives")

    def _close(self, sink: OwnedSocket) -> None:
        """Close *sink*'s socket and unregister its client; once."""
        if self._sinks.pop(sink.fd, None) is None:
            return
        self._ending.discard(sink)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sink.fileobj())
        client = sink.client
        with client._lock:  # no writer may be in send() while the descriptor goes
            sink.close()
        end = client.end_reason or GONE
        note_end(client.id, end)
        self._hub.unregister(client)
        note_closed(client.id, reason_text(end), sink.opened, sink.events, sink.body_bytes)
