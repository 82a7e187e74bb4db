"""gunicorn integration: a worker class, or server hooks for a config file.

The one-flag form: sse_kit's worker class, a gunicorn gthread worker with
everything below built in, no config file needed::

    gunicorn -k sse_kit.gunicorn.ThreadWorker --threads 8 'myapp:create_app()'

In it:

* each worker starts the app's hubs once it has loaded the app (a hub thread
  started before ``fork()`` does not survive it);
* a stream's connection is *detached* after its first chunk: the hub side
  writes everything after it and the worker thread goes back to the pool, so
  ``--threads`` bounds the requests being handled, not the streams open (see
  ``docs/performance.md``). Where a stream cannot detach (HTTP/1.0, TLS in
  gunicorn itself, ``Hub(fast_path=False)``) it holds its thread (the parked path);
* on ``SIGTERM``/``SIGINT``/``SIGQUIT`` the worker stops its hubs *first*, which
  ends every stream at once (each gets a short ``retry:`` hint and the end of its
  body), so the worker exits promptly instead of waiting out ``graceful_timeout``;
* when the worker leaves on its own (``max_requests``) it stops its hubs as soon
  as gunicorn decides so;
* stream requests' query strings stay out of gunicorn's access log (a stream
  URL may carry a token; see :data:`REDACTED`).

The config-file form, for ``-k gthread`` (or when you need your own worker
class): the same behaviour through server hooks::

    # gunicorn.conf.py
    from sse_kit.gunicorn import (  # noqa: F401
        child_exit, post_fork, post_request, post_worker_init, worker_exit,
    )

    worker_class = "gthread"
    threads = 8
    logger_class = "sse_kit.gunicorn.AccessLogger"  # query strings out of the log

``child_exit`` (in the master) forgets a dead worker's live Prometheus gauges
when ``PROMETHEUS_MULTIPROC_DIR`` is set (see :mod:`sse_kit.prometheus`); add it
to the config file with the worker class too.

Both forms find hubs through the loaded app: a Flask app with an sse_kit
blueprint (``app.extensions["sse_kit"]``), or any WSGI callable with an
``sse_kit_hubs`` attribute (a list of hubs) for other frameworks.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]
from gunicorn.workers.gthread import (  # type: ignore[import-untyped]
    ThreadWorker as _GThreadWorker,
)

from ._advice import log_through_gunicorn
from ._detach import REDACTED, detaching, is_stream_request, layout_problem
from ._hub import Hub
from ._options import check_int

__all__ = [
    "REDACTED",
    "AccessLogger",
    "ThreadWorker",
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

log = logging.getLogger(__name__)

# Signals on which gunicorn asks a worker to leave; the hubs stop first.
_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Smallest stack set_thread_stack_size() accepts: Flask views, Jinja and json
# recurse in C; below this a deep template could overflow it.
MIN_THREAD_STACK = 128 * 1024
# Seconds a leaving worker waits for its hubs to end every stream.
_STOP_TIMEOUT = 10.0
# What handle_http2() returns for a connection an sse_kit session took (see
# sse_kit._h2serve): gunicorn must neither close it nor count it finished;
# the session does both.
_TAKEN = object()


def find_hubs(app: object) -> list[Hub]:
    """The hubs a loaded WSGI app declares (see the module docstring)."""
    app = getattr(app, "sse_kit_app", app)  # through sse_kit's own wrapper
    hubs: list[Hub] = list(getattr(app, "sse_kit_hubs", None) or [])
    extensions = getattr(app, "extensions", None)
    if isinstance(extensions, dict):
        ext = extensions.get("sse_kit")
        hubs.extend(getattr(ext, "hubs", None) or [])
    return [h for i, h in enumerate(hubs) if isinstance(h, Hub) and h not in hubs[:i]]


def _detaching_app(worker: Any, redact_queries: bool) -> Any:
    """The worker's app, wrapped so that its streams detach, if this gunicorn's
    layout allows it; else the app as it is, with one WARNING."""
    problem = layout_problem()
    if problem is not None:
        log.warning(
            "sse_kit.gunicorn: streams will each hold a worker thread (the parked "
            "path): %s (gunicorn %s). Size --threads for your streams, or use a "
            "gunicorn version sse_kit supports (see docs/deployment.md).",
            problem, _gunicorn_version())
        return worker.wsgi
    threads = getattr(getattr(worker, "cfg", None), "threads", None)
    return detaching(worker.wsgi, redact_queries=redact_queries,
                     threads=threads if isinstance(threads, int) else None)


def _gunicorn_version() -> str:
    import gunicorn  # type: ignore[import-untyped]

    return str(getattr(gunicorn, "__version__", "?"))


def _protocols(cfg: Any) -> list[str]:
    """gunicorn's ``http_protocols`` (gunicorn >= 25; before, HTTP/1 only)."""
    try:
        value = getattr(cfg, "http_protocols", None)
    except Exception:  # an older gunicorn's Config raises for unknown settings
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(p) for p in value or []]


