"""Flask integration: a blueprint that streams events from a :class:`~sse_kit.Hub`.

::

    hub = sse_kit.Hub()
    app.register_blueprint(
        create_blueprint(hub, client_id=lambda req: f"user:{current_user.id}"),
        url_prefix="/events",
    )

The blueprint records its hub in ``app.extensions["sse_kit"]``, where
:mod:`sse_kit.gunicorn`'s hooks find it to start and stop it per worker.

Routes, under the blueprint's ``url_prefix``: ``GET /`` the stream,
``GET /sse_kit.js`` the browser helper (``docs/browser.md``), with
``tickets=...`` ``GET /ticket`` (a stream ticket for the session's client,
``docs/security.md``), and with ``metrics=True`` ``GET /metrics`` in the
Prometheus text format (``docs/operations.md``).
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from flask import Blueprint, Request, request, send_file
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ._admission import check_expiry, limit_rate, redeem_ticket
from ._cors import CORSPolicy
from ._hub import Hub
from ._options import check_callable, check_type, value_error
from ._ratelimit import RateLimit
from ._refusal import refuse, with_cors
from ._tickets import StreamTickets, epoch_of
from ._wsgi import check_request, make_client, open_stream

__all__ = ["SSEKitExtension", "anonymous_client_id", "create_blueprint"]

ClientIdFactory = Callable[[Request], str]
MetadataFactory = Callable[[Request], Mapping[str, Any]]
Authorize = Callable[[Request], "bool | str | datetime"]

# Every method is routed to the view, so that a wrong one gets sse_kit's one-line
# 405 rather than Flask's HTML page.
_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# A refusal reason is one line of at most this many characters.
_MAX_REASON: Final = 200

# The browser helper, shipped as package data.
SSE_KIT_JS: Final = Path(__file__).resolve().parent / "static" / "sse_kit.js"
# Browsers may reuse the helper this long without asking; then they revalidate (ETag).
_JS_MAX_AGE: Final = 3600


def anonymous_client_id(request: Request) -> str:
    """The default client ID: ``anon:`` and 16 random URL-safe characters.

    It trusts nothing the browser sends, so an anonymous stream can only be
    reached by ``anon:*`` broadcasts (or its own random ID).
    """
    return "anon:" + secrets.token_urlsafe(12)


@dataclass
class SSEKitExtension:
    """What ``app.extensions["sse_kit"]`` holds."""

    hubs: list[Hub]

    @property
    def hub(self) -> Hub:
        """The first hub registered on the app."""
        return self.hubs[0]


def _one_line(text: object, default: str) -> str:
    line = " ".join(str(text or "").split())
    if len(line) > _MAX_REASON:  # cut at a word, and say so
        line = line[: _MAX_REASON - 3].rsplit(" ", 1)[0] + "..."
    return line or default


def create_blueprint(
    hub: Hub,
    *,
    client_id: ClientIdFactory = anonymous_client_id,
    metadata: Mapping[str, Any] | MetadataFactory | None = None,
    name: str = "sse",
    authorize: Authorize | None = None,
    cors_origins: Iterable[str] | None = None,
    cors_credentials: bool = False,
    cors_max_age: int = 600,
    metrics: bool = False,
    tickets: StreamTickets | None = None,
    rate_limit: RateLimit | None = None,
) -> Blueprint:
    """A blueprint: ``GET /`` streams one client's events; ``GET /sse_kit.js``, the helper.

    A request meets, in order: the method, ``Accept`` and ``Origin`` checks, *rate_limit*,
    *authorize*, *client_id*, the hub's limits; the first that refuses answers a one-line
    reason. With *tickets*, *authorize* and *client_id* run on ``GET /ticket`` instead,
    and the stream request is admitted by its ticket.

    :param hub: the hub to register clients with.
    :param client_id: ``(request) -> str``: the connection's client ID, from your session
        or auth (never from what the browser sends); the default: random, under ``anon:``.
    :param metadata: a mapping, or ``(request) -> mapping``, for each client's
        ``connected`` event.
    :param name: the blueprint's name (endpoints ``<name>.stream``, ``.script``,
        ``.ticket``, ``.metrics``).
    :param authorize: ``(request) -> bool | str | datetime``, called before *client_id*:
        ``True`` opens the stream; an aware ``datetime`` opens it until then (the
        session's or token's expiry: the stream ends then, and the browser comes back
        through *authorize* and resumes); ``False`` answers ``403 forbidden``, a ``str``
        ``403`` with that reason. An :class:`~werkzeug.exceptions.HTTPException` either
        raises (``abort(401, "log in first")``) becomes a one-line answer with its status.
    :param cors_origins: the exact origins (``"https://app.example.com"``) whose
        pages may read the stream; ``None`` (default) sends no CORS header.
    :param cors_credentials: let those pages send cookies (``...-Allow-Credentials``).
    :param cors_max_age: seconds a browser may cache a preflight answer.
    :param metrics: also serve ``GET /metrics``, the hub's metrics for Prometheus
        (needs ``pip install 'sse_kit[prometheus]'``), open to whoever reaches the
        route: mount it where only your scraper does, or wrap it in your auth.
    :param tickets: authenticate streams by ticket (:class:`sse_kit.StreamTickets`):
        ``GET /ticket`` runs *authorize* and *client_id* (your session) and answers
        ``{"ticket": ..., "expires_in": seconds}`` (``no-store``); ``GET /?ticket=...``
        opens the ticket's stream once (``401`` otherwise); a *metadata* callable
        still runs on the stream request. ``sse_kit.js``'s ``ticket`` option fetches one.
    :param rate_limit: a :class:`sse_kit.RateLimit` on how often one source may open a
        stream (``429`` with ``Retry-After`` beyond it).
    :raises TypeError: if an argument is of the wrong type; the message names it.
    :raises ValueError: if a CORS option is invalid, or *cors_credentials* is set
        without *cors_origins*.
    :raises ImportError: if *metrics* is true and prometheus_client is missing.
    """
    cors = _checked_options(hub, client_id, metadata, authorize, cors_origins,
                            cors_credentials, cors_max_age)
    check_type("tickets", tickets, StreamTickets, optional=True)
    check_type("rate_limit", rate_limit, RateLimit, optional=True)
    bp = Blueprint(name, __name__)
    bp.record_once(functools.partial(_remember, hub))
    gate = _Gate(hub, cors, client_id, authorize)
    endpoint = _StreamEndpoint(gate, metadata, tickets, rate_limit)
    bp.add_url_rule("/", "stream", endpoint, methods=_METHODS, provide_automatic_options=False)
    bp.add_url_rule("/sse_kit.js", "script", _script, methods=["GET"])
    if tickets is not None:
        bp.add_url_rule("/ticket", "ticket", _TicketEndpoint(gate, tickets), methods=["GET"])
    if metrics:
        _add_metrics(bp, hub, name)
    return bp


def _checked_options(
    hub: object,
    client_id: object,
    metadata: object,
    authorize: object,
    cors_origins: Iterable[str] | None,
    cors_credentials: bool,
    cors_max_age: int,
) -> CORSPolicy | None:
    """create_blueprint's arguments checked; the CORS policy they make, if any."""
    check_type("hub", hub, Hub)
    check_callable("client_id", client_id, what="a callable (request) -> str")
    if not isinstance(metadata, Mapping):
        check_callable("metadata", metadata, optional=True,
                       what="a mapping or a callable (request) -> mapping")
    check_callable("authorize", authorize, optional=True,
                   what="a callable (request) -> bool | str | datetime")
    if cors_origins is not None:
        return CORSPolicy(cors_origins, credentials=cors_credentials, max_age=cors_max_age)
    check_type("cors_credentials", cors_credentials, bool)
    if cors_credentials:
        raise value_error("cors_credentials", "False without cors_origins", cors_credentials)
    return None


