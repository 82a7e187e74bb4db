"""Presence and cluster-wide per-ID limits: one thread per hub run keeps this
process's entry in the cluster's roster (:class:`sse_kit._cluster.Roster`).

Also the ``presence`` event that join/leave announcements carry, the same
with or without a backplane.
"""

# design:
# The presence thread (``sse_kit-presence``, started and stopped with the hub
# thread when the hub's backplane keeps a roster) is the only writer of this
# process's roster entry and the only reader and writer of ``_counts``, the
# streams this process holds per client ID (the truth the roster mirrors).
# Request threads hand it admissions (take(): an _Admit, answered through a
# one-shot lock they wait on) and the hub thread hands it leaves (leave(): a
# _Leave, never waited for): the hub thread never waits on the broker. Between
# commands it beats every ttl / 3 seconds, so a process that dies without
# stopping lapses ttl seconds after its last beat, and whoever beats next reaps
# it (announcing its client IDs' leave).
#
# When the broker cannot be reached, nothing is refused for it: admissions are
# answered at once from this process's own count (the hub's per-worker
# max_clients_per_id still holds), the failure is counted (cluster_errors) and
# said once per outage, and the first beat that succeeds rewrites this
# process's entry from _counts.
#
# Stop: stop() puts STOP; the thread answers the admissions behind it, removes
# this process's entry (announcing who left with it) and ends.

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ._cluster import Admission, ClusterBackplane, Roster
from ._event import EVENT_TYPE_PRESENCE, presence_data
from ._exceptions import BackplaneUnavailable, HubFull
from ._patterns import EXACT, Pattern
from ._router import signal

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["JOIN", "LEAVE", "Presence", "announce"]

log = logging.getLogger("sse_kit._hub")

JOIN: Final = "join"
LEAVE: Final = "leave"
# How long an admission waits for the presence thread before checking it is alive.
_POLL: Final = 0.5


def announce(hub: Hub, client_ids: Iterable[str], state: str) -> None:
    """Broadcast a ``presence`` event for each of *client_ids* to the pattern
    ``hub.presence_events`` routes it to (none: not announced). Never raises:
    an announcement that cannot be made is logged and counted."""
    route = hub.presence_events
    if route is None:
        return
    for client_id in client_ids:
        try:
            pattern = route(client_id)
            if pattern is not None:
                hub.broadcast_to_pattern(pattern, presence_data(client_id, state),
                                         event=EVENT_TYPE_PRESENCE)
        except Exception:  # the app's callable, or the backplane: log, go on
            hub.counters.add("cluster_errors")
            log.exception("sse_kit: could not announce the %s of client %r", state, client_id)


# What an admission gets when the thread stopped first (not counted: the hub is
# stopping, and the registration that follows fails).
_UNCOUNTED: Final = Admission(True, 0)


@dataclass(slots=True)
class _Admit:
    client_id: str
    result: Admission = _UNCOUNTED
    done: threading.Lock = field(default_factory=signal)  # released once, when answered


@dataclass(slots=True)
class _Leave:
    client_id: str


_STOP: Final = object()  # leave the loop (put by stop())


