"""What a broadcast returns: how many streams it reached, once the hub knows."""

from __future__ import annotations

import threading

__all__ = ["Receipt"]


class Receipt:
    """The answer to one :meth:`Hub.broadcast_to_pattern`.

    Publishing never waits for the hub thread; a caller that wants to know
    whether the event reached anyone asks the receipt, which waits (usually
    microseconds) until the hub has routed it::

        if hub.broadcast_to_pattern(f"job:{job_id}:*", progress).matched() == 0:
            log.info("nobody follows job %s", job_id)

    With a backplane the hubs of every worker route the event, so no process
    knows the total: :meth:`matched` returns ``None`` at once.
    """

    __slots__ = ("_done", "_matched")

    def __init__(self) -> None:
        # Held until the hub thread settles the receipt, then released once.
        self._done = threading.Lock()
        self._done.acquire()
        self._matched: int | None = None

    @classmethod
    def unknown(cls) -> Receipt:
        """A receipt whose answer is ``None`` (a backplane: no process knows)."""
        receipt = cls()
        receipt._done.release()
        return receipt

    def matched(self, timeout: float | None = 5.0) -> int | None:
        """How many open streams of this hub the event was offered to (``0``: it
        reached nobody here), waiting up to *timeout* seconds for the hub to
        route it; ``None`` if it was not routed in time, the hub stopped first,
        or a backplane carried it."""
        if self._done.acquire(True, -1 if timeout is None else timeout):
            self._done.release()
            return self._matched
        return None

    def _settle(self, matched: int | None) -> None:
        """Called once, by the hub thread, when the event has been routed."""
        self._matched = matched
        self._done.release()

    def __repr__(self) -> str:
        state = "routed" if not self._done.locked() else "pending"
        return f"<Receipt {state} matched={self._matched}>"
