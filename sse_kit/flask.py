"""Flask integration: a blueprint that streams events from a :class:`~sse_kit.Hub`.

::

    hub = sse_kit.Hub()
    app.register_blueprint(
        create_blueprint(hub, client_id=lambda req: f"user:{current_user.id}"),
        url_prefix="/events",
    )

The blueprint records its hub in ``app.extensions["sse_kit"]``, where
:mod:`sse_kit.gunicorn`'s hooks find it to start and stop it per worker.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Request, request
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response

from ._hub import Hub
from ._wsgi import serve_sse

__all__ = ["SSEKitExtension", "anonymous_client_id", "create_blueprint"]

ClientIdFactory = Callable[[Request], str]
MetadataFactory = Callable[[Request], Mapping[str, Any]]


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
) -> Blueprint:
    """A blueprint whose ``GET /`` streams the events of one client.

    :param hub: the hub to register clients with.
    :param client_id: ``(request) -> str``: the connection's client ID, derived
        from your session or auth (never from what the browser sends). The
        default gives each connection a random ID under ``anon:``.
    :param metadata: a mapping, or ``(request) -> mapping``, attached to each
        client and sent in its ``connected`` event.
    :param name: the blueprint's name (endpoints are ``<name>.stream``).
    :raises TypeError: if *hub* is not a Hub or *client_id* is not callable.
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

    return bp
