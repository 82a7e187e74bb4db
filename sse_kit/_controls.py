"""Control entries on the hub thread: each applied once, in log order, and the
``Hub.disconnect()`` calls waiting to learn how many streams theirs ended here.

Owned by a :class:`sse_kit._router.Router` and touched on the hub thread only
(see the ``design`` note in :mod:`sse_kit._router`), so nothing here is locked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

from ._history import StreamKey

__all__ = ["Awaited", "Controls"]

# How many applied control entries keep their count of ended streams, for a
# Hub.disconnect() whose wait reaches the hub thread after its entry did.
_APPLIED: Final = 64


class Awaited:
    """A ``Hub.disconnect()`` waiting for its control entry to be applied here."""

    __slots__ = ("done", "key", "result")

    def __init__(self, key: StreamKey) -> None:
        self.key = key
        # Released once by the hub thread: when applied, passed, or the hub stops.
        self.done = threading.Lock()
        self.done.acquire()
        self.result = 0  # streams it ended on this hub


class Controls:
    """The control entries a hub has applied, and the waits for them."""

    __slots__ = ("_applied", "_awaited", "last")

    def __init__(self) -> None:
        self.last: StreamKey = (0, 0)  # the newest entry applied
        self._applied: OrderedDict[StreamKey, int] = OrderedDict()  # the recent ones' counts
        self._awaited: dict[StreamKey, Awaited] = {}

    def is_new(self, key: StreamKey) -> bool:
        """Whether the entry *key* is not applied yet (a reader never repeats
        one; be safe)."""
        return key > self.last

    def applied(self, key: StreamKey, ended: int) -> None:
        """The entry *key* ended *ended* streams here: answer whoever waits."""
        self.last = key
        self._applied[key] = ended
        if len(self._applied) > _APPLIED:
            self._applied.popitem(last=False)
        awaited = self._awaited.pop(key, None)
        if awaited is not None:
            awaited.result = ended
            awaited.done.release()

    def wait(self, awaited: Awaited) -> None:
        """Answer *awaited* once its entry is applied (now, if it was)."""
        if awaited.key <= self.last:
            awaited.result = self._applied.get(awaited.key, 0)
            awaited.done.release()
        else:
            self._awaited[awaited.key] = awaited

    def release(self, upto: StreamKey | None) -> None:
        """Answer the waits for entries up to *upto* (all: ``None``) that this hub
        will never apply (its reader skipped past them, or the hub stops)."""
        for key in [k for k in self._awaited if upto is None or k <= upto]:
            self._awaited.pop(key).done.release()
