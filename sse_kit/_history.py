"""The hub's bounded ring of recent broadcasts, for ``Last-Event-ID`` resume.

Two ID schemes, one ring:

* :class:`History` (a hub on its own) makes its IDs: ``<epoch>-<seq>``, where
  *epoch* names one hub's lifetime (the time it was created plus random bits, so
  two workers or a restarted process never share one) and *seq* counts every
  broadcast of that hub from 1.
* :class:`StreamHistory` (a hub with a backplane) keeps the IDs the backplane's
  stream gave (Redis stream entry IDs, ``<ms>-<seq>``, ordered as a pair of
  integers), so every worker and host names an event alike.

Clients must treat either as opaque. The ring holds a contiguous run of the
events the hub routed: everything after :attr:`History.floor` up to the newest
is in it, so "can the ring serve a resume from X?" is ``floor <= X <= last``.

Owned by the hub thread; not thread-safe.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from ._patterns import Pattern

__all__ = ["History", "Resume", "StreamHistory", "parse_stream_id"]

# A Last-Event-ID longer than this cannot be one of ours; it is not parsed.
MAX_EVENT_ID_LENGTH: Final = 64

# Why a resume could not be served, as sent in the ``reset`` event's data.
RESET_MALFORMED: Final = "malformed"  # not an ID this library writes
RESET_UNKNOWN: Final = "unknown"  # another hub's ID, or one from the future
RESET_EXPIRED: Final = "expired"  # older than the history (size or TTL)
RESET_LOST: Final = "lost"  # the backplane's stream was lost or trimmed under the reader
RESET_UNAVAILABLE: Final = "unavailable"  # the backplane could not be asked in time

StreamKey = tuple[int, int]  # a stream entry ID "<ms>-<seq>", ordered as integers
K = TypeVar("K", int, StreamKey)


@dataclass(frozen=True, slots=True)
class Resume:
    """What a stream opened with ``Last-Event-ID`` gets before live events.

    :ivar frames: encoded events the client missed, oldest first.
    :ivar reset: ``None`` when *frames* is complete, else why it is not
        (``"malformed"``, ``"unknown"`` or ``"expired"``) and the client must
        refetch its state.
    """

    frames: tuple[bytes, ...] = ()
    reset: str | None = None


NO_RESUME: Final = Resume()  # nothing to replay (immutable, so shared)


class _Entry(Generic[K]):
    __slots__ = ("frame", "key", "pattern", "t")

    def __init__(self, key: K, pattern: Pattern, frame: bytes, t: float) -> None:
        self.key: K = key
        self.pattern = pattern
        self.frame = frame
        self.t = t


class _Ring(Generic[K]):
    """The last *size* routed events younger than *ttl* seconds, by key."""

    def __init__(self, *, size: int, ttl: float, clock: Callable[[], float], start: K) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._ring: deque[_Entry[K]] = deque()
        self.floor: K = start  # every event after this key up to last_key is in the ring
        self.last_key: K = start

    def __len__(self) -> int:
        return len(self._ring)

    def _append(self, key: K, pattern: Pattern, frame: bytes) -> None:
        self.last_key = key
        if not self.size:
            self.floor = key
            return
        now = self._clock()
        ring = self._ring
        if len(ring) == self.size:
            self.floor = ring.popleft().key
        ring.append(_Entry(key, pattern, frame, now))
        self._expire(now)

    def _expire(self, now: float) -> None:
        ring, oldest = self._ring, now - self.ttl
        while ring and ring[0].t < oldest:
            self.floor = ring.popleft().key

    def _covers(self, key: K) -> bool:
        self._expire(self._clock())
        return self.floor <= key <= self.last_key

    def _after(self, key: K, client_id: str) -> tuple[bytes, ...]:
        """The frames after *key* that address *client_id*, oldest first."""
        missed = []
        for entry in reversed(self._ring):
            if entry.key <= key:
                break
            if entry.pattern.matches(client_id):
                missed.append(entry.frame)
        missed.reverse()
        return tuple(missed)


class History(_Ring[int]):
    """The last *size* broadcasts younger than *ttl* seconds, with IDs it makes.

    :param size: how many broadcasts to keep; ``0`` keeps none (every resume
        across a gap is then a reset).
    :param ttl: how long, in seconds, a broadcast stays resumable.
    """

    def __init__(
        self, *, size: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(size=size, ttl=ttl, clock=clock, start=0)
        # 48 random bits: hubs created in the same millisecond (gunicorn's
        # workers start together) collide with odds ~n^2 / 2^49, not n^2 / 2^21.
        self.epoch = f"{time.time_ns() // 1_000_000:x}{secrets.randbits(48):012x}"

    def next_id(self) -> tuple[int, str]:
        """Take the next sequence number; return it and its event ID."""
        seq = self.last_key + 1
        return seq, f"{self.epoch}-{seq}"

    @property
    def last_id(self) -> str:
        """The ID of the newest broadcast (``<epoch>-0`` before the first)."""
        return f"{self.epoch}-{self.last_key}"

    def append(self, seq: int, pattern: Pattern, frame: bytes) -> None:
        """Remember broadcast *seq* (the latest from :meth:`next_id`)."""
        self._append(seq, pattern, frame)

    def parse(self, last_event_id: str) -> int | str:
        """The *seq* of one of this hub's IDs, or the reset reason for any other."""
        if not last_event_id or len(last_event_id) > MAX_EVENT_ID_LENGTH:
            return RESET_MALFORMED
        epoch, sep, seq = last_event_id.rpartition("-")
        if not sep or not (seq.isascii() and seq.isdigit()):
            return RESET_MALFORMED
        if epoch != self.epoch or int(seq) > self.last_key:
            return RESET_UNKNOWN
        return int(seq)

    def since(self, last_event_id: str, client_id: str) -> Resume:
        """The broadcasts after *last_event_id* that address *client_id*."""
        seq = self.parse(last_event_id)
        if isinstance(seq, str):
            return Resume(reset=seq)
        if not self._covers(seq):
            return Resume(reset=RESET_EXPIRED)
        return Resume(frames=self._after(seq, client_id))