def _speaks_http2(cfg: Any) -> bool:
    """Whether gunicorn may negotiate HTTP/2: ``h2`` in ``http_protocols``, with
    TLS (ALPN) or cleartext HTTP/2 switched on."""
    if "h2" not in _protocols(cfg):
        return False
    cleartext = getattr(cfg, "http2_cleartext", "off")
    return bool(getattr(cfg, "is_ssl", False)) or cleartext not in (None, False, "off")


def _stop_then(
    hubs: Callable[[], list[Hub]], previous: Any
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        for hub in hubs():
            hub.stop(timeout=0)  # only enqueues: safe in a signal handler
        if callable(previous):
            previous(signum, frame)

    return handler


def _stop_hubs_first(hubs: Callable[[], list[Hub]]) -> None:
    """Make this process's exit signals stop *hubs* before gunicorn's handlers run."""
    for signum in _EXIT_SIGNALS:
        signal.signal(signum, _stop_then(hubs, signal.getsignal(signum)))


class ThreadWorker(_GThreadWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's gthread worker with sse_kit built in (see the module docstring).

    Use it with ``gunicorn -k sse_kit.gunicorn.ThreadWorker``; no config file
    and no hooks are needed (the hooks, if also configured, do nothing here).
    """

    sse_kit_hubs: list[Hub]
    #: The HTTP/2 connections this worker's sessions serve (sse_kit._h2);
    #: changed on the worker's main thread only (through gunicorn's method queue).
    sse_kit_h2_sessions: set[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sse_kit_h2_sessions = set()
        self._sse_kit_h2: bool | None = None  # whether HTTP/2 is taken over; decided once

    def init_signals(self) -> None:
        """gunicorn's signal handlers, behind one that stops the hubs first."""
        super().init_signals()
        _stop_hubs_first(lambda: getattr(self, "sse_kit_hubs", []))

    def load_wsgi(self) -> None:
        """Load the app, start its hubs, and let its streams detach."""
        super().load_wsgi()
        self.sse_kit_hubs = find_hubs(self.wsgi)
        if not self.sse_kit_hubs:
            log.warning("sse_kit.gunicorn.ThreadWorker: the app declares no hub; nothing "
                        "to start (see sse_kit.gunicorn.find_hubs)")
        _start(self, self.sse_kit_hubs)
        self.wsgi: Any = _detaching_app(self, redact_queries=True)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """gunicorn's request handling; when the worker decides to leave
        (``max_requests``), its hubs stop at once (no signal says so)."""
        try:
            return super().handle_request(req, conn)
        finally:
            if not self.alive:
                for hub in self.sse_kit_hubs:
                    hub.stop(timeout=0)

    def handle_http2(self, conn: Any) -> Any:
        """Serve an HTTP/2 connection's requests concurrently: an sse_kit session
        takes the connection (see sse_kit._h2serve) and this pool thread returns.
        Where this gunicorn's layout is not the one sse_kit knows, gunicorn's own
        handling (one request after another), told once at boot."""
        if self._takes_http2():
            from ._h2serve import take_over

            if take_over(self, conn) is not None:
                return _TAKEN
        return super().handle_http2(conn)

    def handle_h2c_upgrade(self, conn: Any, req: Any, settings: Any) -> Any:
        """An HTTP/1.1 request asking for ``Upgrade: h2c`` (cleartext HTTP/2
        with ``--http2-cleartext upgrade``): the connection switches to HTTP/2
        and an sse_kit session serves it from that request on (see
        sse_kit._h2serve), so an event stream asking for the upgrade detaches
        like any other."""
        if self._takes_http2():
            from ._h2serve import take_over_upgrade

            if take_over_upgrade(self, conn, req, settings) is not None:
                return _TAKEN
        return super().handle_h2c_upgrade(conn, req, settings)

    def _takes_http2(self) -> bool:
        if self._sse_kit_h2 is None:
            self._sse_kit_h2 = _http2_problem() is None
        return self._sse_kit_h2

    def finish_request(self, *args: Any) -> None:
        """gunicorn's end of a connection job, except for an HTTP/2 connection an
        sse_kit session took: that one stays counted until the session closes it.
        (The job's future comes last: ``(conn, fs)`` since gunicorn 25, ``(fs,)`` before.)"""
        fs = args[-1]
        if not fs.cancelled() and fs.exception() is None and fs.result() is _TAKEN:
            return
        super().finish_request(*args)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """gunicorn's graceful exit; HTTP/2 sessions refuse new streams and close
        once theirs have ended (the hubs, stopped first, end the event streams)."""
        super().handle_exit(sig, frame)
        for session in list(self.sse_kit_h2_sessions):
            session.drain()

    def handle_http2_request(self, req: Any, conn: Any, h2_conn: Any) -> Any:
        """gunicorn's HTTP/2 request handling; when the worker decides to leave
        (``max_requests``), its hubs stop and its HTTP/2 sessions drain."""
        try:
            return super().handle_http2_request(req, conn, h2_conn)
        finally:
            if not self.alive:
                for hub in self.sse_kit_hubs:
                    hub.stop(timeout=0)
                for session in list(self.sse_kit_h2_sessions):
                    session.drain()

    def run(self) -> None:
        """gunicorn's loop; then the hubs end every stream, and the HTTP/2
        sessions close (END_STREAM, GOAWAY), before the process exits."""
        try:
            super().run()
        finally:
            sessions = list(self.sse_kit_h2_sessions)
            for session in sessions:
                session.drain()
            for hub in getattr(self, "sse_kit_hubs", []):
                hub.stop(timeout=_STOP_TIMEOUT)
            # gunicorn's count of open connections cannot be relied on to wait
            # for them (gunicorn 27 counts a TLS connection that fails its
            # handshake off twice), so the sessions are waited for here.
            deadline = time.monotonic() + _STOP_TIMEOUT
            for session in sessions:
                session.join(max(0.0, deadline - time.monotonic()))


def _http2_problem() -> str | None:
    """Why sse_kit's worker class cannot serve HTTP/2 itself here, or ``None``."""
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        return "the h2 package is not installed"
    from ._h2serve import layout_problem

    return layout_problem()


def _start(worker: Any, hubs: list[Hub]) -> None:
    """Start *hubs* in *worker*, with sse_kit's log lines in gunicorn's error log
    and, in the first worker, the advice a multi-worker setup needs."""
    log_through_gunicorn()
    for hub in hubs:
        hub.start()
    worker.sse_kit_hubs = hubs
    cfg = getattr(worker, "cfg", None)
    if _speaks_http2(cfg):
        _advise_http2(worker, hubs, ",".join(_protocols(cfg)))
    workers = getattr(cfg, "workers", 1)
    if isinstance(workers, int) and workers > 1 and getattr(worker, "age", 1) == 1:
        for hub in hubs:
            if hub.backplane is None:
                hub.advise_once(
                    "workers_without_backplane", logging.WARNING,
                    "sse_kit: %d workers and no backplane: each worker has its own hub, so "
                    "a broadcast reaches only the streams of the worker that made it, and a "
                    "browser that reconnects to another worker cannot resume. Fix: "
                    "Hub(backplane=sse_kit.redis.RedisBackplane(url)) (docs/redis.md), or "
                    "-w 1 (a worker serves thousands of streams)", workers)





def _advise_http2(worker: Any, hubs: list[Hub], protocols: str) -> None:
    """Say once at boot how this worker serves HTTP/2, and the fix if it freezes."""
    problem = _http2_problem() if isinstance(worker, ThreadWorker) else None
    if isinstance(worker, ThreadWorker) and problem is None:
        log.info("sse_kit: HTTP/2 is on (http_protocols=%s): sse_kit.gunicorn.ThreadWorker "
                 "serves each connection's streams concurrently", protocols)
        return
    where = (f"sse_kit.gunicorn.ThreadWorker cannot serve HTTP/2 itself here ({problem}; "
             f"gunicorn {_gunicorn_version()}), so gunicorn" if problem else "gunicorn")
    fix = ("terminate HTTP/2 at a proxy and speak HTTP/1.1 to gunicorn" if problem else
           "gunicorn -k sse_kit.gunicorn.ThreadWorker, or terminate HTTP/2 at a proxy and "
           "speak HTTP/1.1 to gunicorn")
    for hub in hubs:
        hub.advise_once(
            "http2", logging.WARNING,
            "sse_kit: HTTP/2 is on (http_protocols=%s): %s serves the requests of one "
            "HTTP/2 connection one after another on one thread, and a browser sends all of "
            "a page's requests over one connection, so while an EventSource stream is open "
            "there, the page's other requests wait, and streams hold their thread. Fix: %s "
            "(docs/deployment.md)", protocols, where, fix)


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn hook: with ``preload_app``, start the preloaded app's hubs."""
    if isinstance(worker, ThreadWorker):
        return  # it starts them itself
    app = getattr(getattr(worker, "app", None), "callable", None)
    hubs = find_hubs(app) if app is not None else []
    if hubs:
        _start(worker, hubs)


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: start the loaded app's hubs in this worker, make the
    worker's exit signals stop them first, and, in a gthread worker, let its
    streams detach after their first chunk."""
    if isinstance(worker, ThreadWorker):
        return  # it does all this itself
    hubs = getattr(worker, "sse_kit_hubs", None) or find_hubs(getattr(worker, "wsgi", None))
    if not hubs:
        log.warning("sse_kit.gunicorn: the app declares no hub; nothing to start")
        return
    _start(worker, hubs)
    # gunicorn installed its handlers in init_signals(), after post_fork: wrap them now.
    _stop_hubs_first(lambda: hubs)
    if type(worker) is _GThreadWorker:
        # The access log is the logger_class's business here (AccessLogger).
        worker.wsgi = _detaching_app(worker, redact_queries=False)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """gunicorn hook: when the worker is leaving on its own (``max_requests``
    reached: no signal is sent), stop its hubs so open streams end now instead
    of holding the worker until ``graceful_timeout``."""
    if not getattr(worker, "alive", True):
        for hub in getattr(worker, "sse_kit_hubs", None) or []:
            hub.stop(timeout=0)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: stop this worker's hubs (every stream gets its end)."""
    for hub in getattr(worker, "sse_kit_hubs", None) or []:
        hub.stop(timeout=_STOP_TIMEOUT)


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

    :raises TypeError: if *size* is not an ``int``.
    :raises ValueError: if *size* is below :data:`MIN_THREAD_STACK` bytes.
    """
    check_int("size", size, MIN_THREAD_STACK, unit="bytes")
    return threading.stack_size(size)


def sizing(max_streams: int, *, other_requests: int = 8) -> dict[str, int]:
    """gthread settings for a worker that serves *max_streams* parked streams at once.

    Where streams cannot detach (see ``docs/deployment.md``: TLS in gunicorn,
    HTTP/1.0, ``Hub(fast_path=False)``) every open stream holds one worker
    thread, so ``threads`` must cover the
    streams plus the threads ordinary routes need; gthread stops accepting
    connections beyond ``worker_connections`` (default 1000), so it must be at
    least ``threads``. Give the hub ``max_clients=max_streams`` so that stream
    number ``max_streams + 1`` gets ``503`` instead of a thread.

    :returns: ``{"threads": ..., "worker_connections": ...}`` for the config.
    :raises TypeError: if an argument is not an ``int``.
    :raises ValueError: if an argument is below 1.
    """
    check_int("max_streams", max_streams, 1)
    check_int("other_requests", other_requests, 1)
    threads = max_streams + other_requests
    return {"threads": threads, "worker_connections": max(1000, threads + other_requests)}


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, minus the query strings of stream requests.

    For a stream request (see :func:`is_stream_request`, or a response of type
    ``text/event-stream``) the access-log atoms
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
