"""Flood limits for one HTTP/2 connection served by sse_kit.

HTTP/2 lets a peer make the server work with frames that carry no request:
opening streams and resetting them at once (CVE-2023-44487, "rapid reset":
each reset request still reaches the worker's thread pool), PING and SETTINGS
frames (each answered), empty DATA frames, and header blocks split into
endless CONTINUATION frames. :class:`FloodGuard` counts them per connection,
with gunicorn 27's own limits and windows (``gunicorn/http2/connection.py``,
which sse_kit's session replaces), and names the flood the connection must be
closed for (GOAWAY ``ENHANCE_YOUR_CALM``). The guard is pure: the connection's
:class:`sse_kit._h2table.StreamTable` feeds it h2's events under its lock.
"""

from __future__ import annotations

import collections
from typing import Final

import h2.events

__all__ = ["CONTINUATION_FLOOD", "CONTROL_LIMIT", "QUEUE_FACTOR", "RESET_LIMIT", "WINDOW",
           "FloodGuard"]

# RST_STREAM frames from the peer per WINDOW seconds above which the connection
# is a rapid-reset flood (gunicorn's RST_STREAM_RATE_LIMIT): a browser that
# cancels requests as a user navigates never comes close.
RESET_LIMIT: Final = 200
# PING, SETTINGS and empty DATA frames (not ending their stream) per WINDOW
# seconds (gunicorn's CONTROL_FRAME_RATE_LIMIT): a real client sends a handful.
CONTROL_LIMIT: Final = 1000
# The sliding window of both limits, in seconds (gunicorn's).
WINDOW: Final = 10.0
# Requests of one connection handed to the pool and not finished, as a multiple
# of the streams it may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS):
# more can only be waiting because their streams were reset (the rapid-reset
# attack's real cost: the pool's queue grows while every stream slot is free
# again), so gunicorn's per-connection MAX_DEFERRED_EVENTS has this as its
# counterpart. Twice, so that a response ended on the wire whose job is still
# returning never counts against a client that opens its next stream at once.
QUEUE_FACTOR: Final = 2
# The ProtocolError h2 (>= 4.1) raises for more than 64 CONTINUATION frames in
# one header block (h2.frame_buffer.CONTINUATION_BACKLOG); h2 holds at most
# that many, so the flood costs bounded memory, but it is a flood all the same.
CONTINUATION_FLOOD: Final = "Too many continuation frames received."


class _Rate:
    """Occurrences within the last WINDOW seconds, as their times."""

    __slots__ = ("_limit", "_times")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._times: collections.deque[float] = collections.deque()

    def exceeded(self, now: float) -> bool:
        """Count one at *now*; True once more than the limit fall in the window."""
        times = self._times
        times.append(now)
        while now - times[0] > WINDOW:
            times.popleft()
        return len(times) > self._limit


class FloodGuard:
    """Counts one connection's frames that carry no request; names a flood.

    Used under the connection table's lock (every method is called with it held).
    """

    __slots__ = ("_control", "_resets")

    def __init__(self) -> None:
        self._resets = _Rate(RESET_LIMIT)
        self._control = _Rate(CONTROL_LIMIT)

    def check(self, event: h2.events.Event, now: float) -> str | None:
        """Count *event*; the flood it completes, or ``None``."""
        if isinstance(event, h2.events.StreamReset) and event.remote_reset:
            if self._resets.exceeded(now):
                return (f"rapid reset: more than {RESET_LIMIT} streams reset by the client "
                        f"in {WINDOW:g}s")
        elif isinstance(event, h2.events.PingReceived):
            return self._control_flood("PING", now)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            return self._control_flood("SETTINGS", now)
        elif (isinstance(event, h2.events.DataReceived) and not event.data
              and event.stream_ended is None):
            return self._control_flood("empty DATA", now)
        return None

    def _control_flood(self, kind: str, now: float) -> str | None:
        if self._control.exceeded(now):
            return (f"{kind} flood: more than {CONTROL_LIMIT} PING, SETTINGS and empty DATA "
                    f"frames in {WINDOW:g}s")
        return None

    @staticmethod
    def queue(in_flight: int, max_streams: int) -> str | None:
        """The flood *in_flight* requests handed to the pool and not finished
        make, for a connection allowed *max_streams* open streams, or ``None``."""
        limit = QUEUE_FACTOR * max_streams
        if in_flight > limit:
            return (f"request flood: more than {limit} requests waiting for the worker's "
                    f"threads ({QUEUE_FACTOR} x the {max_streams} streams it may open; the "
                    "others were reset)")
        return None

    @staticmethod
    def protocol_error(exc: Exception) -> str | None:
        """The flood h2's *exc* reports, or ``None`` for another protocol error."""
        if str(exc) == CONTINUATION_FLOOD:
            return "CONTINUATION flood: more than 64 CONTINUATION frames in one header block"
        return None
