"""The demo application: one hub, one page, and the routes that publish to it.

Routes:

* ``GET /``: the page (``templates/index.html``, ``static/``);
* ``GET /events/``: the stream (:func:`sse_kit.flask.create_blueprint`);
* ``POST /broadcast``: form fields ``pattern``, ``message``, ``event``; publishes
  ``message`` to every client whose ID matches ``pattern``;
* ``POST /jobs``: starts a simulated job that reports its progress as ``job``
  events to the browser that started it;
* ``POST /cut``: ends this browser's streams from the server
  (:meth:`Hub.disconnect`), then publishes :data:`MISSED` ``missed`` events to it
  while it is away: the browser reconnects by itself and the page shows them
  replayed from history, in order, once each;
* ``GET /events/sse_kit.js``: the browser helper the page uses;
* ``GET /events/metrics``: the hub's Prometheus metrics (when prometheus_client
  is installed);
* ``GET /healthz``: ``ok`` while the hub runs, else ``503``.

Every browser gets a random token in Flask's signed session cookie, and its
client ID is ``browser:<token>``: the browser cannot choose it, and all tabs of
one browser share it, so each of them sees that browser's job progress.
"""

# design:
# The hub thread routes. Two kinds of demo thread publish to it: one ticker
# (the ``metric`` event, server clock plus hub.stats(), to "*" every second; the
# page draws its charts from these) and
# one short-lived thread per job. Both wait on Demo._stop with a timeout between
# events and end as soon as the hub stops (hub.running is False or a broadcast
# raises HubNotRunning), so SIGTERM ends them with the streams. Demo.start()
# starts them in the worker process: from gunicorn_conf.post_worker_init under
# gunicorn, else on the first request; never at import, never before a fork.

from __future__ import annotations

import importlib.util
import itertools
import os
import secrets
import threading
import time
from typing import Any, Final

from flask import Flask, Request, render_template, request, session
from werkzeug.wrappers import Response

from sse_kit import (
    EVENT_TYPE_MESSAGE,
    EVENT_TYPE_METRIC,
    Component,
    Hub,
    HubNotRunning,
    InvalidPattern,
)
from sse_kit.flask import create_blueprint

__all__ = ["Demo", "browser_client_id", "create_app", "demo_of"]

EXTENSION: Final = "sse_kit_demo"  # key of the Demo in app.extensions
EVENT_TYPE_JOB: Final = "job"  # a job's progress, sent to the browser that started it
EVENT_TYPE_NOTICE: Final = "notice"  # a broadcast the page shows as a banner
EVENT_TYPE_MISSED: Final = "missed"  # published by POST /cut while that browser is away
MISSED: Final = 5  # events POST /cut publishes while the browser is away
RETRY_MS: Final = 1000  # the retry: hint: how soon a browser comes back after a cut
# Event types POST /broadcast accepts; the others are the demo's own.
BROADCAST_TYPES: Final = (EVENT_TYPE_MESSAGE, EVENT_TYPE_NOTICE)
MAX_MESSAGE: Final = 2000  # characters in one broadcast message
MAX_PATTERN: Final = 200  # characters in one broadcast pattern
# Streams beyond this get 503 with Retry-After. Under sse_kit's worker class a
# stream holds no thread, so the cap is about descriptors, not threads.
MAX_STREAMS: Final = 10_000


def browser_client_id(request: Request) -> str:
    """The client ID of this browser: ``browser:<token>`` from the signed session."""
    return f"browser:{_token()}"


def _token() -> str:
    token = session.get("token")
    if not isinstance(token, str):
        # URL-safe base64: no '*', '?' or '[', so the ID is also an exact pattern.
        token = session["token"] = secrets.token_urlsafe(9)
    return token


class Demo:
    """The demo's background work: the metric ticker and the simulated jobs.

    :param hub: the hub to publish to.
    :param tick: seconds between two ``metric`` events.
    :param steps: steps in one job.
    :param step_seconds: seconds one job step takes.
    :param max_jobs: jobs running at once in this process; more are refused.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        tick: float = 1.0,
        steps: int = 10,
        step_seconds: float = 0.5,
        max_jobs: int = 32,
    ) -> None:
        self.hub = hub
        self.tick = tick
        self.steps = steps
        self.step_seconds = step_seconds
        self.max_jobs = max_jobs
        self._stop = threading.Event()  # set by stop(); every demo thread waits on it
        # _lock guards _pid and _jobs; held only to read or bump them.
        self._lock = threading.Lock()
        self._pid = 0  # the process the ticker was started in
        self._jobs = 0  # jobs running now
        self._job_ids = itertools.count(1)

    def start(self) -> None:
        """Start the hub and the ticker in this process, once.

        Idempotent, and it never restarts a hub that has stopped since (a request
        that arrives while gunicorn shuts the worker down must not revive it).
        """
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        self.hub.start()
        threading.Thread(target=self._tick, name="sse_kit-demo-ticker", daemon=True).start()

    def stop(self) -> None:
        """Stop the demo's threads and the hub."""
        self._stop.set()
        self.hub.stop()

    def start_job(self, client_id: str) -> int | None:
        """Start a job that reports to *client_id*; ``None`` when too many run."""
        with self._lock:
            if self._jobs >= self.max_jobs:
                return None
            self._jobs += 1
        job_id = next(self._job_ids)
        threading.Thread(
            target=self._run_job,
            args=(job_id, client_id),
            name=f"sse_kit-demo-job-{job_id}",
            daemon=True,
        ).start()
        return job_id

    def _publish(self, pattern: str, data: Any, event: str) -> bool:
        """Broadcast; False once the hub has stopped (the caller then ends)."""
        if self._stop.is_set() or not self.hub.running:
            return False
        try:
            self.hub.broadcast_to_pattern(pattern, data, event=event)
        except HubNotRunning:
            return False
        return True

    def _tick(self) -> None:
        while not self._stop.wait(self.tick):
            stats = self.hub.stats()
            # ts: for the page's per-second rates (replayed ticks keep their own time).
            metric = {"time": time.strftime("%H:%M:%S"), "ts": round(time.time(), 3), **stats}
            if not self._publish("*", metric, EVENT_TYPE_METRIC):
                return

    def _run_job(self, job_id: int, client_id: str) -> None:
        try:
            for step in range(self.steps + 1):
                if step and self._stop.wait(self.step_seconds):
                    return
                progress = {
                    "job": job_id,
                    "step": step,
                    "steps": self.steps,
                    "percent": round(100 * step / self.steps),
                    "state": "done" if step == self.steps else "running",
                }
                # The client ID is its own exact pattern: every tab of this
                # browser (one ID, several connections) gets the progress.
                if not self._publish(client_id, progress, EVENT_TYPE_JOB):
                    return
        finally:
            with self._lock:
                self._jobs -= 1


