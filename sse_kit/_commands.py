"""The hub's inbox: the commands other threads hand the hub thread, and the loop
that runs them (see the ``design`` note in :mod:`sse_kit._hub`)."""

# design:
# Broadcasts to one pattern already waiting in the inbox, one behind the other, are
# routed as one batch (Inbox._gather): each keeps its own ID and history entry, a
# detached stream gets the batch in one write, a parked stream gets each event
# queued under the usual limits. Nothing waits to fill a batch; one forms only when
# the hub thread is behind (bursts, high rates).

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from ._backplane import Backplane, Feed, Item
from ._client import Client
from ._controls import Awaited
from ._exceptions import HubNotRunning
from ._history import RESET_UNAVAILABLE, Resume, parse_stream_id
from ._patterns import compile_pattern
from ._receipt import Receipt
from ._router import (
    BATCH_BYTES,
    BATCH_EVENTS,
    Router,
    _Catchup,
    _Registration,
    signal,
)
from ._stats import Counters
from ._wire import with_id

# How far (in the stream's milliseconds) a resume's Last-Event-ID may be ahead of
# this hub's reader, when the log cannot be asked, and still be taken as real:
# readers of one stream on different workers differ by milliseconds, by seconds
# after an outage (each reconnects on its own backoff).
AHEAD_MAX_MS: Final = 10_000

__all__ = [
    "STOP", "AwaitControl", "Call", "Command", "Deliver", "Inbox", "Publish", "Rebase",
    "Register", "Resumed", "Unregister",
]

log = logging.getLogger("sse_kit._hub")
T = TypeVar("T")

# How long a thread waiting for the hub thread's answer waits before it checks
# that the hub thread still runs.
_POLL: Final = 0.5


def _answered(done: threading.Lock, running: Callable[[], bool]) -> bool:
    """Wait until *done* is released (the hub thread answered); ``False`` if the
    hub stopped first."""
    while not done.acquire(True, _POLL):
        if not running():
            return False
    return True


class Command:
    """Work for the hub thread; :meth:`run` there, or :meth:`abandon` if it stopped."""

    __slots__ = ()

    def run(self, router: Router) -> None:
        """Do it, on the hub thread."""

    def abandon(self) -> None:
        """The hub stopped before running it: answer whoever waits for it."""


@dataclass(slots=True)
class Publish(Command):
    """A local broadcast: *body* is the encoded event without its ``id:`` line."""

    pattern: str
    body: bytes
    receipt: Receipt

    def run(self, router: Router) -> None:
        _publish(router, (self,))

    def abandon(self) -> None:
        self.receipt._settle(None)  # not routed: the hub stopped first


@dataclass(slots=True)
class Register(Command):
    """A new stream; its request thread waits on ``reg.done``."""

    reg: _Registration

    def run(self, router: Router) -> None:
        router.register(self.reg)

    def abandon(self) -> None:
        self.reg.error = HubNotRunning("the hub stopped")
        self.reg.done.release()


@dataclass(slots=True)
class Unregister(Command):
    """A stream that ended (or a client removed)."""

    client: Client

    def run(self, router: Router) -> None:
        router.unregister(self.client)


@dataclass(slots=True)
class Call(Command):
    """Run *fn* on the hub thread; the caller waits on :attr:`done` for :attr:`result`
    (*result* is the caller's default until then)."""

    fn: Callable[[], Any]
    result: Any
    done: threading.Lock = field(default_factory=signal)  # released once, when answered

    def run(self, router: Router) -> None:
        try:
            self.result = self.fn()
        finally:  # the caller must not wait forever for a call that failed
            self.done.release()

    def abandon(self) -> None:
        self.done.release()


@dataclass(slots=True)
class Deliver(Command):
    """Entries (events and control entries) a backplane reader read, in log order."""

    entries: Sequence[Item]

    def run(self, router: Router) -> None:
        router.deliver(self.entries)


@dataclass(slots=True)
class Rebase(Command):
    """The backplane reader continues after *position* (*reason*: why events may
    have been missed, or ``None``)."""

    position: str
    reason: str | None

    def run(self, router: Router) -> None:
        router.rebase(self.position, self.reason)


@dataclass(slots=True)
class Resumed(Command):
    """A resume read from the backplane is in its registration: release what was held."""

    catchup: _Catchup

    def run(self, router: Router) -> None:
        router.resumed(self.catchup)


@dataclass(slots=True)
class AwaitControl(Command):
    """A Hub.disconnect() waits on ``awaited.done`` for its control entry to be
    applied here."""

    awaited: Awaited

    def run(self, router: Router) -> None:
        router.controls.wait(self.awaited)

    def abandon(self) -> None:
        self.awaited.done.release()


# Leave the loop (put by Inbox.stop(); a plain command, so a signal handler may put it).
STOP: Final = Command()


def _publish(router: Router, batch: Sequence[Publish]) -> None:
    """Route *batch* (broadcasts to one pattern) and answer each receipt."""
    matched: int | None = None
    try:
        matched = router.publish(batch[0].pattern, [p.body for p in batch])
    finally:  # a caller waiting on a receipt is answered whatever happened
        for p in batch:
            p.receipt._settle(matched)