def _remember(hub: Hub, state: BlueprintSetupState) -> None:
    ext = state.app.extensions.setdefault("sse_kit", SSEKitExtension([]))
    if hub not in ext.hubs:
        ext.hubs.append(hub)


@dataclass(frozen=True)
class _Gate:
    """The application's say on a request: *authorize*, then *client_id*."""

    hub: Hub
    cors: CORSPolicy | None
    client_id: ClientIdFactory
    authorize: Authorize | None

    def admit(self) -> Response | tuple[str, float | None]:
        """The request's client ID and identity expiry (seconds since the
        epoch, or ``None``), or the refusal."""
        verdict = self._authorize()
        if isinstance(verdict, Response):
            return verdict
        try:
            cid = self.client_id(request)
        except HTTPException as exc:
            return self.refuse_http(exc)
        refusal = check_expiry(self.hub, request.environ, verdict, self.cors)
        return (cid, verdict) if refusal is None else refusal

    def _authorize(self) -> Response | float | None:
        """The refusal *authorize* gives this request, or the expiry it allows
        it until (``None``: no expiry)."""
        if self.authorize is None:
            return None
        try:
            verdict = self.authorize(request)
        except HTTPException as exc:
            return self.refuse_http(exc)
        if verdict is True:
            return None
        if isinstance(verdict, datetime):
            return epoch_of("the datetime authorize returned", verdict)
        if verdict is False or isinstance(verdict, str):
            return refuse(self.hub, request.environ, 403, _one_line(verdict or "", "forbidden"),
                          counter="forbidden", cors=self.cors)
        raise TypeError(
            f"authorize must return True, False, a str or a datetime, not {verdict!r}")

    def refuse_http(self, exc: HTTPException) -> Response:
        """The one-line answer to an HTTPException *authorize* or *client_id* raised."""
        status = exc.code or 403
        counter = "forbidden" if status in (401, 403) else "rejected"
        return refuse(self.hub, request.environ, status, _one_line(exc.description, exc.name),
                      counter=counter, cors=self.cors)


