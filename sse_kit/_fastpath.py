"""The fast path: the hub thread writes events straight to a stream's socket.

On the portable (queue) path every event wakes the stream's own thread, which
hands the bytes to the WSGI server; under gunicorn gthread that wake-up (a
thread switch through the GIL) costs ~10x the ``send()`` itself. When the server
is known to frame the body exactly as this module does, the hub thread writes
each event's HTTP/1.1 chunk to the socket with one non-blocking ``send()`` and
the stream's thread stays parked.

# design:
# One connection, two writers, never at once. The socket belongs to the stream's
# thread (the WSGI server's worker thread) except while the client's ``_direct``
# field holds it; ``_direct`` is read and written only under the client's
# ``_lock``, and a direct write happens entirely under that lock. So:
#
#   QUEUED  (``_direct is None``): events go to the outbox; the stream thread
#           (or gunicorn, with what the stream yields) writes. Initial state.
#   DIRECT  (``_direct`` = the socket): entered by the stream thread, under the
#           lock, only when the outbox and the spill are empty and the server has
#           written everything the stream yielded so far (the server asks for the
#           next chunk only after ``sendall`` returned, so the headers and the
#           first chunk are on the wire). The hub writes each chunk itself.
#   back to QUEUED, under the lock, when: a direct write would block or is
#           partial (the unsent tail becomes the ``_spill``, written raw, already
#           framed, by the stream thread before anything else), the stream ends
#           (``_finish``), or the stream thread wakes for a keep-alive. A failed
#           write (the client went away) ends the stream.
#
# Because the stream ends (and ``_direct`` is cleared) before the iterator stops,
# nothing is written after gunicorn's terminating ``0\r\n\r\n``.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["MSG_DONTWAIT", "direct_socket", "direct_writer", "frame_chunk"]

# send() flag for one non-blocking call on a blocking socket (Linux, BSDs, macOS);
# 0 where the platform lacks it, which turns the fast path off.
MSG_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)


def frame_chunk(frame: bytes) -> bytes:
    """*frame* as one HTTP/1.1 chunk, byte for byte as gunicorn writes a yielded
    ``bytes`` (``gunicorn.util.write_chunk``: upper-case hex size, CRLF, data, CRLF)."""
    return b"%X\r\n%b\r\n" % (len(frame), frame)


def direct_socket(environ: Mapping[str, Any]) -> socket.socket | None:
    """The connection's socket if the hub may write chunks to it, else ``None``.

    Only a plain TCP socket (not ``ssl.SSLSocket``, not a gevent/eventlet socket)
    on an HTTP/1.1 request (HTTP/1.0 and HTTP/2 responses are
    not chunked by this framing). Whether the server frames chunks at all is
    vouched for separately, by :mod:`sse_kit.gunicorn`'s hooks.
    """
    sock = environ.get("gunicorn.socket")
    if not MSG_DONTWAIT or not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None
    cls = type(sock)
    if cls.__module__ != "socket" or cls.__qualname__ != "socket":
        return None  # a TLS or cooperative (gevent, eventlet) socket
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return None
    try:
        if sock.type != socket.SOCK_STREAM:
            return None
    except OSError:
        return None
    return sock


def direct_writer(sock: socket.socket) -> Callable[[bytes], int]:
    """One non-blocking write to *sock*: returns the bytes written, raises
    ``BlockingIOError`` when the socket is full; never waits.

    Decided once, after ``sse_kit._socket.guard`` has set the write timeout: with a
    timeout, ``socket.send()`` would first wait up to that long for room, but the
    descriptor is then already ``O_NONBLOCK``, so a plain ``write(2)`` cannot block.
    """
    if sock.gettimeout() is None:
        send, flags = sock.send, MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)
        return lambda data: send(data, flags)
    fileno = sock.fileno  # -1 once the socket is closed: EBADF, never another socket
    return lambda data: os.write(fileno(), data)