class Inbox:
    """The hub thread's one inbox: any thread puts commands in through the
    methods named for them; the hub thread runs them in :meth:`serve`."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def qsize(self) -> int:
        """Commands waiting (approximate, as ``queue.SimpleQueue.qsize``)."""
        return self._queue.qsize()

    # -- any thread ---------------------------------------------------------------

    def publish(self, pattern: str, body: bytes) -> Receipt:
        """A local broadcast; the receipt is answered once it is routed."""
        receipt = Receipt()
        self._queue.put(Publish(pattern, body, receipt))
        return receipt

    def register(self, reg: _Registration, running: Callable[[], bool],
                 backplane: Backplane | None, counters: Counters) -> None:
        """A new stream: return once the hub thread has registered it, and its
        resume is read (from *backplane* when the history could not serve it).

        :raises HubFull: if a limit refused it.
        :raises HubNotRunning: if the hub stopped first (*running* says whether it runs).
        """
        self._queue.put(Register(reg))
        if not _answered(reg.done, running):
            raise HubNotRunning("the hub stopped before the stream was registered "
                                "(hub.stop(), or the worker is shutting down)")
        if reg.error is not None:
            raise reg.error
        if reg.catchup is not None:
            assert backplane is not None, "a catch-up on a hub without a backplane"
            self._catch_up(reg, backplane, counters)

    def unregister(self, client: Client) -> None:
        """A stream that ended."""
        self._queue.put(Unregister(client))

    def call(self, fn: Callable[[], T], default: T, running: Callable[[], bool]) -> T:
        """Run *fn* on the hub thread and return its result, or *default* if the
        hub stopped first (*running* says whether it runs) or *fn* failed."""
        call = Call(fn, default)
        self._queue.put(call)
        return cast(T, call.result) if _answered(call.done, running) else default

    def await_control(self, awaited: Awaited) -> None:
        """Answer *awaited* once its control entry is applied on the hub thread."""
        self._queue.put(AwaitControl(awaited))

    def stop(self) -> None:
        """Leave :meth:`serve` after the commands already in (lock-free: safe
        from a signal handler)."""
        self._queue.put(STOP)

    def feed(self, counters: Counters) -> Feed:
        """Where a backplane reader hands what it reads: straight in here."""
        put = self._queue.put
        return Feed(
            deliver=lambda entries: put(Deliver(entries)),
            rebase=lambda position, reason: put(Rebase(position, reason)),
            counters=counters,
        )

    def _catch_up(self, reg: _Registration, backplane: Backplane, counters: Counters) -> None:
        """On the request thread: read the resume the stream history could not
        serve from the log into *reg*, then hand ``reg.catchup`` back to the hub
        thread (:meth:`Router.resumed`), which holds live events for the client
        until then."""
        catchup = reg.catchup
        assert catchup is not None
        try:
            replay = backplane.replay(reg.client.last_event_id or "")
            if replay.reset is not None:
                reg.resume = Resume(reset=replay.reset)
                if replay.reset == RESET_UNAVAILABLE and _just_ahead(catchup):
                    # Another worker's reader is a little ahead of this one: the stream
                    # goes on after the ID the client has, never before it (which
                    # would send again what it had).
                    reg.position = reg.client.last_event_id or ""
                else:
                    reg.position = catchup.fallback
                    catchup.threshold = (0, 0)
                counters.add("resets")
                return
            client_id, frames = reg.client.id, []
            for event_id, key, pattern, body in replay.entries:
                catchup.threshold = max(catchup.threshold, key)
                if compile_pattern(pattern).matches(client_id):
                    frames.append(with_id(event_id, body))
            reg.resume = Resume(frames=tuple(frames))
            counters.add_many(resumed=1, replayed=len(frames))
        finally:
            self._queue.put(Resumed(catchup))

    # -- the hub thread -----------------------------------------------------------

    def serve(self, router: Router) -> None:
        """Run the commands, in arrival order, until :data:`STOP`."""
        get = self._queue.get
        command: Command | None = None  # taken from the inbox, not run yet
        while True:
            current = command if command is not None else get()
            command = None
            if current is STOP:
                return
            try:
                if type(current) is Publish:
                    # Broadcasts to the same pattern already waiting behind this one
                    # go out together: one write per fast-path client, not one each.
                    batch, command = self._gather(current)
                    _publish(router, batch)
                else:
                    current.run(router)
            except Exception:  # a bug must not take every stream down with it
                log.exception("sse_kit hub: %s failed", type(current).__name__)

    def _gather(self, first: Publish) -> tuple[list[Publish], Command | None]:
        """*first* and the broadcasts to its pattern right behind it (only those
        already here: nothing waits); also the first other command taken, which
        must run next, or ``None``."""
        batch, size, pattern = [first], len(first.body), first.pattern
        while len(batch) < BATCH_EVENTS and size < BATCH_BYTES:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                return batch, None
            if type(command) is not Publish or command.pattern != pattern:
                return batch, command
            batch.append(command)
            size += len(command.body)
        return batch, None

    def abandon_all(self) -> None:
        """Answer whoever waits on a command still here (the hub stopped)."""
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                return
            command.abandon()


def _just_ahead(catchup: _Catchup) -> bool:
    """Whether the client's ID is newer than this hub's position by at most
    :data:`AHEAD_MAX_MS`: another reader of the stream was a little ahead (an ID
    further ahead, unchecked while the log is unavailable, is not trusted)."""
    fallback = parse_stream_id(catchup.fallback)
    return fallback is not None and fallback < catchup.key <= (fallback[0] + AHEAD_MAX_MS, 0)
