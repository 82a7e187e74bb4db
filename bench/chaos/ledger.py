"""The pass/fail rule of the chaos soak, per stream and per publisher; pure, no I/O.

docs/delivery.md promises every event once, in order per publisher, or an
explicit ``reset``. A :class:`Ledger` is one logical stream (one client slot,
across its reconnects) and checks what it receives against that:

* per publisher, seqs strictly increase: a seq at or below the last one is a
  duplicate (equal) or a reorder (below);
* a gap (seqs skipped) is allowed only when nothing skipped was published for
  sure: each event carries ``ok``, its publisher's last seq whose publish
  succeeded before it, so a gap over a succeeded publish has ``ok`` above the
  last seq seen; such a gap is a loss unless a ``reset`` came first;
* a reconnect without ``Last-Event-ID`` starts afresh (nothing owed from before);
  one with ``Last-Event-ID`` owes everything after it, so the checks go on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Violation:
    """One broken promise, with what a reader needs to reproduce it."""

    kind: str  # "duplicate", "reorder", "gap", "parse", "stuck"
    stream: str
    detail: str
    missing: tuple[str, int] | None = None  # a gap's (publisher, seq) that was published


@dataclass
class _Position:
    last: int
    gap_allowed: bool = False  # a reset arrived since ``last``


@dataclass
class Ledger:
    """What one client slot has received, per publisher, across reconnects."""

    stream: str
    violations: list[Violation] = field(default_factory=list)
    delivered: int = 0
    resets: Counter[str] = field(default_factory=Counter)
    _positions: dict[str, _Position] = field(default_factory=dict)

    def fresh(self) -> None:
        """A new stream without ``Last-Event-ID``: nothing from before is owed."""
        self._positions.clear()

    def reset(self, reason: str) -> None:
        """A ``reset`` event: what was published while away may be gone."""
        self.resets[reason] += 1
        for position in self._positions.values():
            position.gap_allowed = True

    def event(self, publisher: str, seq: int, ok: int) -> None:
        """Check one event; record a :class:`Violation` if it breaks the promise."""
        self.delivered += 1
        position = self._positions.get(publisher)
        if position is None:
            self._positions[publisher] = _Position(seq)
            return
        where = f"{publisher}: seq {seq} after {position.last}"
        if seq == position.last:
            self.violations.append(Violation("duplicate", self.stream, where))
        elif seq < position.last:
            self.violations.append(Violation("reorder", self.stream, where))
        else:
            if seq > position.last + 1 and ok > position.last and not position.gap_allowed:
                self.violations.append(Violation(
                    "gap", self.stream,
                    f"{where}: {position.last + 1}..{seq - 1} missing, and {ok} was published",
                    (publisher, ok)))
            position.last = seq
            position.gap_allowed = False
