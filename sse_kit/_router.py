"""The routing state the hub thread owns, and what the hub thread does with it.

Every :class:`Router` method runs on the hub thread only (see the ``design``
note in :mod:`sse_kit._hub`): the registry (:class:`ClientIndex`), the histories
and the resumes in flight are never touched by another thread, so nothing here
is locked. Other threads reach a :class:`Router` only through the hub's inbox
(:mod:`sse_kit._commands`).
"""

# design:
# Every event takes one path: it gets its ID and its place in a history
# (publish() for local broadcasts, deliver() for what a backplane reader read),
# then _route() matches its pattern and _deliver() offers it to the clients, a
# run of events to one pattern as one batch (a detached stream gets it in one
# write). A resume the stream history cannot serve is read from the backplane's
# log by the request thread (Inbox.register, never the hub thread): the client is
# registered first, and until the read is done the router *holds* the live
# events for it; then it releases those newer than the last replayed ID and
# drops the rest, and keeps dropping live events up to that ID until the reader
# has passed it. So a resume has no gap and no duplicate, and the hub thread
# never waits on the network.
#
# A control entry (a cluster-wide Hub.disconnect) comes through deliver() among
# the events: the run before it is routed first, then it ends the streams it
# matches, so each of them got every event logged before it and none after it.
# The hub that wrote it waits (_controls.py) to learn how many streams it ended here.
# Presence: with a roster (_presence.py) each stream that leaves the index is
# told to it; without a backplane, join/leave events are published from here.

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from ._backplane import DISCONNECT, Control, Item
from ._client import CLOSED, KICKED, SHUTDOWN, Client, deliver
from ._controls import Controls
from ._event import EVENT_TYPE_PRESENCE, encode_reset, presence_data
from ._exceptions import HubFull
from ._history import (
    NO_RESUME,
    RESET_MALFORMED,
    History,
    Resume,
    StreamHistory,
    StreamKey,
    parse_stream_id,
)
from ._hub_options import HubOptions
from ._patterns import ClientIndex, Pattern, compile_pattern
from ._stats import Counters
from ._wire import data_to_text, encode_fields, with_id

if TYPE_CHECKING:
    from ._presence import Presence

__all__ = ["Router", "_Catchup", "_Registration", "signal"]

log = logging.getLogger("sse_kit._hub")