# A floor above every ID: the ring covers nothing until its first entry.
_UNCOVERED: Final = (1 << 64, 0)


def parse_stream_id(text: str) -> StreamKey | None:
    """``"<ms>-<seq>"`` (a Redis stream entry ID) as a pair of ints, else ``None``."""
    if not text or len(text) > MAX_EVENT_ID_LENGTH:
        return None
    ms, sep, seq = text.partition("-")
    if not (sep and ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        return None
    key = int(ms), int(seq)
    return key if key[0] < 1 << 64 and key[1] < 1 << 64 else None


class StreamHistory(_Ring[StreamKey]):
    """The last *size* events a backplane reader delivered, keyed by stream ID.

    Its position is unknown (``last_id == ""``) until the reader has told it
    where the stream stands (:meth:`rebase`).
    """

    def __init__(
        self, *, size: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(size=size, ttl=ttl, clock=clock, start=(0, 0))
        self.known = False

    @property
    def last_id(self) -> str:
        """The ID of the newest event routed, ``""`` while the position is unknown."""
        return f"{self.last_key[0]}-{self.last_key[1]}" if self.known else ""

    def append(self, key: StreamKey, pattern: Pattern, frame: bytes) -> None:
        """Remember the event with stream ID *key* (newer than every other)."""
        if self.floor == _UNCOVERED:
            self.floor = key
        self.known = True
        self._append(key, pattern, frame)

    def rebase(self, key: StreamKey) -> None:
        """Forget the ring: the stream continues after *key* from now on."""
        self._ring.clear()
        self.last_key = key
        # After "0-0" (no stream) the next stream's IDs say nothing about the IDs of
        # a stream that was lost before it: the ring covers from its first entry on.
        self.floor = _UNCOVERED if key == (0, 0) else key
        self.known = True

    def since(self, key: StreamKey, client_id: str) -> Resume | None:
        """The events after *key* for *client_id*, or ``None`` when the ring does
        not cover them (the caller asks the stream itself)."""
        if not self.known or not self._covers(key):
            return None
        return Resume(frames=self._after(key, client_id))
