"""The backplane interface: what a shared log of broadcasts offers a hub.

A backplane carries every broadcast through one shared, ordered log (a Redis
stream, :class:`sse_kit.redis.RedisBackplane`), so that every hub following it
(every gunicorn worker, every host) routes the same events, in the same order,
under the same IDs. Its entry IDs are ``"<ms>-<seq>"``, ordered as a pair of
integers, and become the SSE ``id:`` of each event.
"""

# design:
# A hub with a backplane does not route its own broadcasts: it appends them to
# the log, and its reader thread (one per hub, owned by the backplane) hands what
# it reads back to the hub thread through the hub's inbox, like any other
# publisher. Control entries (a cluster-wide disconnect, see _cluster.py) travel
# in the same log, so every hub applies them at the same place among the events.
# On the hub thread the Router (_router.py) owns the stream-keyed history ring
# and the resumes in flight; this module knows nothing of it.

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from ._history import StreamKey
from ._stats import Counters

__all__ = [
    "DISCONNECT", "Backplane", "BackplaneReader", "ClaimingBackplane", "Control", "Entry", "Feed",
    "Item", "Replay",
]

# One event read from the log: (entry ID, its parsed key, pattern, encoded body
# without the id: line).
Entry = tuple[str, StreamKey, str, bytes]

# The one control action so far: end the streams whose ID matches the pattern.
DISCONNECT: Final = "disconnect"


@dataclass(frozen=True, slots=True)
class Control:
    """A control entry read from the log, applied where it stands among the events.

    :ivar event_id: its entry ID (never an SSE ``id:``: it is not an event).
    :ivar key: *event_id* parsed.
    :ivar action: what to do (``"disconnect"``).
    :ivar pattern: the client-ID glob it acts on.
    """

    event_id: str
    key: StreamKey
    action: str
    pattern: str


# What a reader hands its hub: events and control entries, in log order.
Item = Entry | Control


@dataclass(frozen=True, slots=True)
class Replay:
    """The events a backplane's log holds after an ID.

    :ivar entries: oldest first.
    :ivar reset: ``None`` when *entries* is complete, else why not (as in the
        ``reset`` event: ``"expired"``, ``"unknown"``, ``"lost"``, ``"unavailable"``).
    """

    entries: Sequence[Entry] = ()
    reset: str | None = None


@dataclass(frozen=True, slots=True)
class Feed:
    """Where a backplane reader hands what it reads: a hub's inbox and counters.

    :ivar deliver: takes a batch of entries (events and control entries), in log order.
    :ivar rebase: ``(position, reason)``: the reader now continues after
        *position*; *reason* is ``None`` at start, else why events may have been
        missed (every stream then gets a ``reset``).
    :ivar counters: where the reader counts errors and reconnects.
    """

    deliver: Callable[[list[Item]], None]
    rebase: Callable[[str, str | None], None]
    counters: Counters


class BackplaneReader(Protocol):
    """A running reader, as :meth:`~sse_kit.Backplane.start_reader` returns it."""

    def stop(self) -> None:
        """Stop reading soon; never blocks."""


@runtime_checkable
class Backplane(Protocol):
    """A shared, ordered log of broadcasts that hubs follow (``Hub(backplane=...)``).

    :class:`sse_kit.redis.RedisBackplane` is the implementation that ships.
    """

    def publish(self, pattern: str, body: bytes) -> str:
        """Append one encoded event (no ``id:`` line) for *pattern*; return its ID.

        :raises BackplaneUnavailable: if the log cannot be reached in time.
        """
        ...

    def start_reader(self, feed: Feed) -> BackplaneReader:
        """Start a thread that feeds every new entry, from now on, to *feed*."""
        ...

    def replay(self, after: str) -> Replay:
        """The entries after ID *after*; never raises (``reset`` says what failed)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class ClaimingBackplane(Backplane, Protocol):
    """A backplane that can also make a claim every hub following it sees
    (:class:`sse_kit.redis.RedisBackplane` can): what makes a stream ticket
    single-use across workers and hosts. Optional: with a backplane without
    it, tickets are spent per worker (and a WARNING says so)."""

    def claim_once(self, name: str, ttl: float) -> bool:
        """Claim *name* for *ttl* seconds: ``True`` for the first claim,
        ``False`` while that one stands.

        :raises BackplaneUnavailable: if the broker cannot be reached in time.
        """
        ...
