"""The connection's socket, where the server exposes it (gunicorn's ``gunicorn.socket``).

Three things a stream does with it, none of which reads or writes stream data:

* a write timeout, so that a write to a client that stopped reading fails
  instead of holding the worker thread for as long as the peer keeps the TCP
  connection open;
* a shutdown when the stream is aborted (a write failed or timed out), so that
  gunicorn's graceful close does not wait, on the worker's main loop, for a
  peer that does not read;
* a liveness probe the hub may call (it never blocks): has the peer closed its
  side? A closed tab is otherwise noticed only at the next keep-alive write.

Other WSGI servers do not expose the socket; then none of this applies.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

__all__ = ["guard", "peer_open", "peer_probe"]

ENVIRON_KEY: Final = "gunicorn.socket"


def _socket_of(environ: Mapping[str, Any]) -> socket.socket | None:
    sock = environ.get(ENVIRON_KEY)
    return sock if isinstance(sock, socket.socket) else None


def peer_probe(environ: Mapping[str, Any]) -> Callable[[], bool] | None:
    """A callable that says whether the peer may still be there (``False`` once it
    has closed or reset the connection), or ``None`` without a socket."""
    sock = _socket_of(environ)
    return None if sock is None else partial(peer_open, sock)


def peer_open(sock: socket.socket) -> bool:
    """Whether the peer may still be there (``False`` once it has closed or reset
    the connection); never blocks and consumes nothing."""
    # poll(), not select(): descriptors above FD_SETSIZE are common with many streams.
    # A zero timeout, and a peek only once data (or EOF) is waiting: never blocks.
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return True  # nothing to read: no FIN, no RST seen
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:  # a non-blocking socket woken without data
        return True
    except (OSError, ValueError):  # reset, or the socket is already closed
        return False


def guard(environ: Mapping[str, Any], write_timeout: float | None) -> Callable[[], None] | None:
    """Set *write_timeout* on the connection's socket; return what to call if the
    stream is aborted (``None`` without a socket)."""
    sock = _socket_of(environ)
    if sock is None:
        return None
    if write_timeout is not None:
        sock.settimeout(write_timeout)
    return partial(_shut_down, sock)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
