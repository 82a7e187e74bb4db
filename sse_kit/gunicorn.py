"""gunicorn server hooks that give each worker its own running hub.

A hub thread started before ``fork()`` does not survive it, and a streaming
response holds its worker thread until the stream ends, so under gunicorn:

* each worker starts its hub after it has loaded the app (``post_worker_init``;
  ``post_fork`` too when the app is preloaded);
* on ``SIGTERM``/``SIGINT``/``SIGQUIT`` the worker stops its hub *first*, which
  ends every stream at once, so the worker exits promptly instead of waiting out
  ``graceful_timeout`` for streams that would never end;
* when the worker leaves on its own (``max_requests``), ``post_request`` stops
  the hub as soon as gunicorn decides so;
* ``worker_exit`` stops the hub for good;
* ``child_exit`` (in the master) forgets a dead worker's live Prometheus gauges
  when ``PROMETHEUS_MULTIPROC_DIR`` is set (see :mod:`sse_kit.prometheus`);
* in a gthread (or sync) worker serving plain HTTP (no ``certfile``, not the
  uwsgi protocol) the hooks let the hub write events straight to stream sockets
  (the fast path, ``Hub(fast_path=...)``): such a worker frames every streamed
  chunk itself, exactly as :func:`sse_kit._fastpath.frame_chunk` does.

Use them from a gunicorn config file::

    # gunicorn.conf.py
    from sse_kit.gunicorn import (  # noqa: F401
        child_exit, post_fork, post_request, post_worker_init, worker_exit,
    )

    worker_class = "gthread"
    threads = 64

Each open stream holds one worker thread; for thousands of streams per worker,
see :func:`sizing` and :func:`set_thread_stack_size`.

The hooks find hubs through the loaded app: a Flask app with an sse_kit
blueprint (``app.extensions["sse_kit"]``), or any WSGI callable with an
``sse_kit_hubs`` attribute (a list of hubs) for other frameworks.

gunicorn's access log writes each request line, query string included, and a
stream URL may carry a token. :class:`AccessLogger` leaves the query string of
stream requests out::

    logger_class = "sse_kit.gunicorn.AccessLogger"
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from ._hub import Hub
from ._wsgi import ENVIRON_MARK

__all__ = [
    "REDACTED",
    "AccessLogger",
    "child_exit",
    "find_hubs",
    "is_stream_request",
    "post_fork",
    "post_request",
    "post_worker_init",
    "set_thread_stack_size",
    "sizing",
    "worker_exit",
]

# What AccessLogger writes instead of a stream request's query string.
REDACTED = "<redacted>"

log = logging.getLogger(__name__)

# Signals on which gunicorn asks a worker to leave; the hubs stop first.
_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Workers whose request thread writes each yielded bytes with util.write_chunk
# and asks for the next one only after sendall() returned (gunicorn >= 23).
_CHUNKING_WORKERS = ("gunicorn.workers.gthread.ThreadWorker", "gunicorn.workers.sync.SyncWorker")
# Smallest stack set_thread_stack_size() accepts: Flask views, Jinja and json
# recurse in C; below this a deep template could overflow it.
MIN_THREAD_STACK = 128 * 1024


def find_hubs(app: object) -> list[Hub]:
    """The hubs a loaded WSGI app declares (see the module docstring)."""
    hubs: list[Hub] = list(getattr(app, "sse_kit_hubs", None) or [])
    extensions = getattr(app, "extensions", None)
    if isinstance(extensions, dict):
        ext = extensions.get("sse_kit")
        hubs.extend(getattr(ext, "hubs", None) or [])
    return [h for i, h in enumerate(hubs) if isinstance(h, Hub) and h not in hubs[:i]]


def _frames_chunks(worker: Any) -> bool:
    """Whether *worker* writes a streamed body as plain HTTP/1.1 chunks itself,
    so that the hub may write the same framing to its sockets (the fast path)."""
    cls = type(worker)
    cfg = getattr(worker, "cfg", None)
    return (
        f"{cls.__module__}.{cls.__qualname__}" in _CHUNKING_WORKERS
        and cfg is not None
        and not getattr(cfg, "is_ssl", True)
        and getattr(cfg, "protocol", "http") == "http"
    )


def _start(worker: Any, hubs: list[Hub]) -> None:
    direct = _frames_chunks(worker)
    for hub in hubs:
        hub._server_frames_chunks = direct
        hub.start()
    worker.sse_kit_hubs = hubs


def _stop_then(hubs: list[Hub], previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        for hub in hubs:
            hub.stop(timeout=0)  # only enqueues: safe in a signal handler
        if callable(previous):
            previous(signum, frame)

    return handler


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn hook: with ``preload_app``, start the preloaded app's hubs."""
    app = getattr(getattr(worker, "app", None), "callable", None)
    hubs = find_hubs(app) if app is not None else []
    if hubs:
        _start(worker, hubs)


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: start the loaded app's hubs in this worker, and make the
    worker's exit signals stop them first."""
    hubs = getattr(worker, "sse_kit_hubs", None) or find_hubs(getattr(worker, "wsgi", None))
    if not hubs:
        log.warning("sse_kit.gunicorn: the app declares no hub; nothing to start")
        return
    _start(worker, hubs)
    # gunicorn installed its handlers in init_signals(), after post_fork: wrap them now.
    for signum in _EXIT_SIGNALS:
        signal.signal(signum, _stop_then(hubs, signal.getsignal(signum)))


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """gunicorn hook: when the worker is leaving on its own (``max_requests``
    reached: no signal is sent), stop its hubs so open streams end now instead
    of holding the worker until ``graceful_timeout``."""
    if not getattr(worker, "alive", True):
        for hub in getattr(worker, "sse_kit_hubs", None) or []:
            hub.stop(timeout=0)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: stop this worker's hubs."""
    for hub in getattr(worker, "sse_kit_hubs", None) or []:
        hub.stop()


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook (master): in Prometheus multiprocess mode, drop the dead
    worker's live gauges so ``sse_kit_clients`` stops counting its streams."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from .prometheus import mark_worker_dead  # the optional extra, only when used

        mark_worker_dead(worker.pid)


