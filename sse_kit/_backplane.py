"""The backplane interface, and the part of a hub that follows a backplane.

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
# publisher. On the hub thread a _Link owns the stream-keyed history ring and the
# resumes in flight. A resume the ring cannot serve is read from the log by the
# request thread (never the hub thread): the client is registered first, and
# until the read is done the hub thread *holds* the live events for it; then it
# releases those newer than the last replayed ID and drops the rest, and keeps
# dropping live events up to that ID until the reader has passed it. So a resume
# has no gap and no duplicate, and the hub thread never waits on the network.

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._client import Client
from ._event import encode_reset
from ._history import RESET_MALFORMED, Resume, StreamHistory, StreamKey, parse_stream_id
from ._patterns import Pattern, compile_pattern
from ._stats import Counters
from ._wire import with_id

if TYPE_CHECKING:
    from ._router import _Registration

__all__ = ["Backplane", "BackplaneReader", "Entry", "Feed", "Replay"]

log = logging.getLogger("sse_kit")

# One event read from the log: (entry ID, its parsed key, pattern, encoded body
# without the id: line).
Entry = tuple[str, StreamKey, str, bytes]


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

    :ivar deliver: takes a batch of entries, in log order.
    :ivar rebase: ``(position, reason)``: the reader now continues after
        *position*; *reason* is ``None`` at start, else why events may have been
        missed (every stream then gets a ``reset``).
    :ivar counters: where the reader counts errors and reconnects.
    """

    deliver: Callable[[list[Entry]], None]
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


class _Catchup:
    """A resume being read from the log: what the hub thread holds meanwhile."""

    __slots__ = ("cancelled", "client", "fallback", "key", "pending", "threshold")

    def __init__(self, client: Client, key: StreamKey, fallback: str) -> None:
        self.client = client
        self.key = key  # the client's Last-Event-ID
        self.fallback = fallback  # the stream's position at registration (used on reset)
        self.pending: list[tuple[StreamKey, bytes]] | None = []  # None once released
        self.threshold: StreamKey = key  # live events up to here were replayed
        self.cancelled = False  # the log was lost meanwhile: every stream got a reset


Route = Callable[[Iterable[Client], bytes], None]


class _Link:
    """The hub-thread state of a hub that follows a backplane.

    :param route: the hub's delivery to a set of clients (counts the outcome).
    :param post: puts a command in the hub's inbox (for :meth:`catch_up`).
    """

    def __init__(
        self,
        backplane: Backplane,
        history: StreamHistory,
        counters: Counters,
        route: Route,
        post: Callable[[Any], None],
    ) -> None:
        self.backplane = backplane
        self.history = history
        self.counters = counters
        self._route = route
        self._post = post
        self.catchups: dict[Client, _Catchup] = {}  # hub thread only

    # -- hub thread ---------------------------------------------------------------

    def register(self, reg: _Registration) -> None:
        """Set *reg*'s position and resume; starts a catch-up the ring cannot serve."""
        client, history = reg.client, self.history
        reg.position = history.last_id
        if client.last_event_id is None:
            return
        key = parse_stream_id(client.last_event_id)
        if key is None:
            reg.resume = Resume(reset=RESET_MALFORMED)
            return
        resume = history.since(key, client.id)
        if resume is None:
            reg.catchup = self.catchups[client] = _Catchup(client, key, history.last_id)
        else:
            reg.resume = resume
        reg.position = client.last_event_id

    def deliver(self, entries: list[Entry], index_match: Callable[[Pattern], Iterable[Client]]
                ) -> None:
        """Route a batch the reader read, in order, and remember it."""
        history, catchups = self.history, self.catchups
        for event_id, key, pattern_text, body in entries:
            if history.known and key <= history.last_key:
                continue  # already routed (cannot happen with one reader; be safe)
            pattern = compile_pattern(pattern_text)
            frame = with_id(event_id, body)
            history.append(key, pattern, frame)
            matched = index_match(pattern)
            if catchups:
                matched = [c for c in matched if not self._hold(c, key, frame)]
            self._route(matched, frame)
        if entries:
            self.counters.add("published", len(entries))
            self.counters.set("backplane_lag_ms", max(0, int(time.time() * 1000) - key[0]))
        if catchups:
            self._settle()

    def _hold(self, client: Client, key: StreamKey, frame: bytes) -> bool:
        """Whether a live event must not be offered to *client* now."""
        catchup = self.catchups.get(client)
        if catchup is None:
            return False
        if catchup.pending is not None:
            catchup.pending.append((key, frame))
            return True
        return key <= catchup.threshold

    def _settle(self) -> None:
        """Forget the catch-ups the reader has passed."""
        last = self.history.last_key
        done = [c for c, k in self.catchups.items() if k.pending is None and k.threshold <= last]
        for client in done:
            del self.catchups[client]

    def resumed(self, catchup: _Catchup) -> None:
        """The replay was written: release the held events newer than it."""
        if catchup.cancelled or self.catchups.get(catchup.client) is not catchup:
            return
        pending, catchup.pending = catchup.pending or [], None
        for key, frame in pending:
            if key > catchup.threshold:
                self._route((catchup.client,), frame)
        self._settle()

    def forget(self, client: Client) -> None:
        """*client* was unregistered."""
        self.catchups.pop(client, None)

    def rebase(self, position: str, reason: str | None, clients: Iterable[Client]) -> None:
        """The reader continues after *position*; if events may have been missed,
        every stream gets a ``reset`` carrying the new position."""
        key = parse_stream_id(position)
        if key is None:
            log.error("sse_kit: backplane reported an invalid position %r", position)
            return
        self.history.rebase(key)
        if reason is None:
            return
        for catchup in self.catchups.values():
            catchup.cancelled = True
        self.catchups.clear()
        targets = list(clients)
        self._route(targets, encode_reset(reason, None, id=position))
        self.counters.add_many(backplane_gaps=1, resets=len(targets))

    # -- request thread ---------------------------------------------------------

    def catch_up(self, reg: _Registration) -> None:
        """Read what the ring could not serve from the log, then let the hub
        thread release the live events it held for this client."""
        catchup = reg.catchup
        assert catchup is not None
        try:
            replay = self.backplane.replay(reg.client.last_event_id or "")
            if replay.reset is not None:
                reg.resume = Resume(reset=replay.reset)
                reg.position = catchup.fallback
                catchup.threshold = (0, 0)
                self.counters.add("resets")
                return
            client_id, frames = reg.client.id, []
            for event_id, key, pattern, body in replay.entries:
                catchup.threshold = max(catchup.threshold, key)
                if compile_pattern(pattern).matches(client_id):
                    frames.append(with_id(event_id, body))
            reg.resume = Resume(frames=tuple(frames))
            self.counters.add_many(resumed=1, replayed=len(frames))
        finally:
            self._post(catchup)