@dataclass(frozen=True)
class _StreamEndpoint:
    """The ``GET /`` view: the request pipeline, each step once, the first
    refusal answering."""

    gate: _Gate
    metadata: Mapping[str, Any] | MetadataFactory | None
    tickets: StreamTickets | None
    rate_limit: RateLimit | None

    def __call__(self) -> Response:
        hub, environ, cors = self.gate.hub, request.environ, self.gate.cors
        refusal = check_request(hub, environ, cors)
        if refusal is None:
            refusal = limit_rate(hub, environ, self.rate_limit, cors)
        if refusal is not None:
            return refusal
        admitted = self._admit()
        if isinstance(admitted, Response):
            return admitted
        cid, expires_at = admitted
        meta = self.metadata(request) if callable(self.metadata) else self.metadata
        return open_stream(hub, environ, make_client(hub, environ, cid, metadata=meta), cors,
                           expires_at=expires_at)

    def _admit(self) -> Response | tuple[str, float | None]:
        if self.tickets is None:
            return self.gate.admit()
        identity = redeem_ticket(self.gate.hub, request.environ, self.tickets, self.gate.cors)
        if isinstance(identity, Response):
            return identity
        return identity.client_id, identity.expires_at


@dataclass(frozen=True)
class _TicketEndpoint:
    """The ``GET /ticket`` view: a stream ticket for whom the gate admits."""

    gate: _Gate
    tickets: StreamTickets

    def __call__(self) -> Response:
        admitted = self.gate.admit()
        if isinstance(admitted, Response):
            return admitted
        cid, expires_at = admitted
        body = {"ticket": self.tickets.mint(cid, expires_at=expires_at),
                "expires_in": self.tickets.ttl}
        # no-store: a ticket is a credential; no cache may keep or replay it.
        answer = Response(json.dumps(body), mimetype="application/json",
                          headers={"Cache-Control": "no-store"})
        return with_cors(answer, request.environ, self.gate.cors)


def _script() -> Response:
    return send_file(SSE_KIT_JS, mimetype="text/javascript", max_age=_JS_MAX_AGE)


def _add_metrics(bp: Blueprint, hub: Hub, name: str) -> None:
    from .prometheus import CONTENT_TYPE, HubMetrics  # the optional extra

    exporter = HubMetrics(hub, hub_label=name)

    def metrics_text() -> Response:
        return Response(exporter.render(), mimetype=None, content_type=CONTENT_TYPE)

    bp.add_url_rule("/metrics", "metrics", metrics_text, methods=["GET"])
