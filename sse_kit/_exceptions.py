"""The exceptions sse_kit raises.

Every exception below derives from :class:`SSEKitError`, so ``except SSEKitError``
catches every refusal this library makes on purpose at run time. Where the meaning
matches a builtin, the builtin is mixed in, so callers that already catch
``ValueError`` or ``RuntimeError`` keep working::

    SSEKitError
    ├── InvalidPattern(SSEKitError, ValueError)     a client-ID glob is empty
    ├── EventTooLarge(SSEKitError, ValueError)      an encoded event exceeds max_event_size
    ├── HubNotRunning(SSEKitError, RuntimeError)    the hub thread is not running
    ├── HubAlreadyRunning(SSEKitError, RuntimeError)
    │                                               Hub.run() on a hub already running here
    ├── HubFull(SSEKitError, RuntimeError)          max_clients (or max_clients_per_id) reached
    ├── InvalidTicket(SSEKitError, ValueError)      a stream ticket is bad, expired or used
    └── BackplaneUnavailable(SSEKitError, ConnectionError)
                                                    the broker behind a backplane cannot be reached

An argument of the wrong type or value (a ``Hub`` option, a ``Client`` ID of
another type, a pattern that is not a ``str``) is a mistake in the calling code,
not a condition to handle: it raises a plain ``TypeError`` (wrong type) or
``ValueError`` (wrong value) naming the argument, what was expected and what was
received (one rule, checked in one place: ``sse_kit._options``).
"""

from __future__ import annotations

__all__ = [
    "BackplaneUnavailable",
    "EventTooLarge",
    "HubAlreadyRunning",
    "HubFull",
    "HubNotRunning",
    "InvalidPattern",
    "InvalidTicket",
    "SSEKitError",
]


class SSEKitError(Exception):
    """Base class of every error sse_kit raises on purpose."""


class InvalidPattern(SSEKitError, ValueError):
    """Raised by :meth:`Hub.broadcast_to_pattern` and :meth:`Hub.disconnect` when the
    client-ID pattern is empty (one that is not a ``str`` raises ``TypeError``)."""


class EventTooLarge(SSEKitError, ValueError):
    """Raised by :meth:`Hub.broadcast_to_pattern` when the encoded event is larger
    than the hub's ``max_event_size``."""


class HubNotRunning(SSEKitError, RuntimeError):
    """Raised when a client is registered or an event is broadcast on a hub that
    was stopped in this process (:meth:`Hub.stop`, or a worker shutting down).
    A hub that never ran in this process starts itself instead."""


class HubAlreadyRunning(SSEKitError, RuntimeError):
    """Raised by :meth:`Hub.run` when the hub already runs in this process (in
    another thread, or started by :meth:`Hub.start` or on first use)."""


class HubFull(SSEKitError, RuntimeError):
    """Raised by :meth:`Hub.register` when the hub already serves ``max_clients``
    clients (:func:`serve_sse` answers ``503 Service Unavailable``), the new
    client's ID already has ``max_clients_per_id`` streams (``429 Too Many
    Requests``), or (``"threads"``) every worker thread but those ordinary
    requests need holds a stream that cannot detach (``503``).

    :ivar limit: the limit that was reached: ``"max_clients"``,
        ``"max_clients_per_id"`` or ``"threads"``.
    """

    def __init__(self, message: str, *, limit: str = "max_clients") -> None:
        super().__init__(message)
        self.limit = limit


class InvalidTicket(SSEKitError, ValueError):
    """Raised by :meth:`StreamTickets.redeem` when a stream ticket cannot open
    a stream: it is missing, malformed or signed with another secret, expired,
    already used, or the identity it carries has expired (the stream request
    is answered ``401`` with the message as its one line); or, rarely, when
    this process keeps as many spent tickets as it may (``503``).

    :ivar status: the HTTP status a stream request gets: ``401`` (or ``503``).
    """

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class BackplaneUnavailable(SSEKitError, ConnectionError):
    """Raised by a broadcast when the backplane's broker (Redis) cannot be reached
    in time; the event was not published (unless the broker took it and only its
    answer timed out)."""
