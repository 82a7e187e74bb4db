"""The hub's bounded ring of recent broadcasts, for ``Last-Event-ID`` resume.

Event IDs are ``<epoch>-<seq>``: *epoch* names one hub's lifetime (the time it
was created plus random bits, so two workers or a restarted process never share
one) and *seq* counts every broadcast of that hub from 1. Clients must treat the
whole string as opaque. Because every broadcast takes the next *seq*, the ring
holds a contiguous run of them, and "can the history cover a resume from N?" is
"is N+1 still in the ring?".

Owned by the hub thread; not thread-safe.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Final

from ._patterns import Pattern

__all__ = ["History", "Resume"]

# A Last-Event-ID longer than this cannot be one of ours; it is not parsed.
MAX_EVENT_ID_LENGTH: Final = 64

# Why a resume could not be served, as sent in the ``reset`` event's data.
RESET_MALFORMED: Final = "malformed"  # not an ID this library writes
RESET_UNKNOWN: Final = "unknown"  # another hub's ID, or one from the future
RESET_EXPIRED: Final = "expired"  # older than the history (size or TTL)


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


class _Entry:
    __slots__ = ("frame", "pattern", "seq", "t")

    def __init__(self, seq: int, pattern: Pattern, frame: bytes, t: float) -> None:
        self.seq = seq
        self.pattern = pattern
        self.frame = frame
        self.t = t


class History:
    """The last *size* broadcasts younger than *ttl* seconds.

    :param size: how many broadcasts to keep; ``0`` keeps none (every resume
        across a gap is then a reset).
    :param ttl: how long, in seconds, a broadcast stays resumable.
    """

    def __init__(
        self, *, size: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._ring: deque[_Entry] = deque(maxlen=size or None)
        self.epoch = f"{time.time_ns() // 1_000_000:x}{secrets.randbelow(1 << 20):05x}"
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self._ring)

    def next_id(self) -> tuple[int, str]:
        """Take the next sequence number; return it and its event ID."""
        self.last_seq += 1
        return self.last_seq, f"{self.epoch}-{self.last_seq}"

    @property
    def last_id(self) -> str:
        """The ID of the newest broadcast (``<epoch>-0`` before the first)."""
        return f"{self.epoch}-{self.last_seq}"

    def append(self, seq: int, pattern: Pattern, frame: bytes) -> None:
        """Remember broadcast *seq* (the latest from :meth:`next_id`)."""
        if self.size:
            now = self._clock()
            self._ring.append(_Entry(seq, pattern, frame, now))
            self._expire(now)

    def _expire(self, now: float) -> None:
        ring, oldest = self._ring, now - self.ttl
        while ring and ring[0].t < oldest:
            ring.popleft()

    def parse(self, last_event_id: str) -> int | str:
        """The *seq* of one of this hub's IDs, or the reset reason for any other."""
        if not last_event_id or len(last_event_id) > MAX_EVENT_ID_LENGTH:
            return RESET_MALFORMED
        epoch, sep, seq = last_event_id.rpartition("-")
        if not sep or not (seq.isascii() and seq.isdigit()):
            return RESET_MALFORMED
        if epoch != self.epoch or int(seq) > self.last_seq:
            return RESET_UNKNOWN
        return int(seq)

    def since(self, last_event_id: str, client_id: str) -> Resume:
        """The broadcasts after *last_event_id* that address *client_id*."""
        seq = self.parse(last_event_id)
        if isinstance(seq, str):
            return Resume(reset=seq)
        if seq == self.last_seq:
            return Resume()
        self._expire(self._clock())
        ring = self._ring
        if not ring or ring[0].seq > seq + 1:
            return Resume(reset=RESET_EXPIRED)
        missed = islice(ring, seq + 1 - ring[0].seq, None)
        return Resume(frames=tuple(e.frame for e in missed if e.pattern.matches(client_id)))