def set_thread_stack_size(size: int = 256 * 1024) -> int:
    """Give threads started from now on a *size*-byte stack; returns the previous size.

    Call it at the top of the gunicorn config file: the master's setting is
    inherited by every forked worker, before gthread starts its threads. With
    thousands of streams per worker, each parked in its own thread, a small stack
    bounds the address space per stream (the default is the ``ulimit -s``, often
    8 MiB) and the memory a stack can pin; ``docs/performance.md`` has measurements.

    :raises ValueError: if *size* is below :data:`MIN_THREAD_STACK` bytes.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_THREAD_STACK:
        raise ValueError(f"size must be an int >= {MIN_THREAD_STACK} bytes, got {size!r}")
    return threading.stack_size(size)


def sizing(max_streams: int, *, other_requests: int = 8) -> dict[str, int]:
    """gthread settings for a worker that serves *max_streams* streams at once.

    Every open stream holds one worker thread, so ``threads`` must cover the
    streams plus the threads ordinary routes need; gthread stops accepting
    connections beyond ``worker_connections`` (default 1000), so it must be at
    least ``threads``. Give the hub ``max_clients=max_streams`` so that stream
    number ``max_streams + 1`` gets ``503`` instead of a thread.

    :returns: ``{"threads": ..., "worker_connections": ...}`` for the config.
    """
    if max_streams < 1 or other_requests < 1:
        raise ValueError("max_streams and other_requests must be >= 1")
    threads = max_streams + other_requests
    return {"threads": threads, "worker_connections": max(1000, threads + other_requests)}


def is_stream_request(environ: dict[str, Any], response_headers: Any = ()) -> bool:
    """Whether a request went to an sse_kit endpoint (answered or refused), asked
    for an event stream (``Accept`` names ``text/event-stream``, as ``EventSource``
    always sends), or got one."""
    if environ.get(ENVIRON_MARK) or "text/event-stream" in str(environ.get("HTTP_ACCEPT", "")):
        return True
    items = response_headers.items() if hasattr(response_headers, "items") else response_headers
    return any(
        str(name).lower() == "content-type" and str(value).startswith("text/event-stream")
        for name, value in items
    )


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, minus the query strings of stream requests.

    For a stream request (see :func:`is_stream_request`) the access-log atoms
    ``%(r)s`` (request line), ``%(q)s`` (query string) and the environ atoms
    ``%({raw_uri}e)s``/``%({query_string}e)s`` show :data:`REDACTED` instead of
    the query string; every other request is logged as gunicorn would. Enable it
    with ``logger_class = "sse_kit.gunicorn.AccessLogger"`` in the gunicorn config.
    """

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        query = environ.get("QUERY_STRING")
        if query and is_stream_request(environ, getattr(resp, "headers", ())):
            raw_uri = str(environ.get("RAW_URI", ""))
            path = raw_uri.split("?", 1)[0] + "?" + REDACTED
            atoms["r"] = f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"
            atoms["q"] = REDACTED
            atoms["{raw_uri}e"] = path
            atoms["{query_string}e"] = REDACTED
        return atoms
