"""A hub's routing thread in this process: starting a run (and the hub's
``on_start`` callbacks), what a run owns (the inbox, the router, the backplane's
reader, the outlet), and ending it."""

# design:
# A run is one life of the hub thread in one process. start() begins it in a new
# daemon thread, run() in the caller's; the STOP command ends it: the
# hub thread ends every stream, closes the outlet (which writes each detached
# stream's end), answers whatever still waits in the inbox, and leaves fresh state
# for the next run. A fork() leaves the child with the parent's run, which is not
# its own: _begin() sees the new PID and starts afresh. stop() takes no lock and only
# puts STOP in the inbox, so that a signal handler may call it.
#
# When the backplane also keeps a roster (_cluster.py), a presence thread per run
# (_presence.py) keeps this process's count of streams per client ID there:
# request threads ask it to admit a stream (max_clients_per_id across the
# cluster) before they register, the router tells it of every stream that leaves.
# disconnect() then appends a control entry to the log, which every hub applies in
# log order.

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

from ._backplane import DISCONNECT as CONTROL_DISCONNECT
from ._backplane import BackplaneReader
from ._client import Client
from ._cluster import ClusterBackplane
from ._commands import Inbox
from ._controls import Awaited
from ._exceptions import BackplaneUnavailable, EventTooLarge, HubAlreadyRunning, HubNotRunning
from ._history import parse_stream_id
from ._outlet import Outlet
from ._patterns import Pattern
from ._presence import Presence
from ._receipt import Receipt
from ._router import Router, _Registration

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["HubThread"]

log = logging.getLogger("sse_kit._hub")
T = TypeVar("T")

# How long stopping waits for the outlet to write every detached stream's end
# (it lingers at most _outlet.LINGER seconds for slow peers).
_OUTLET_CLOSE: Final = 5.0
# How long stopping waits for the presence thread to remove this process's roster entry.
_PRESENCE_CLOSE: Final = 5.0
# How long disconnect() waits for this hub's reader to apply its control entry.
_CONTROL_WAIT: Final = 10.0


