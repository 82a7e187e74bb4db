"""Setups that cost streams or events, told once per process with their fix.

A new user's worst problems happen with nothing in the logs: every stream
holding a worker thread, gunicorn without sse_kit's worker class, each worker
with a hub of its own. The hub says each of them once per process, at the
moment it matters (the first stream that meets it, a worker's boot), as one
log line that names the fix, and counts it in ``misconfigured``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from ._stats import Counters

__all__ = [
    "PARKED_KEY",
    "SERVER_KEY",
    "THREADS_KEY",
    "Advisor",
    "log_through_gunicorn",
    "parked_advice",
    "thread_limit",
]

log = logging.getLogger("sse_kit")

# Set by sse_kit's gunicorn adapter (sse_kit._detach) in every request's environ:
# which adapter served it, and why a stream could not detach (when it cannot).
SERVER_KEY: Final = "sse_kit.server"
PARKED_KEY: Final = "sse_kit.parked_reason"
# Also set by that adapter: the worker's thread pool size (gunicorn's --threads).
THREADS_KEY: Final = "sse_kit.threads"

_DEPLOYMENT: Final = "see docs/deployment.md"


class Advisor:
    """Says each piece of advice once per process (the ``key`` decides "once")."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        # _lock guards _said; held only to test-and-add a key, never while logging.
        self._lock = threading.Lock()
        self._said: set[str] = set()

    def once(self, key: str, level: int, message: str, *args: Any) -> bool:
        """Log *message* at *level* unless *key* was said before; True if logged.
        A WARNING (or worse) is counted in ``misconfigured``."""
        with self._lock:
            if key in self._said:
                return False
            self._said.add(key)
        if level >= logging.WARNING:
            self._counters.add("misconfigured")
        log.log(level, message, *args)
        return True


def log_through_gunicorn() -> None:
    """In a gunicorn worker: send sse_kit's log lines (INFO and up, as gunicorn's
    ``--log-level`` says) to gunicorn's error log, with its timestamps, unless
    the app has set up logging itself (a handler on the root or the ``sse_kit``
    logger) or this process is not a configured gunicorn worker. Idempotent."""
    ours = logging.getLogger("sse_kit")
    error_log = logging.getLogger("gunicorn.error")
    if ours.handlers or logging.getLogger().handlers or not error_log.handlers:
        return
    for handler in error_log.handlers:
        ours.addHandler(handler)
    ours.setLevel(error_log.level or logging.INFO)
    ours.propagate = False


def parked_advice(environ: Mapping[str, Any], fast_path: bool) -> tuple[str, int, str]:
    """Why a stream of this request holds a server thread, and the fix:
    ``(key, level, message)`` for :meth:`Advisor.once`."""
    if not fast_path:
        return ("fast_path_off", logging.INFO,
                "sse_kit: Hub(fast_path=False): every open stream holds a server thread "
                "for its whole life")
    if environ.get(SERVER_KEY):
        reason = str(environ.get(PARKED_KEY) or "this request")
        return (f"parked:{reason}", logging.WARNING,
                f"sse_kit: streams over {reason} cannot detach: each holds a worker thread "
                f"for its whole life. {_fix_for(reason)} ({_DEPLOYMENT})")
    software = str(environ.get("SERVER_SOFTWARE") or "this WSGI server")
    if "gunicorn.socket" in environ or software.startswith("gunicorn"):
        log_through_gunicorn()  # so that this line reaches gunicorn's error log
        return ("no_adapter:gunicorn", logging.WARNING,
                "sse_kit: gunicorn serves this app without sse_kit's worker class or hooks: "
                "every open stream holds one worker thread for its whole life (stream number "
                "--threads + 1 waits, and so does every other request of this worker), and "
                "SIGTERM waits graceful_timeout for open streams. Fix: gunicorn -k "
                f"sse_kit.gunicorn.ThreadWorker ({_DEPLOYMENT})")
    return ("no_adapter", logging.WARNING,
            f"sse_kit: {software} gives every open stream a thread of its own for its whole "
            "life: size its thread pool for your streams plus your other requests (and set "
            "Hub(max_clients=...) below it, so the next stream gets 503), or serve with "
            f"gunicorn -k sse_kit.gunicorn.ThreadWorker ({_DEPLOYMENT})")


def thread_limit(environ: Mapping[str, Any], max_clients: int | None) -> int | None:
    """How many streams that hold a thread this worker may serve at once, where
    sse_kit knows its pool (under its gunicorn adapter) and the hub sets no
    ``max_clients`` of its own: the pool less an eighth (at least one thread)
    kept for ordinary requests. ``None``: no such limit."""
    threads = environ.get(THREADS_KEY)
    if max_clients is not None or not isinstance(threads, int) or threads < 1:
        return None
    return threads - max(1, threads // 8)


def _fix_for(reason: str) -> str:
    if "TLS" in reason:
        return "Terminate TLS at a proxy and speak plain HTTP/1.1 to gunicorn."
    if "HTTP/1.0" in reason:
        return ("A proxy speaking HTTP/1.0 to gunicorn? Set it to HTTP/1.1 "
                "(nginx: proxy_http_version 1.1).")
    if "HTTP/2" in reason:
        return "Terminate HTTP/2 at a proxy and speak HTTP/1.1 to gunicorn."
    return "Serve streams over plain HTTP/1.1."