# At most this many events (or about this many bytes) go out as one batch: a
# fast-path client gets the batch in one write, which should fit a socket's
# send buffer (Linux starts at 16 KiB) so it is rarely partial.
BATCH_EVENTS: Final = 256
BATCH_BYTES: Final = 16 * 1024


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
    """Clients by ID, the histories, and the limits a registration must pass.

    :param presence: this run's roster keeper, told of every stream that leaves
        (``None``: presence is this hub's own).
    """

    def __init__(self, options: HubOptions, counters: Counters,
                 presence: Presence | None = None) -> None:
        size, ttl = options.history_size, options.history_ttl
        self.options = options
        self.counters = counters
        self.index = ClientIndex()
        self.history = History(size=size, ttl=ttl)
        # With a backplane, event IDs are the log's, kept in a stream history.
        self.stream_history: StreamHistory | None = None
        if options.backplane is not None:
            self.stream_history = StreamHistory(size=size, ttl=ttl)
        self.catchups: dict[Client, _Catchup] = {}  # resumes being read from the log
        self.client_count = 0  # written here, read by any thread (an int: atomic)
        # Streams registered with a thread_limit: they hold a server thread each.
        self._holding: set[Client] = set()
        self._presence = presence
        # Join/leave events published here: only without a backplane (with a
        # roster the presence thread announces them, cluster-wide).
        self._announce = options.presence_events if options.backplane is None else None
        self.controls = Controls()  # the control entries applied, and who waits for one

    # -- events: ID, history, match, deliver --------------------------------------

    def publish(self, pattern_text: str, bodies: Sequence[bytes]) -> int:
        """Give local broadcasts to one pattern their IDs, remember them, and route
        them as one batch; return how many open streams they were offered to."""
        pattern = compile_pattern(pattern_text)
        history = self.history
        frames = []
        for body in bodies:
            seq, event_id = history.next_id()
            frame = with_id(event_id, body)
            history.append(seq, pattern, frame)
            frames.append(frame)
        self.counters.add("published", len(frames))
        reached = self._route(pattern, frames, ())
        if not reached:
            # Often fine (nobody listens yet), sometimes a pattern that can never
            # match (job:7:* for clients named user:42): countable, and visible at DEBUG.
            self.counters.add("unmatched", len(frames))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("sse_kit: a broadcast to %r matched no stream", pattern_text)
        return reached

    def deliver(self, entries: Sequence[Item]) -> None:
        """Remember and route a batch a backplane reader read, in log order; each
        run of entries to one pattern goes out as one batch, and a control entry
        is applied between the runs before and after it."""
        history = self.stream_history
        assert history is not None, "backplane entries on a hub without a backplane"
        run_pattern = ""
        pattern: Pattern | None = None
        keys: list[StreamKey] = []
        frames: list[bytes] = []
        size = events = 0
        for item in entries:
            if isinstance(item, Control):
                if pattern is not None:
                    self._route(pattern, frames, keys)
                    pattern = None
                self._control(item)
                continue
            event_id, key, pattern_text, body = item
            if history.known and key <= history.last_key:
                continue  # already routed (cannot happen with one reader; be safe)
            if pattern is None or pattern_text != run_pattern or (
                    len(frames) >= BATCH_EVENTS or size >= BATCH_BYTES):
                if pattern is not None:
                    self._route(pattern, frames, keys)
                run_pattern, pattern = pattern_text, compile_pattern(pattern_text)
                keys, frames, size = [], [], 0
            frame = with_id(event_id, body)
            history.append(key, pattern, frame)
            keys.append(key)
            frames.append(frame)
            size += len(frame)
            events += 1
        if pattern is not None:
            self._route(pattern, frames, keys)
        if events:
            self.counters.add("published", events)
        if entries:
            last = entries[-1]
            ms = last.key[0] if isinstance(last, Control) else last[1][0]
            self.counters.set("backplane_lag_ms", max(0, int(time.time() * 1000) - ms))
        if self.catchups:
            self._settle()

    def _control(self, control: Control) -> None:
        """Apply a control entry read from the log (once)."""
        if not self.controls.is_new(control.key):
            return
        n = 0
        if control.action == DISCONNECT:
            n = self.kick(compile_pattern(control.pattern))
            if n:
                self.counters.add("kicked", n)
        else:  # from a newer sse_kit in the same cluster: nothing to do here
            self.counters.add("cluster_errors")
        self.controls.applied(control.key, n)

    def _route(self, pattern: Pattern, frames: Sequence[bytes], keys: Sequence[StreamKey]
               ) -> int:
        """Offer *frames* (with stream IDs *keys*, if from a backplane) to the
        clients *pattern* matches, but those whose resume is being read."""
        matched: Iterable[Client] = self.index.match(pattern)
        if self.catchups and keys:
            matched = [c for c in matched if not self._held(c, keys, frames)]
        return self._deliver(matched, frames)

    def _deliver(self, clients: Iterable[Client], frames: Sequence[bytes]) -> int:
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

    # -- resumes read from the backplane ------------------------------------------

    def _held(self, client: Client, keys: Sequence[StreamKey], frames: Sequence[bytes]) -> bool:
        """Whether the batch must not be offered to *client* as it is (it is held
        for its resume, or partly replayed: then the newer part goes out here)."""
        catchup = self.catchups.get(client)
        if catchup is None:
            return False
        if catchup.pending is not None:
            catchup.pending.extend(zip(keys, frames, strict=True))
            return True
        threshold = catchup.threshold
        if keys[0] > threshold:
            return False
        newer = [frame for key, frame in zip(keys, frames, strict=True) if key > threshold]
        if newer:
            self._deliver((client,), newer)
        return True

    def _settle(self) -> None:
        """Forget the catch-ups the reader has passed."""
        assert self.stream_history is not None
        last = self.stream_history.last_key
        done = [c for c, k in self.catchups.items() if k.pending is None and k.threshold <= last]
        for client in done:
            del self.catchups[client]

    def resumed(self, catchup: _Catchup) -> None:
        """The replay was read: release the held events newer than it."""
        if catchup.cancelled or self.catchups.get(catchup.client) is not catchup:
            return
        pending, catchup.pending = catchup.pending or [], None
        newer = [frame for key, frame in pending if key > catchup.threshold]
        if newer:
            self._deliver((catchup.client,), newer)
        self._settle()

    def rebase(self, position: str, reason: str | None) -> None:
        """The backplane reader continues after *position*; if events may have
        been missed, every stream gets a ``reset`` carrying the new position."""
        assert self.stream_history is not None, "a rebase on a hub without a backplane"
        key = parse_stream_id(position)
        if key is None:
            log.error("sse_kit: backplane reported an invalid position %r", position)
            return
        self.stream_history.rebase(key)
        self.controls.release(key)
        if reason is None:
            return
        for catchup in self.catchups.values():
            catchup.cancelled = True
        self.catchups.clear()
        targets = list(self.index.clients())
        self._deliver(targets, (encode_reset(reason, None, id=position),))
        self.counters.add_many(backplane_gaps=1, resets=len(targets))

    # -- clients ----------------------------------------------------------------

    def register(self, reg: _Registration) -> None:
        """Apply the limits, compute the resume, and add the client (one step, so
        every later broadcast is live for it and every earlier one in its replay)."""
        client, history = reg.client, self.history
        if self._refused(reg):
            reg.done.release()
            return
        options = self.options
        client._configure(options.slow_client, options.client_buffer_bytes,
                          options.max_event_size, options.json_default)
        reg.position = history.last_id
        if self.stream_history is not None:
            self._resume_from_stream(reg, self.stream_history)
        elif client.last_event_id is not None:
            reg.resume = history.since(client.last_event_id, client.id)
            if reg.resume.reset is None:
                reg.position = client.last_event_id
        self.index.add(client)
        if reg.thread_limit is not None:
            self._holding.add(client)
        self._count_changed()
        if self._announce is not None and len(self.index.with_id(client.id)) == 1:
            self._publish_presence(self._announce, client.id, "join")
        if reg.catchup is not None:
            self.counters.add("connects")  # counted once read (Inbox.register)
        elif reg.resume.reset is not None:
            self.counters.add_many(connects=1, resets=1)
        elif client.last_event_id is not None:
            self.counters.add_many(connects=1, resumed=1, replayed=len(reg.resume.frames))
        else:
            self.counters.add("connects")
        reg.done.release()

    def _resume_from_stream(self, reg: _Registration, history: StreamHistory) -> None:
        """Set *reg*'s position and resume; starts a catch-up the ring cannot serve."""
        client = reg.client
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
        max_clients = self.options.max_clients
        if max_clients is not None and len(index) >= max_clients:
            self._reap(index.clients())
        if max_clients is not None and len(index) >= max_clients:
            reg.error = HubFull(f"this hub already serves max_clients={max_clients} streams")
            self.counters.add("refused")
            return True
        per_id = self.options.max_clients_per_id
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
        self.catchups.pop(client, None)
        self._holding.discard(client)
        if self.index.remove(client):
            self.counters.add("disconnected")
            self._count_changed()
            if self._presence is not None:
                self._presence.leave(client.id)
            elif self._announce is not None and not self.index.with_id(client.id):
                self._publish_presence(self._announce, client.id, "leave")

    def _publish_presence(self, route: Callable[[str], str | None], client_id: str,
                          state: str) -> None:
        """Publish *client_id*'s join or leave to where *route* sends it (this hub
        only: it has no backplane)."""
        try:
            pattern = route(client_id)
            if pattern is not None:
                body = encode_fields(data_to_text(presence_data(client_id, state)),
                                     event=EVENT_TYPE_PRESENCE)
                self.publish(pattern, [body])
        except Exception:  # the app's callable failed: the stream is fine
            self.counters.add("cluster_errors")
            log.exception("sse_kit: could not announce the %s of client %r", state, client_id)

    def presence(self, pattern: Pattern) -> dict[str, int]:
        """Streams per client ID matching *pattern*, on this hub."""
        counts: dict[str, int] = {}
        for client in self.index.match(pattern):
            counts[client.id] = counts.get(client.id, 0) + 1
        return counts

    def kick(self, pattern: Pattern) -> int:
        """End the streams *pattern* matches (``Hub.disconnect``); return how many."""
        return sum(c._finish(KICKED) for c in list(self.index.match(pattern)))

    def newest(self, client_id: str) -> Client | None:
        """The newest connection with exactly *client_id*, or ``None``."""
        same = self.index.with_id(client_id)
        return same[-1] if same else None

    def end_all(self) -> int:
        """End every stream (the hub is stopping); return how many there were."""
        self.controls.release(None)
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
