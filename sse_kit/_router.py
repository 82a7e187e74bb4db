"""The routing state the hub thread owns, and what the hub thread does with it.

Every method here runs on the hub thread only (see the ``design`` note in
:mod:`sse_kit._hub`): the registry (:class:`ClientIndex`), the history and the
backplane link are never touched by another thread, so nothing here is locked.
Other threads reach a :class:`Router` only through the hub's inbox.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ._backplane import Backplane, _Catchup, _Link
from ._client import CLOSED, SHUTDOWN, Client, SlowClientPolicy, deliver
from ._exceptions import HubFull
from ._history import NO_RESUME, History, StreamHistory
from ._patterns import ClientIndex, compile_pattern
from ._stats import Counters
from ._wire import with_id

__all__ = ["Router", "_Registration", "signal"]

log = logging.getLogger("sse_kit._hub")

MIB: Final = 1024 * 1024


def signal() -> threading.Lock:
    """A one-shot signal: a lock acquired here, released once by whoever answers.

    ``threading.Event`` would do, but a stream's thread waits on this once and
    then parks for the life of the stream, and the stack pages a thread has
    touched stay resident while it lives: building an ``Event`` (a Python class
    whose ``__init__`` builds a ``Condition``) inside ``_Registration.__init__``
    and waiting on it reaches one 4 KiB page deeper into the stack than a lock
    (measured with 200 threads in /proc/self/smaps: 12 vs 8 KiB), which at
    10,000 streams is 40 MiB.
    """
    lock = threading.Lock()
    lock.acquire()
    return lock


class _Registration:
    """A request thread's registration, answered by the hub thread.

    Builds no Python-level object in ``__init__`` (see :func:`signal`).
    """

    __slots__ = ("catchup", "client", "done", "error", "position", "resume", "thread_limit")

    def __init__(self, client: Client, thread_limit: int | None = None) -> None:
        self.client = client
        # Set when this stream will hold its server thread and the server's pool
        # size is known: how many such streams the worker can hold at once.
        self.thread_limit = thread_limit
        self.done = signal()  # released once by the hub thread when answered
        self.error: Exception | None = None
        self.resume = NO_RESUME
        self.position = ""  # the event ID this stream continues from
        self.catchup: _Catchup | None = None  # set when the backplane must serve the resume


class Router:
    """Clients by ID, the history, and the limits a registration must pass.

    :param on_resumed: called (from any thread) when a resume read from the
        backplane is ready; the hub puts it back in its inbox.
    """

    def __init__(
        self,
        *,
        counters: Counters,
        history_size: int,
        history_ttl: float,
        slow_client: SlowClientPolicy,
        max_clients: int | None,
        max_clients_per_id: int | None,
        client_buffer_bytes: int,
        max_event_size: int,
        json_default: Callable[[Any], Any] | None,
        backplane: Backplane | None,
        on_resumed: Callable[[_Catchup], None],
    ) -> None:
        self.counters = counters
        self.index = ClientIndex()
        self.history = History(size=history_size, ttl=history_ttl)
        self.client_count = 0  # written here, read by any thread (an int: atomic)
        # Streams registered with a thread_limit: they hold a server thread each.
        self._holding: set[Client] = set()
        self._slow_client = slow_client
        self._max_clients = max_clients
        self._max_clients_per_id = max_clients_per_id
        self._client_buffer_bytes = client_buffer_bytes
        self._max_event_size = max_event_size
        self._json_default = json_default
        self.link: _Link | None = None
        if backplane is not None:
            stream_history = StreamHistory(size=history_size, ttl=history_ttl)
            self.link = _Link(backplane, stream_history, counters, self.route, on_resumed)

    # -- events -----------------------------------------------------------------

    def publish(self, pattern_text: str, bodies: Sequence[bytes]) -> int:
        """Give local broadcasts to one pattern their IDs, remember them, and route
        them (as one batch: a detached stream gets them in one write); return how
        many open streams they were offered to."""
        pattern = compile_pattern(pattern_text)
        history = self.history
        frames = []
        for body in bodies:
            seq, event_id = history.next_id()
            frame = with_id(event_id, body)
            history.append(seq, pattern, frame)
            frames.append(frame)
        self.counters.add("published", len(frames))
        reached = self.route_batch(self.index.match(pattern), frames)
        if not reached:
            # Often fine (nobody listens yet), sometimes a pattern that can never
            # match (job:7:* for clients named user:42): countable, and visible at DEBUG.
            self.counters.add("unmatched", len(frames))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("sse_kit: a broadcast to %r matched no stream", pattern_text)
        return reached

    def route(self, clients: Iterable[Client], frame: bytes) -> None:
        """Offer *frame* to *clients*; count the outcome."""
        self.route_batch(clients, (frame,))

    def route_batch(self, clients: Iterable[Client], frames: Sequence[bytes]) -> int:
        """Offer *frames* (oldest first) to *clients*; count the outcome (a slow cut
        is logged by its stream: no logging I/O on the hub thread). Returns how
        many open streams were offered them."""
        reached, fast, queued, deferred, dropped, cut = deliver(clients, frames)
        self.counters.add_many(
            delivered=fast + queued + deferred, fast_writes=fast,
            queued_writes=queued + deferred, fast_would_block=deferred,
            dropped=dropped, slow_disconnects=cut,
        )
        return reached

    # -- clients ----------------------------------------------------------------

    def register(self, reg: _Registration) -> None:
        """Apply the limits, compute the resume, and add the client (one step, so
        every later broadcast is live for it and every earlier one in its replay)."""
        client, history = reg.client, self.history
        if self._refused(reg):
            reg.done.release()
            return
        client._configure(self._slow_client, self._client_buffer_bytes, self._max_event_size,
                          self._json_default)
        reg.position = history.last_id
        if self.link is not None:
            self.link.register(reg)
        elif client.last_event_id is not None:
            reg.resume = history.since(client.last_event_id, client.id)
            if reg.resume.reset is None:
                reg.position = client.last_event_id
        self.index.add(client)
        if reg.thread_limit is not None:
            self._holding.add(client)
        self._count_changed()
        if reg.catchup is not None:
            self.counters.add("connects")  # the resume is counted once read (_Link.catch_up)
        elif reg.resume.reset is not None:
            self.counters.add_many(connects=1, resets=1)
        elif client.last_event_id is not None:
            self.counters.add_many(connects=1, resumed=1, replayed=len(reg.resume.frames))
        else:
            self.counters.add("connects")
        reg.done.release()

    def _refused(self, reg: _Registration) -> bool:
        """Set *reg*'s error if a limit refuses it, after reaping dead connections."""
        client, index = reg.client, self.index
        limit = reg.thread_limit
        if limit is not None and len(self._holding) >= limit:
            self._reap(list(self._holding))
        if limit is not None and len(self._holding) >= limit:
            reg.error = HubFull(
                f"{len(self._holding)} streams already hold this worker's threads but the "
                "ones ordinary requests need; try again later", limit="threads")
            self.counters.add("refused")
            return True
        if self._max_clients is not None and len(index) >= self._max_clients:
            self._reap(index.clients())
        if self._max_clients is not None and len(index) >= self._max_clients:
            reg.error = HubFull(f"this hub already serves max_clients={self._max_clients} streams")
            self.counters.add("refused")
            return True
        per_id = self._max_clients_per_id
        if per_id is not None and len(index.with_id(client.id)) >= per_id:
            self._reap(index.with_id(client.id))
        if per_id is not None and len(index.with_id(client.id)) >= per_id:
            # The newest is refused, never a live one closed: closing would let
            # tabs evict each other in a reconnect loop.
            reg.error = HubFull(
                f"client ID {client.id!r} already has max_clients_per_id={per_id} streams",
                limit="max_clients_per_id",
            )
            self.counters.add("refused_per_id")
            return True
        return False

    def _reap(self, clients: Iterable[Client]) -> None:
        """At a limit: unregister the *clients* whose peer has already closed (a
        browser that reconnected before a keep-alive write noticed), so that a
        slot held by a dead connection goes to the new one."""
        for old in [c for c in clients if c._gone()]:
            old._finish(CLOSED)
            self.unregister(old)
            log.info("sse_kit: client %r had gone; its slot goes to a new stream", old.id)

    def unregister(self, client: Client) -> None:
        """Remove this connection (idempotent)."""
        if self.link is not None:
            self.link.forget(client)
        self._holding.discard(client)
        if self.index.remove(client):
            self.counters.add("disconnected")
            self._count_changed()

    def end_all(self) -> int:
        """End every stream (the hub is stopping); return how many there were."""
        for client in list(self.index.clients()):
            client._finish(SHUTDOWN)
        n = len(self.index)
        self.index = ClientIndex()
        self._holding = set()
        if n:
            self.counters.add("disconnected", n)
        self._count_changed()
        return n

    def _count_changed(self) -> None:
        self.client_count = len(self.index)
        self.counters.set("clients", self.client_count)