def demo_of(app: object) -> Demo | None:
    """The :class:`Demo` of an app built by :func:`create_app`, else ``None``."""
    extensions = getattr(app, "extensions", None)
    demo = extensions.get(EXTENSION) if isinstance(extensions, dict) else None
    return demo if isinstance(demo, Demo) else None


def _refuse(status: int, reason: str, **headers: str) -> Response:
    """A one-line plain-text error, as sse_kit's own endpoints answer."""
    return Response(reason + "\n", status=status, mimetype="text/plain", headers=headers)


def create_app() -> Flask:
    """Build the demo app. Starts no thread: see :meth:`Demo.start`.

    The session secret is ``$SSE_KIT_DEMO_SECRET``, or a random one per process
    (every browser then gets a new ID when the server restarts).
    """
    app = Flask(__name__)
    app.secret_key = os.environ.get("SSE_KIT_DEMO_SECRET") or secrets.token_hex()
    app.config.update(SESSION_COOKIE_SAMESITE="Lax")

    # History on: reconnects resume losslessly.
    hub = Hub(max_clients=MAX_STREAMS, retry=RETRY_MS)
    demo = Demo(hub)
    component = Component(hub, path="/events")
    app.extensions[EXTENSION] = demo
    metrics = importlib.util.find_spec("prometheus_client") is not None
    app.register_blueprint(
        create_blueprint(hub, client_id=browser_client_id, metrics=metrics),
        url_prefix="/events",
    )

    @app.before_request
    def _start_and_identify() -> None:
        demo.start()  # a no-op after the first call in this process
        _token()

    @app.get("/")
    def index() -> str:
        return render_template(
            "index.html",
            client_id=browser_client_id(request),
            history_size=hub.history_size,
            history_ttl=int(hub.history_ttl),
            max_clients=hub.max_clients,
            retry_ms=hub.retry,
            missed=MISSED,
            metrics=metrics,
        )

    @app.post("/broadcast")
    def broadcast() -> Response | dict[str, Any]:
        pattern = request.form.get("pattern", "*").strip()
        message = request.form.get("message", "")
        event = request.form.get("event", EVENT_TYPE_MESSAGE)
        if event not in BROADCAST_TYPES:
            return _refuse(400, f"event must be one of {', '.join(BROADCAST_TYPES)}, got {event!r}")
        if not message.strip():
            return _refuse(400, "message must not be empty")
        if len(message) > MAX_MESSAGE or len(pattern) > MAX_PATTERN:
            return _refuse(
                400,
                f"message and pattern may have at most {MAX_MESSAGE} and {MAX_PATTERN} "
                f"characters, got {len(message)} and {len(pattern)}",
            )
        try:
            hub.broadcast_to_pattern(pattern, message, event=event)
        except InvalidPattern as exc:
            return _refuse(400, f"invalid pattern: {exc}")
        except HubNotRunning:
            return _refuse(503, "the event hub is not running", **{"Retry-After": "1"})
        # Counted after the broadcast, so it is "who was connected then", near enough.
        return {"pattern": pattern, "event": event, "recipients": len(hub.clients(pattern))}

    @app.post("/jobs")
    def start_job() -> Response | tuple[dict[str, Any], int]:
        client_id = browser_client_id(request)
        job_id = demo.start_job(client_id)
        if job_id is None:
            return _refuse(
                429, f"{demo.max_jobs} jobs are running; try again shortly", **{"Retry-After": "5"}
            )
        return {"job": job_id, "pattern": client_id, "steps": demo.steps}, 202

    @app.post("/cut")
    def cut() -> Response | dict[str, Any]:
        client_id = browser_client_id(request)
        try:
            # Runs on the hub thread: the broadcasts below come after the cut, so
            # they cannot reach the old streams; the browser gets them on resume.
            streams = hub.disconnect(client_id)
            for n in range(1, MISSED + 1):
                away = {"n": n, "of": MISSED, "text": f"sent while you were away ({n}/{MISSED})"}
                hub.broadcast_to_pattern(client_id, away, event=EVENT_TYPE_MISSED)
        except HubNotRunning:
            return _refuse(503, "the event hub is not running", **{"Retry-After": "1"})
        return {"cut": streams, "missed": MISSED, "pattern": client_id}

    @app.get("/healthz")
    def healthz() -> Response:
        health = component.health()
        if health.healthy:
            return Response("ok\n", mimetype="text/plain")
        return _refuse(503, health.message)

    return app