class Presence:
    """This process's roster entry, kept by a thread of its own (see the module's
    ``design`` note). Built with the hub's routing state; :meth:`start` begins
    a run, :meth:`stop` ends it."""

    def __init__(self, hub: Hub, backplane: ClusterBackplane) -> None:
        self._hub = hub
        self._backplane = backplane
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sse_kit-presence", daemon=True)
        # Touched by start() before the thread runs, then by the thread only.
        self._roster: Roster | None = None
        self._counts: dict[str, int] = {}
        self._down = False  # the broker failed; cleared by a beat that succeeds
        self._dirty = False  # the roster may not mirror _counts: rewrite at the next beat

    # -- any thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the thread under a new member name (its first act is a beat)."""
        member = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._roster = self._backplane.roster(member, self._hub.presence_ttl)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Remove this process's entry and end the thread (waits up to *timeout*)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def take(self, client_id: str) -> None:
        """On a request thread: count a new stream of *client_id* in the cluster.

        :raises HubFull: if the cluster already holds ``max_clients_per_id`` of them.
        """
        command = _Admit(client_id)
        self._queue.put(command)
        while not command.done.acquire(True, _POLL):
            if not self._thread.is_alive():
                break
        if not command.result.admitted:
            self._hub.counters.add("refused_per_id")
            raise HubFull(
                f"client ID {client_id!r} already has max_clients_per_id="
                f"{self._hub.max_clients_per_id} streams across the cluster",
                limit="max_clients_per_id")

    def leave(self, client_id: str) -> None:
        """A stream of *client_id* ended (or was refused after its admission); never blocks."""
        self._queue.put(_Leave(client_id))

    def count(self, pattern: Pattern) -> dict[str, int]:
        """Streams per client ID matching *pattern*, across the cluster.

        :raises BackplaneUnavailable: if the broker cannot be reached in time.
        """
        roster = self._roster
        if roster is None:
            return {}
        if pattern.kind == EXACT:
            n = roster.count_of(pattern.text)
            return {pattern.text: n} if n else {}
        return {cid: n for cid, n in roster.count().items() if pattern.matches(cid)}

    # -- the presence thread ----------------------------------------------------------

    def _run(self) -> None:
        interval = self._hub.presence_ttl / 3
        next_beat = 0.0
        while True:
            now = time.monotonic()
            command: object = None
            if now >= next_beat:
                next_beat = now + interval
            else:
                try:
                    command = self._queue.get(timeout=next_beat - now)
                except queue.Empty:
                    continue
            if command is _STOP:
                break
            try:
                self._handle(command)
            except Exception:  # a bug must not end presence for the worker's life
                log.exception("sse_kit: presence failed on %r", command or "a beat")
                self._down = self._dirty = True  # rewrite the entry at the next beat
        self._finish()

    def _handle(self, command: object) -> None:
        if command is None:
            self._beat()
        elif isinstance(command, _Admit):
            try:
                command.result = self._admit(command.client_id)
            finally:
                command.done.release()
        elif isinstance(command, _Leave):
            self._leave(command.client_id)

    def _admit(self, client_id: str) -> Admission:
        assert self._roster is not None
        admission = Admission(True, -1)  # unknown: the broker is not asked
        if not self._down:
            try:
                admission = self._roster.admit(client_id, self._hub.max_clients_per_id)
            except BackplaneUnavailable as exc:
                self._failed(exc)
        if admission.admitted:
            self._counts[client_id] = self._counts.get(client_id, 0) + 1
            if admission.others == 0:
                announce(self._hub, (client_id,), JOIN)
        return admission

    def _leave(self, client_id: str) -> None:
        assert self._roster is not None
        n = self._counts.get(client_id, 0)
        if n == 0:
            return  # admitted while the thread was stopping: never counted
        if n == 1:
            del self._counts[client_id]
        else:
            self._counts[client_id] = n - 1
        if self._down:
            return
        try:
            if self._roster.leave(client_id) == 0:
                announce(self._hub, (client_id,), LEAVE)
        except BackplaneUnavailable as exc:
            self._failed(exc)

    def _beat(self) -> None:
        assert self._roster is not None
        try:
            beat = self._roster.beat(dict(self._counts) if self._dirty else None)
            left = list(beat.left)
            if beat.lapsed and not self._dirty and self._counts:
                left += self._roster.beat(dict(self._counts)).left
        except BackplaneUnavailable as exc:
            self._failed(exc)
            return
        if self._down:
            log.warning("sse_kit: the roster is reachable again; per-ID limits and presence "
                        "are cluster-wide again")
        self._down = self._dirty = False
        announce(self._hub, left, LEAVE)

    def _failed(self, exc: BackplaneUnavailable) -> None:
        self._hub.counters.add("cluster_errors")
        if not self._down:
            log.warning("sse_kit: %s; until it is back, max_clients_per_id counts this "
                        "worker's streams only and presence() misses them", exc)
        self._down = self._dirty = True

    def _finish(self) -> None:
        """After STOP: answer the admissions left, then remove this process's entry."""
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(command, _Admit):
                command.done.release()  # the hub is stopping: the registration fails
        assert self._roster is not None
        try:
            left = self._roster.clear()
        except BackplaneUnavailable as exc:
            self._hub.counters.add("cluster_errors")
            log.warning("sse_kit: could not remove this worker from the roster (%s); its "
                        "entry lapses after presence_ttl", exc)
            return
        announce(self._hub, left, LEAVE)

