"""sse_kit: Server-Sent Events for threaded WSGI applications.

A :class:`Hub` routes events to connected clients by glob patterns over client
IDs; :func:`serve_sse` (or :func:`sse_kit.flask.create_blueprint`) streams each
client's events. Adapters live in their own modules, imported only when used:
:mod:`sse_kit.flask`, :mod:`sse_kit.gunicorn`, :mod:`sse_kit.redis` (a backplane
that lets every worker and host deliver every event).
"""

from __future__ import annotations

from ._backplane import Backplane
from ._client import (
    Client,
    ClientLimits,
    ClientOption,
    with_metadata,
    with_session_id,
    with_user_id,
)
from ._component import Broadcaster, Component, Description, Health
from ._cors import CORSPolicy
from ._event import (
    EVENT_TYPE_CONNECTED,
    EVENT_TYPE_ERROR,
    EVENT_TYPE_KEEPALIVE,
    EVENT_TYPE_MESSAGE,
    EVENT_TYPE_METRIC,
    EVENT_TYPE_PRESENCE,
    EVENT_TYPE_RESET,
    ConnectedEvent,
    Event,
)
from ._exceptions import (
    BackplaneUnavailable,
    EventTooLarge,
    HubAlreadyRunning,
    HubFull,
    HubNotRunning,
    InvalidPattern,
    InvalidTicket,
    SSEKitError,
)
from ._hub import Hub
from ._ratelimit import RateLimit
from ._receipt import Receipt
from ._tickets import Identity, StreamTickets
from ._wsgi import serve_sse

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPE_CONNECTED",
    "EVENT_TYPE_ERROR",
    "EVENT_TYPE_KEEPALIVE",
    "EVENT_TYPE_MESSAGE",
    "EVENT_TYPE_METRIC",
    "EVENT_TYPE_PRESENCE",
    "EVENT_TYPE_RESET",
    "Backplane",
    "BackplaneUnavailable",
    "Broadcaster",
    "CORSPolicy",
    "Client",
    "ClientLimits",
    "ClientOption",
    "Component",
    "ConnectedEvent",
    "Description",
    "Event",
    "EventTooLarge",
    "Health",
    "Hub",
    "HubAlreadyRunning",
    "HubFull",
    "HubNotRunning",
    "Identity",
    "InvalidPattern",
    "InvalidTicket",
    "RateLimit",
    "Receipt",
    "SSEKitError",
    "StreamTickets",
    "__version__",
    "serve_sse",
    "with_metadata",
    "with_session_id",
    "with_user_id",
]
