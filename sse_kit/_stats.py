"""The hub's counters: one small lock-guarded table every thread may add to."""

from __future__ import annotations

import threading
from typing import Final

__all__ = ["COUNTERS", "Counters"]

# Every counter stats() reports, always present (0 until it happens).
COUNTERS: Final = (
    "connects",  # streams registered
    "disconnected",  # streams unregistered, for any reason
    "refused",  # registrations refused (max_clients)
    "published",  # broadcasts routed by this hub
    "delivered",  # (event, client) pairs queued to a stream
    "dropped",  # (event, client) pairs lost to a full outbox under slow_client="drop"
    "slow_disconnects",  # streams cut because their outbox overflowed (slow_client="disconnect")
    "resumed",  # streams opened with a Last-Event-ID the history covered
    "replayed",  # events written from history on resume
    "resets",  # streams told to refetch state (Last-Event-ID not coverable)
    "keepalives",  # keep-alive comments written
    # With a backplane (sse_kit.redis):
    "backplane_published",  # broadcasts this hub appended to the backplane's log
    "backplane_errors",  # failed backplane operations (a publish, a read, a reconnect attempt)
    "backplane_reconnects",  # times the reader got its connection back after errors
    "backplane_gaps",  # times the log was lost or trimmed under the reader (streams got reset)
    "backplane_lag_ms",  # gauge: log time to routing time of the latest event read
)


class Counters:
    """Monotonic counters, safe to bump from any thread."""

    def __init__(self) -> None:
        # _lock guards _values; held only for the additions, never while blocking.
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add *n* to counter *name*."""
        with self._lock:
            self._values[name] += n

    def add_many(self, **amounts: int) -> None:
        """Add several counters under one lock acquisition."""
        with self._lock:
            for name, n in amounts.items():
                self._values[name] += n

    def set(self, name: str, value: int) -> None:
        """Set gauge *name* to *value*."""
        with self._lock:
            self._values[name] = value

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return dict(self._values)
