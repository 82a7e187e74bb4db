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
``GET /sse_kit.js`` the browser helper (``docs/browser.md``), and with
``metrics=True`` ``GET /metrics`` in the Prometheus text format
(``docs/operations.md``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flask import Blueprint, Flask, Request, request, send_file
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from ._hub import Hub
from ._wsgi import serve_sse

__all__ = ["SSEKitExtension", "anonymous_client_id", "create_blueprint"]

ClientIdFactory = Callable[[Request], str]
MetadataFactory = Callable[[Request], Mapping[str, Any]]

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


def get_extension(app: Flask) -> SSEKitExtension | None:
    """The app's :class:`SSEKitExtension`, if a blueprint was registered."""
    ext = app.extensions.get("sse_kit")
    return ext if isinstance(ext, SSEKitExtension) else None


def create_blueprint(
    hub: Hub,
    *,
    client_id: ClientIdFactory = anonymous_client_id,
    metadata: Mapping[str, Any] | MetadataFactory | None = None,
    name: str = "sse",
    metrics: bool = False,
) -> Blueprint:
    """A blueprint whose ``GET /`` streams the events of one client, and whose
    ``GET /sse_kit.js`` serves the browser helper.

    :param hub: the hub to register clients with.
    :param client_id: ``(request) -> str``: the connection's client ID, derived
        from your session or auth (never from what the browser sends). The
        default gives each connection a random ID under ``anon:``.
    :param metadata: a mapping, or ``(request) -> mapping``, attached to each
        client and sent in its ``connected`` event.
    :param name: the blueprint's name (endpoints are ``<name>.stream``,
        ``<name>.script`` and ``<name>.metrics``).
    :param metrics: also serve ``GET /metrics``, the hub's metrics in the
        Prometheus text format (needs ``pip install 'sse_kit[prometheus]'``).
        It is open to whoever reaches the route: mount it where only your
        scraper does, or wrap it in your auth.
    :raises TypeError: if *hub* is not a Hub or *client_id* is not callable.
    :raises ImportError: if *metrics* is true and prometheus_client is missing.
    """
    if not isinstance(hub, Hub):
        raise TypeError(f"hub must be a sse_kit.Hub, not {type(hub).__name__}")
    if not callable(client_id):
        raise TypeError("client_id must be a callable (request) -> str")
    if metadata is not None and not (callable(metadata) or isinstance(metadata, Mapping)):
        raise TypeError("metadata must be a mapping or a callable (request) -> mapping")
    bp = Blueprint(name, __name__)

    @bp.record_once
    def _remember(state: BlueprintSetupState) -> None:
        ext = state.app.extensions.setdefault("sse_kit", SSEKitExtension([]))
        if hub not in ext.hubs:
            ext.hubs.append(hub)

    @bp.get("/")
    def stream() -> Response:
        meta = metadata(request) if callable(metadata) else metadata
        return serve_sse(hub, request, client_id(request), metadata=meta)

    @bp.get("/sse_kit.js")
    def script() -> Response:
        return send_file(SSE_KIT_JS, mimetype="text/javascript", max_age=_JS_MAX_AGE)

    if metrics:
        from .prometheus import CONTENT_TYPE, HubMetrics  # the optional extra

        exporter = HubMetrics(hub, hub_label=name)

        @bp.get("/metrics", endpoint="metrics")
        def metrics_text() -> Response:
            return Response(exporter.render(), mimetype=None, content_type=CONTENT_TYPE)

    return bp