class HubThread:
    """*hub*'s routing thread: its run in this process and what the run owns."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._options = hub.options
        self._counters = hub.counters
        # A backplane that carries control entries and keeps a roster makes
        # disconnect(), max_clients_per_id and presence() cluster-wide.
        backplane = self._options.backplane
        self.cluster = backplane if isinstance(backplane, ClusterBackplane) else None
        if backplane is not None and self.cluster is None:
            hub.advise_once(
                "per_worker_control", logging.WARNING,
                "sse_kit: the backplane %r carries no control entries and keeps no roster: "
                "disconnect(), max_clients_per_id and presence() act on this worker only, "
                "and presence_events are not sent. "
                "Use sse_kit.redis.RedisBackplane for cluster-wide ones", backplane)
        # _lock guards starting a run and its end: thread, _pid, _running,
        # creating _outlet, and _on_start. Never held while waiting for the hub
        # thread or running a callback. stop() does not take it, so that a signal
        # handler may call stop().
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._pid = 0
        self._running = False
        # The process in which stop() was called: the hub does not start itself
        # again there (a worker shutting down must not serve new streams).
        self._halted_pid = 0
        self._stopped = threading.Event()  # set while no hub thread runs
        self._stopped.set()
        # Called after each start in a process (Hub.on_start); appended to only.
        self._on_start: list[Callable[[Hub], None]] = []
        self._reset()

    def _reset(self) -> None:
        """Fresh state for the next run (at construction, after a run, after fork)."""
        self.inbox = Inbox()
        self._presence = Presence(self._hub, self.cluster) if self.cluster is not None else None
        self.router = Router(self._options, self._counters, self._presence)
        self.reader: BackplaneReader | None = None
        self._outlet: Outlet | None = None  # started by the first stream that detaches

    @property
    def running(self) -> bool:
        """Whether a run is under way in this process."""
        return self._running and self._pid == os.getpid()

    def start(self) -> None:
        """Begin a run in a new daemon thread, then run the ``on_start`` callbacks
        (see ``Hub.start``); nothing if a run is already under way here."""
        thread = threading.Thread(target=self._serve, name="sse_kit-hub", daemon=True)
        if self._begin(thread):
            thread.start()
            self._run_callbacks(list(self._on_start))

    def run(self) -> None:
        """Run in the calling thread until stopped (see ``Hub.run``).

        :raises HubAlreadyRunning: if a run is already under way in this process.
        """
        if not self._begin(threading.current_thread()):
            raise HubAlreadyRunning(
                "this hub is already running in this process (hub.start(), or started on "
                "first use); call hub.run() only on a hub that is not running")
        self._run_callbacks(list(self._on_start))  # what they broadcast waits in the inbox
        self._serve()

    def ensure_running(self, what: str) -> None:
        """Start on first use; raise if the hub was stopped in this process.

        :raises HubNotRunning: naming *what* was attempted, and the fix.
        """
        if self.running:
            return
        if self._halted_pid == os.getpid():
            raise HubNotRunning(
                f"{what} on a hub that was stopped in this process (hub.stop(), or the "
                "worker is shutting down); call hub.start() to run it again")
        self.start()
        log.info("sse_kit: hub started on first use (pid %d)", os.getpid())

    def on_start(self, callback: Callable[[Hub], None]) -> None:
        """Call *callback* after each start from now on, and now if running."""
        with self._lock:
            self._on_start.append(callback)
            now = self.running
        if now:
            self._run_callbacks([callback])

    def _run_callbacks(self, callbacks: list[Callable[[Hub], None]]) -> None:
        for callback in callbacks:
            try:
                callback(self._hub)
            except Exception:  # one failing callback must not stop the others
                log.exception("sse_kit: on_start callback %r failed", callback)

    def _begin(self, thread: threading.Thread) -> bool:
        """Mark a run under way in *thread* (not started yet: it must call
        :meth:`_serve`) and start the backplane's reader, whose position is the
        run's first command; ``False`` if a run is already under way here."""
        with self._lock:
            if self.running:
                return False
            if self._pid != os.getpid():
                self._reset()  # forked: the parent's clients and thread are not ours
            self.thread, self._pid, self._running = thread, os.getpid(), True
            self._halted_pid = 0
            self._stopped.clear()
        backplane = self._options.backplane
        if backplane is not None:  # outside the lock: it may wait for a first contact
            self.reader = backplane.start_reader(self.inbox.feed(self._counters))
        if self._presence is not None:
            self._presence.start()
        return True

    def _serve(self) -> None:
        """Run the inbox's commands until STOP, then end the run (on the hub thread)."""
        try:
            self.inbox.serve(self.router)
        finally:
            self._end()

    def _end(self) -> None:
        with self._lock:
            self._running = False
        if self.reader is not None:
            self.reader.stop()
        n = self.router.end_all()
        if self._presence is not None:  # removes this process from the roster
            self._presence.stop(_PRESENCE_CLOSE)
        with self._lock:
            outlet, self._outlet = self._outlet, None
        if outlet is not None:  # writes each detached stream's end, then closes it
            outlet.close(timeout=_OUTLET_CLOSE)
        self.inbox.abandon_all()  # answer whoever is still waiting
        self._reset()
        self._stopped.set()
        if n:
            log.info("sse_kit hub stopped; ended %d stream(s)", n)

    def stop(self, timeout: float | None) -> None:
        """End the run (see ``Hub.stop``); lock-free."""
        if self._pid != os.getpid():
            return  # never started in this process
        self._halted_pid = os.getpid()
        if self._running:
            self.inbox.stop()
        # Also when a stop is already under way (a signal handler asked first):
        # the caller may be about to exit, and the streams' ends must be out by then.
        if timeout != 0 and threading.current_thread() is not self.thread:
            self._stopped.wait(timeout)

    def outlet(self) -> Outlet | None:
        """The outlet detached streams are handed to, started on first use;
        ``None`` once the hub is not running (a stream then stays parked)."""
        with self._lock:
            if not self.running:
                return None
            if self._outlet is None:
                self._outlet = Outlet(self._hub)
            return self._outlet

    def register(self, client: Client, thread_limit: int | None) -> _Registration:
        """Register a stream (starting a run on first use) and read its resume
        (see :meth:`Inbox.register`)."""
        self.ensure_running("a new stream")
        reg = _Registration(client, thread_limit)
        presence = self._presence
        if presence is not None:
            presence.take(client.id)  # a slot in the cluster, or HubFull
        try:
            self.inbox.register(reg, lambda: self.running, self._options.backplane,
                                self._counters)
        except BaseException:
            if presence is not None:  # admitted, never registered
                presence.leave(client.id)
            raise
        return reg

    def publish(self, pattern: str, body: bytes) -> Receipt:
        """Hand an encoded broadcast to the backplane's log, or without one to
        this run's inbox (starting a run on first use).

        :raises EventTooLarge: if *body* is larger than ``max_event_size`` (counted, logged).
        """
        limit = self._options.max_event_size
        if len(body) > limit:
            self._counters.add("too_large")
            log.warning("sse_kit: refused a %d-byte event for %r (max_event_size=%d)",
                        len(body), pattern, limit)
            raise EventTooLarge(
                f"the encoded event is {len(body)} bytes; max_event_size is {limit}")
        backplane = self._options.backplane
        if backplane is None:
            self.ensure_running("broadcast_to_pattern()")
            return self.inbox.publish(pattern, body)
        try:
            backplane.publish(pattern, body)
        except BackplaneUnavailable:
            self._counters.add("backplane_errors")
            raise
        self._counters.add("backplane_published")
        return Receipt.unknown()  # every worker's hub routes it

    def call(self, fn: Callable[[], T], default: T) -> T:
        """Run *fn* on the hub thread and return its result (*default* if not running)."""
        if not self.running:
            return default
        if threading.current_thread() is self.thread:
            return fn()
        return self.inbox.call(fn, default, lambda: self.running)

    def disconnect(self, pattern_text: str, pattern: Pattern) -> int:
        """End the streams *pattern* matches (see ``Hub.disconnect``): on this hub,
        or with a cluster backplane on every hub, through a control entry in the log.

        :returns: how many streams were ended on this hub.
        :raises BackplaneUnavailable: if the control entry could not be appended.
        """
        if self.cluster is None:
            n = self.call(lambda: self.router.kick(pattern), 0)
            if n:
                self._counters.add("kicked", n)
            return n
        try:
            entry_id = self.cluster.control(CONTROL_DISCONNECT, pattern_text)
        except BackplaneUnavailable:
            self._counters.add("backplane_errors")
            raise
        return self._await_control(entry_id)

    def _await_control(self, entry_id: str) -> int:
        """How many streams the control entry *entry_id* ended on this hub, once
        its reader applied it (0 if it does not run here, or not in time)."""
        key = parse_stream_id(entry_id)
        if key is None or not self.running or threading.current_thread() is self.thread:
            return 0  # nothing here to wait for (or the hub thread itself: it applies it later)
        awaited = Awaited(key)
        self.inbox.await_control(awaited)
        if not awaited.done.acquire(True, _CONTROL_WAIT):
            log.warning("sse_kit: this worker has not read the control entry %s within %gs; "
                        "it ends its streams when it does", entry_id, _CONTROL_WAIT)
            return 0
        return awaited.result

    def presence(self, pattern: Pattern) -> dict[str, int]:
        """Streams per client ID matching *pattern* (see ``Hub.presence``)."""
        if self._presence is None:
            return self.call(lambda: self.router.presence(pattern), {})
        self.ensure_running("presence()")
        return self._presence.count(pattern)
