"""The hub's metrics: one small lock-guarded table every thread may update.

Two kinds of number, each name in exactly one table below (the Prometheus
exporter, ``Component.health()`` and the demo's ``metric`` events all read these
names, so a new metric is added here once):

* counters only go up, by :meth:`Counters.add`;
* gauges are set (:meth:`Counters.set`) or raised to a new maximum
  (:meth:`Counters.observe_max`).

A listener (the Prometheus exporter) may be attached to mirror every change as
it happens. It is called under the table's lock, so that it sees the changes in
the order they were made; it must not block or touch the table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["COUNTERS", "GAUGES", "Counters", "Listener"]

# Every counter stats() reports, always present (0 until it happens): name -> meaning.
# The meanings are the Prometheus HELP text and the table in docs/operations.md.
COUNTERS: Final[Mapping[str, str]] = {
    "connects": "Streams opened (registered with the hub).",
    "disconnected": "Streams closed, for any reason.",
    "refused": "Streams refused with 503 because max_clients streams were open.",
    "refused_per_id": "Streams refused with 429 because their client ID had max_clients_per_id.",
    "rejected": "Stream requests refused as malformed: method (405), Accept (406), Origin (403).",
    "forbidden": "Stream requests refused by authorize or client_id (401/403).",
    "published": "Broadcasts routed by the hub.",
    "delivered": "(event, stream) pairs written or queued to a stream.",
    "fast_writes": "Deliveries written straight to a detached stream's socket.",
    "queued_writes": "Deliveries that waited, in a parked stream's outbox or a detached tail.",
    "fast_would_block": "Deliveries to a detached stream whose socket was full (kept in its tail).",
    "dropped": "(event, stream) pairs lost to a full outbox under slow_client='drop'.",
    "slow_disconnects": "Streams cut because their outbox overflowed (slow_client='disconnect').",
    "resumed": "Streams opened with a Last-Event-ID the history covered.",
    "replayed": "Events written from history to resuming streams.",
    "resets": "Streams sent a reset event (their Last-Event-ID could not be resumed).",
    "keepalives": "Keep-alive comments written.",
    "detached": "Streams whose socket the hub side took over after the first chunk.",
    "write_timeouts": "Detached streams cut because nothing could be written for write_timeout.",
    "parked": "Streams that hold a server thread for their whole life (they could not detach).",
    "unmatched": "Broadcasts that matched no stream of this hub.",
    "misconfigured": "Warnings about a setup that costs streams or events (each names its fix).",
    "expired": "Streams ended by max_age (they resume on reconnect).",
    "identity_expired": "Streams ended at their identity's expiry (they reconnect through "
                        "authorization and resume).",
    "rate_limited": "Stream requests refused with 429 by the connection-rate limit.",
    "tickets_refused": "Stream requests refused because their ticket was missing, bad, "
                       "expired or already used (401).",
    "kicked": "Streams ended by Hub.disconnect() (here, or a control entry from the backplane).",
    "too_large": "Broadcasts refused because the encoded event exceeded max_event_size.",
    "backplane_published": "Broadcasts this hub appended to the backplane's log.",
    "backplane_errors": "Failed backplane operations (a publish, a read, a reconnect attempt).",
    "backplane_reconnects": "Times the backplane reader got its connection back after errors.",
    "backplane_gaps": "Times the backplane's log was lost or trimmed under the reader.",
    "h2_floods": "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for a flood (rapid "
                 "reset, PING, SETTINGS, empty DATA, CONTINUATION, requests queued), counted "
                 "by every hub of the worker.",
    "cluster_errors": "Failed roster operations or presence announcements (streams were "
                      "admitted on this worker's own count meanwhile), or unknown control entries.",
}

# Every gauge stats() reports: name -> meaning.
GAUGES: Final[Mapping[str, str]] = {
    "clients": "Streams open now.",
    "queue_high_water": "Most events ever waiting at once in one stream's outbox.",
    "backplane_lag_ms": "Milliseconds from the backplane's log to routing, latest event read.",
}

# Called with (name, kind, value): kind "inc" adds value, "set" sets it.
Listener = Callable[[str, str, int], None]


class Counters:
    """Monotonic counters and gauges, safe to update from any thread."""

    def __init__(self) -> None:
        # _lock guards _values and _listeners; held for the arithmetic and the
        # listener calls (which only update in-memory or mmap'd values), never
        # while anything blocks.
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys([*COUNTERS, *GAUGES], 0)
        self._listeners: tuple[Listener, ...] = ()

    def add(self, name: str, n: int = 1) -> None:
        """Add *n* to counter *name*."""
        with self._lock:
            self._values[name] += n
            for listener in self._listeners:
                listener(name, "inc", n)

    def add_many(self, **amounts: int) -> None:
        """Add several counters under one lock acquisition."""
        with self._lock:
            for name, n in amounts.items():
                self._values[name] += n
                if n:
                    for listener in self._listeners:
                        listener(name, "inc", n)

    def set(self, name: str, value: int) -> None:
        """Set gauge *name* to *value*."""
        with self._lock:
            self._values[name] = value
            for listener in self._listeners:
                listener(name, "set", value)

    def observe_max(self, name: str, value: int) -> None:
        """Raise gauge *name* to *value* if it is higher (a high-water mark)."""
        if value <= self._values[name]:  # racy read is fine: re-checked under the lock
            return
        with self._lock:
            if value <= self._values[name]:
                return
            self._values[name] = value
            for listener in self._listeners:
                listener(name, "set", value)

    def listen(self, listener: Listener) -> None:
        """Call *listener* on every later change, under the lock (see the module doc).

        It first receives the current state, in the same lock hold (``"inc"`` by
        each counter's value, ``"set"`` for each gauge), so no change is missed
        or applied out of order.
        """
        with self._lock:
            for name, value in self._values.items():
                if name in GAUGES:
                    listener(name, "set", value)
                elif value:
                    listener(name, "inc", value)
            self._listeners = (*self._listeners, listener)

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter and gauge."""
        with self._lock:
            return dict(self._values)
