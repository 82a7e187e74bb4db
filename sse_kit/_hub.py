"""The Hub: routes broadcasts to clients by glob pattern."""

# design:
# One thread owns the routing state. The hub thread (started by ``Hub.start()``,
# or whichever thread calls ``Hub.run()``) is the only reader and writer of the
# Router (_router.py): the ClientIndex, the histories and the resumes in flight.
# Every other thread (request threads opening streams, publishers, a backplane
# reader) hands it work through one Inbox, a ``queue.SimpleQueue`` of small
# typed commands (_commands.py: Publish, Register, Call, ...); the hub thread
# runs them in arrival order, which is what orders events per publisher and
# makes a resume gap-free: a registration reads the history and joins the index
# in one step, so every broadcast is either in the replay or in the live queue,
# never both.
#
# Broadcasts to one pattern that are already waiting in the inbox, one behind
# the other, are routed as one batch (Inbox._gather): each keeps its own ID
# and history entry, a fast-path client gets the batch in one write, a
# queue-path client gets each event queued under the usual limits. Nothing
# waits to fill a batch; it only forms when the hub thread is behind (bursts,
# high rates). A batch of backplane entries is routed the same way, a run of
# entries to one pattern at a time.
#
# The hub thread never blocks on a client: delivering is an append to the
# client's bounded outbox under that client's own lock (or, on the fast path, one
# non-blocking send() to the client's socket under that lock: see
# sse_kit._outlet for who owns the socket when); a full outbox drops the
# frame or ends that stream (the slow_client policy). A request thread waits for
# the hub thread only to learn whether its registration was accepted. At a limit
# (max_clients, max_clients_per_id) the hub thread asks the sockets of the
# clients concerned whether their peer has gone (a zero-timeout poll, see
# _socket.py), so a dead connection's slot goes to the new one.
#
# A stream's own deadlines (max_age, the keep-alive, write_timeout) are kept by
# its request thread; the hub thread never waits on them.
#
# Shutdown: stop() puts STOP in the inbox (lock-free, so a signal handler may call
# it). The hub thread ends every stream (each writes what is queued plus a short
# retry: hint, then returns), answers registrations still in the inbox with
# HubNotRunning, and run() returns. A fork() leaves the child with no hub thread;
# start() notices the new PID and starts afresh.
#
# With a backplane (see _backplane.py) a broadcast goes to the backplane's log
# instead of the inbox; the backplane's reader thread (started and stopped with
# the hub thread) feeds the log back through the inbox as Deliver/Rebase, and a
# resume the ring cannot serve completes with Resumed. When the backplane also
# keeps a roster (_cluster.py), a presence thread per run (_presence.py) keeps
# this process's count of streams per client ID there: request threads ask it
# to admit a stream (max_clients_per_id across the cluster) before they
# register, the router tells it of every stream that leaves. disconnect() then
# appends a control entry to the log, which every hub applies in log order.

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Final, TypeVar

from ._advice import Advisor
from ._backplane import DISCONNECT as CONTROL_DISCONNECT
from ._backplane import Backplane, BackplaneReader
from ._client import CLOSED, DISCONNECT, DROP, Client, SlowClientPolicy
from ._cluster import ClusterBackplane
from ._commands import Inbox
from ._controls import Awaited
from ._exceptions import BackplaneUnavailable, EventTooLarge, HubNotRunning
from ._history import parse_stream_id
from ._options import check_int, check_seconds
from ._outlet import Outlet
from ._patterns import compile_pattern, validate_pattern
from ._presence import Presence
from ._receipt import Receipt
from ._router import MIB, Router, _Registration
from ._stats import Counters
from ._wire import data_to_text, encode_fields

__all__ = ["Hub"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a caller waits for the hub thread to answer before checking it is alive.
_POLL: Final = 0.5
# How long stopping waits for the outlet to write every detached stream's end
# (it lingers at most _outlet.LINGER seconds for slow peers).
_OUTLET_CLOSE: Final = 5.0
# How long stopping waits for the presence thread to remove this process's roster entry.
_PRESENCE_CLOSE: Final = 5.0
# How long disconnect() waits for this hub's reader to apply its control entry.
_CONTROL_WAIT: Final = 10.0


def _check_client(client: object) -> None:
    # A wrong type must fail here, in the caller, not later on the hub thread.
    if not isinstance(client, Client):
        raise TypeError(f"client must be a sse_kit.Client, not {type(client).__name__}")


# The constructor's options: read-only once the hub is built (the router and
# the streams read them at registration, so a later change would silently
# apply to some streams and not others).
_OPTIONS: Final = frozenset({
    "client_buffer", "keepalive_interval", "max_clients", "history_size", "history_ttl",
    "slow_client", "retry", "shutdown_retry", "max_clients_per_id", "max_event_size",
    "client_buffer_bytes", "max_age", "write_timeout", "backplane", "fast_path", "json_default",
    "presence_ttl", "presence_events",
})


class Hub:
    """Routes events to connected clients by glob patterns over client IDs.

    :param client_buffer: events each client may have waiting to be written.
    :param keepalive_interval: seconds of silence after which a stream writes a
        keep-alive comment (which is also how a vanished client is noticed).
    :param max_clients: streams this hub serves at once; more get ``503``.
    :param history_size: recent broadcasts kept for ``Last-Event-ID`` resume
        (``0`` turns resume off: every reconnect across a gap gets ``reset``; with a
        backplane such a resume is read from the backplane instead).
    :param history_ttl: seconds a broadcast stays resumable.
    :param slow_client: ``"disconnect"`` (default with history or a backplane) ends a stream whose
        outbox overflows, after writing what is queued; the browser reconnects and
        resumes from history, so nothing is lost. ``"drop"`` (default without
        history) drops the events that do not fit, for that client only.
    :param retry: the ``retry:`` hint, in milliseconds, on every stream's first frame.
    :param shutdown_retry: the ``retry:`` hint written when the hub stops, or a
        stream reaches *max_age*, so browsers come back (to another worker, or
        through your authorization again) quickly.
    :param max_clients_per_id: streams one client ID may hold at once (browser
        tabs); the newest beyond it is refused (``429``). ``None``: no limit.
    :param max_event_size: the largest encoded event, in bytes, that
        :meth:`broadcast_to_pattern` and :meth:`Client.send` accept.
    :param client_buffer_bytes: bytes of events each client may have waiting to
        be written (besides *client_buffer* events); an overflow follows
        *slow_client*. One event always fits in an empty outbox.
    :param max_age: seconds after which a stream ends (minus up to 10% random
        jitter, so streams opened together do not reconnect together); the
        browser reconnects, goes through your authorization again and resumes
        through ``Last-Event-ID``. ``None``: streams last until the client leaves.
    :param write_timeout: seconds a write to the client may block before the
        connection is dropped (under gunicorn, via ``environ["gunicorn.socket"]``),
        so a client that stops reading cannot hold a worker thread.
        ``None``: never time out.
    :param backplane: a shared log every hub follows (:class:`sse_kit.redis.RedisBackplane`)
        so that a broadcast reaches the clients of every worker and host; event IDs
        are then the log's, and a resume the history cannot serve is read from it.
    :param fast_path: let streams detach: under :class:`sse_kit.gunicorn.ThreadWorker`
        (or gthread with :mod:`sse_kit.gunicorn`'s hooks), over plain HTTP/1.1, a
        stream's socket passes to the hub side after its first chunk and holds no
        worker thread (see ``docs/performance.md``); ``False``: every stream
        holds its server thread (the parked path).
    :param json_default: called with each value inside event data (a ``dict`` or
        ``list``) that JSON has no type for (a ``datetime``, a ``Decimal``, a
        dataclass); returns something JSON can encode, or raises ``TypeError``
        (``json.dumps``'s ``default``). Used by :meth:`broadcast_to_pattern` and
        :meth:`Client.send`. ``None``: such a value raises ``TypeError``.
    :param presence_ttl: with a backplane that keeps a roster
        (:class:`sse_kit.redis.RedisBackplane`): seconds after which a worker
        that died without stopping (``SIGKILL``, a lost host) no longer counts
        in :meth:`presence` and ``max_clients_per_id``; each worker renews its
        entry every third of it. A clean stop removes the entry at once.
    :param presence_events: ``presence_events(client_id)`` returns the pattern
        a ``presence`` event goes to when *client_id* joins (its first stream
        opens, anywhere in the cluster) or leaves (its last one ends), or
        ``None`` for no event; data ``{"client_id": ..., "state": "join"}`` (or
        ``"leave"``). ``None``: no presence events. Without a backplane it runs
        on the hub thread: keep it quick.
    :raises ValueError: if any argument is out of range; the message names it.
    :raises TypeError: if *json_default* or *presence_events* is not callable.

    Each argument is kept as a read-only attribute of the same name
    (``hub.max_clients``); setting one later raises ``AttributeError``, since
    streams already open would not see the change.
    """

    def __init__(
        self,
        *,
        client_buffer: int = 256,
        keepalive_interval: float = 30.0,
        max_clients: int | None = None,
        history_size: int = 1000,
        history_ttl: float = 300.0,
        slow_client: SlowClientPolicy | None = None,
        retry: int = 3000,
        shutdown_retry: int = 250,
        max_clients_per_id: int | None = 10,
        max_event_size: int = MIB,
        client_buffer_bytes: int = 4 * MIB,
        max_age: float | None = None,
        write_timeout: float | None = 30.0,
        backplane: Backplane | None = None,
        fast_path: bool = True,
        json_default: Callable[[Any], Any] | None = None,
        presence_ttl: float = 15.0,
        presence_events: Callable[[str], str | None] | None = None,
    ) -> None:
        check_int("client_buffer", client_buffer, 1)
        check_seconds("keepalive_interval", keepalive_interval)
        check_int("max_clients", max_clients, 1, optional=True)
        check_int("history_size", history_size, 0)
        check_seconds("history_ttl", history_ttl)
        if slow_client is None:
            slow_client = DISCONNECT if history_size or backplane is not None else DROP
        if slow_client not in (DISCONNECT, DROP):
            raise ValueError(f"slow_client must be 'disconnect' or 'drop', got {slow_client!r}")
        check_int("retry", retry, 0)
        check_int("shutdown_retry", shutdown_retry, 0)
        check_int("max_clients_per_id", max_clients_per_id, 1, optional=True)
        check_int("max_event_size", max_event_size, 1)
        check_int("client_buffer_bytes", client_buffer_bytes, 1)
        check_seconds("max_age", max_age, optional=True)
        check_seconds("write_timeout", write_timeout, optional=True)
        if backplane is not None and not isinstance(backplane, Backplane):
            raise ValueError(f"backplane must implement sse_kit.Backplane, got {backplane!r}")
        if not isinstance(fast_path, bool):
            raise ValueError(f"fast_path must be a bool, got {fast_path!r}")
        self.client_buffer = client_buffer
        self.keepalive_interval = float(keepalive_interval)
        self.max_clients = max_clients
        self.history_size = history_size
        self.history_ttl = float(history_ttl)
        self.slow_client: SlowClientPolicy = slow_client
        self.retry = retry
        self.shutdown_retry = shutdown_retry
        self.max_clients_per_id = max_clients_per_id
        self.max_event_size = max_event_size
        self.client_buffer_bytes = client_buffer_bytes
        self.max_age = None if max_age is None else float(max_age)
        self.write_timeout = None if write_timeout is None else float(write_timeout)
        self.backplane = backplane
        self.fast_path = fast_path
        if json_default is not None and not callable(json_default):
            raise TypeError(
                f"json_default must be callable or None, not {type(json_default).__name__}")
        self.json_default = json_default
        check_seconds("presence_ttl", presence_ttl)
        if presence_events is not None and not callable(presence_events):
            raise TypeError(f"presence_events must be callable or None, not "
                            f"{type(presence_events).__name__}")
        self.presence_ttl = float(presence_ttl)
        self.presence_events = presence_events
        self._options_set = True  # from now on the options above are read-only
        self.counters = Counters()
        self._advisor = Advisor(self.counters)  # once per process: never reset
        # A backplane that carries control entries and keeps a roster makes
        # disconnect(), max_clients_per_id and presence() cluster-wide.
        self._cluster: ClusterBackplane | None = None
        if isinstance(backplane, ClusterBackplane):
            self._cluster = backplane
        elif backplane is not None:
            self.advise_once(
                "per_worker_control", logging.WARNING,
                "sse_kit: the backplane %r carries no control entries and keeps no roster: "
                "disconnect(), max_clients_per_id and presence() act on this worker only, "
                "and presence_events are not sent. "
                "Use sse_kit.redis.RedisBackplane for cluster-wide ones", backplane)
        # _state_lock guards starting and the end of run(): _thread, _pid,
        # _running, and creating _outlet_now. Never held while waiting for the
        # hub thread. stop() does not take it, so that a signal handler may call stop().
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._running = False
        # The process in which stop() was called: the hub does not start itself
        # again there (a worker shutting down must not serve new streams).
        self._halted_pid = 0
        # Called after each start in a process (see on_start); appended to only.
        self._on_start: list[Callable[[Hub], None]] = []
        self._stopped = threading.Event()  # set while no hub thread runs
        self._stopped.set()
        self._reset()

    def _reset(self) -> None:
        """Fresh routing state (at construction, after stop, after fork)."""
        self._inbox = Inbox()
        self._presence = Presence(self, self._cluster) if self._cluster is not None else None
        self._router = Router(self, self._presence)
        self._reader: BackplaneReader | None = None
        # The thread that serves detached streams (sse_kit._outlet); started by
        # the first stream that detaches, closed when the hub stops.
        self._outlet_now: Outlet | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OPTIONS and getattr(self, "_options_set", False):
            raise AttributeError(
                f"Hub.{name} is read-only: pass it to Hub({name}=...) when you build the hub")
        super().__setattr__(name, value)

    def _outlet(self) -> Outlet | None:
        """The outlet detached streams are handed to, started on first use;
        ``None`` once the hub is not running (a stream then stays parked)."""
        with self._state_lock:
            if not self._is_running():
                return None
            if self._outlet_now is None:
                self._outlet_now = Outlet(self)
            return self._outlet_now

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Hub:
        """Run the hub in a daemon thread named ``sse_kit-hub``; idempotent.

        You rarely need to call it: a hub starts itself on first use (the first
        stream or broadcast) in the process that uses it, and sse_kit's gunicorn
        worker class starts it in each worker. After a ``fork()`` (gunicorn
        workers) the child starts its own thread. Then the :meth:`on_start`
        callbacks run, in this thread.

        :returns: this hub, so ``hub = Hub().start()`` works.
        """
        with self._state_lock:
            if self._running and self._pid == os.getpid():
                return self
            thread = threading.Thread(target=self._loop, name="sse_kit-hub", daemon=True)
            self._begin(thread)
            self._halted_pid = 0
        self._start_reader()  # before the hub thread: its position is the first command
        thread.start()
        self._run_on_start(list(self._on_start))
        return self

    def on_start(self, callback: Callable[[Hub], None]) -> Callable[[Hub], None]:
        """Call *callback(hub)* each time this hub starts in a process: once per
        gunicorn worker, after its hub runs (now, if it already runs here).

        The home of background publishers (a ticker, a queue consumer): start
        their thread from *callback*, so that it runs in every worker, after the
        fork, and its first broadcast finds the hub running. Usable as a decorator.

        :returns: *callback*.
        :raises TypeError: if *callback* is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        with self._state_lock:
            self._on_start.append(callback)
            now = self._is_running()
        if now:
            self._run_on_start([callback])
        return callback

    def advise_once(self, key: str, level: int, message: str, *args: Any) -> bool:
        """Log *message* (``%``-style *args*) at *level* on the ``sse_kit`` logger,
        unless this hub already said *key* in this process; a WARNING is counted
        in ``stats()["misconfigured"]``. For adapters (sse_kit's own, or yours)
        that spot a setup costing streams or events: say it once, with the fix.

        :returns: whether it was logged now.
        """
        return self._advisor.once(key, level, message, *args)

    def _run_on_start(self, callbacks: list[Callable[[Hub], None]]) -> None:
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # one failing callback must not stop the others
                log.exception("sse_kit: on_start callback %r failed", callback)

    def _ensure_running(self, what: str) -> None:
        """Start the hub on first use; raise if it was stopped in this process."""
        if self._is_running():
            return
        if self._halted_pid == os.getpid():
            raise HubNotRunning(
                f"{what} on a hub that was stopped in this process (hub.stop(), or the "
                "worker is shutting down); call hub.start() to run it again"
            )
        self.start()
        log.info("sse_kit: hub started on first use (pid %d)", os.getpid())

    def run(self) -> None:
        """Route events in the calling thread until :meth:`stop` is called.

        :raises RuntimeError: if the hub is already running.
        """
        with self._state_lock:
            if self._running and self._pid == os.getpid():
                raise RuntimeError("this hub is already running")
            self._begin(threading.current_thread())
            self._halted_pid = 0
        self._start_reader()
        self._run_on_start(list(self._on_start))  # what they broadcast waits in the inbox
        self._loop()

    def _begin(self, thread: threading.Thread) -> None:
        """Mark the hub running in *thread*; called with _state_lock held."""
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's clients and thread are not ours
        self._thread = thread
        self._pid = os.getpid()
        self._running = True
        self._stopped.clear()

    def _start_reader(self) -> None:
        """Start the backplane's reader (and presence thread) for this run; outside
        _state_lock, as it may wait up to the backplane's timeout for a first contact."""
        if self.backplane is not None:
            self._reader = self.backplane.start_reader(self._inbox.feed(self.counters))
        if self._presence is not None:
            self._presence.start()

    def _loop(self) -> None:
        try:
            self._inbox.serve(self._router)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._state_lock:
            self._running = False
        if self._reader is not None:
            self._reader.stop()
        n = self._router.end_all()
        if self._presence is not None:  # removes this process from the roster
            self._presence.stop(_PRESENCE_CLOSE)
        with self._state_lock:
            outlet, self._outlet_now = self._outlet_now, None
        if outlet is not None:  # writes each detached stream's end, then closes it
            outlet.close(timeout=_OUTLET_CLOSE)
        self._inbox.abandon_all()  # answer whoever is still waiting
        self._reset()
        self._stopped.set()
        if n:
            log.info("sse_kit hub stopped; ended %d stream(s)", n)

    def stop(self, timeout: float | None = 5.0) -> None:
        """End every stream and stop the hub thread; idempotent.

        Safe to call from a signal handler with ``timeout=0``.

        :param timeout: seconds to wait for the hub thread to finish; ``0`` does
            not wait, ``None`` waits without limit.
        """
        if self._pid != os.getpid():
            return  # never started in this process
        self._halted_pid = os.getpid()
        if self._running:
            self._inbox.stop()
        # Also when a stop is already under way (a signal handler asked first):
        # the caller may be about to exit, and the streams' ends must be out by then.
        if timeout != 0 and threading.current_thread() is not self._thread:
            self._stopped.wait(timeout)

    @property
    def running(self) -> bool:
        """Whether the hub thread is running in this process."""
        return self._is_running()

    def _is_running(self) -> bool:
        return self._running and self._pid == os.getpid()

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- publishing -------------------------------------------------------------

    def broadcast_to_pattern(
        self, pattern: str, data: Any, *, event: str | None = None
    ) -> Receipt:
        """Send *data* to every client whose ID matches the glob *pattern*.

        The event is encoded once, here, and the same bytes are queued to every
        recipient. Safe from any thread; events one thread publishes reach each
        client in order. Never waits for the hub thread: the :class:`Receipt` it
        returns says, when asked, how many streams of this hub the event reached.

        :param pattern: an ``fnmatch`` glob over client IDs (``job:17:*``), case-sensitive.
        :param data: ``str``/``bytes`` as they are, ``dict``/``list`` as compact JSON.
        :param event: the event type (``addEventListener`` name); ``None`` is ``message``.
        :raises InvalidPattern: if *pattern* is empty or not a ``str``.
        :raises ValueError: if *event* contains CR, LF or NUL, or bytes are not UTF-8.
        :raises EventTooLarge: if the encoded event is larger than ``max_event_size``.
        :raises TypeError: if *data* is of another type.
        :raises HubNotRunning: if the hub was stopped in this process (without a
            backplane); a hub that never ran starts here.
        :raises BackplaneUnavailable: if the backplane cannot be reached in time;
            the event was not published (unless only the answer timed out).
        """
        validate_pattern(pattern)
        body = encode_fields(data_to_text(data, self.json_default), event=event)
        if len(body) > self.max_event_size:
            self.counters.add("too_large")
            log.warning("sse_kit: refused a %d-byte event for %r (max_event_size=%d)",
                        len(body), pattern, self.max_event_size)
            raise EventTooLarge(
                f"the encoded event is {len(body)} bytes; max_event_size is {self.max_event_size}"
            )
        if self.backplane is not None:
            self._publish_to_backplane(pattern, body)
            return Receipt.unknown()  # every worker's hub routes it
        self._ensure_running("broadcast_to_pattern()")
        return self._inbox.publish(pattern, body)

    def _publish_to_backplane(self, pattern: str, body: bytes) -> None:
        assert self.backplane is not None
        try:
            self.backplane.publish(pattern, body)
        except BackplaneUnavailable:
            self.counters.add("backplane_errors")
            raise
        self.counters.add("backplane_published")

    # -- clients ----------------------------------------------------------------

    def register(self, client: Client) -> None:
        """Add *client* to the routing table (:func:`serve_sse` does this for you).

        :raises HubFull: if ``max_clients`` streams are already open, or
            ``max_clients_per_id`` with the client's ID (the new one is refused).
        :raises TypeError: if *client* is not a :class:`Client`.
        :raises HubNotRunning: if the hub was stopped in this process; a hub that
            never ran starts here.
        """
        self._register(client)

    def _register(self, client: Client, thread_limit: int | None = None) -> _Registration:
        _check_client(client)
        reg = _Registration(client, thread_limit)
        self._ensure_running("a new stream")
        presence = self._presence
        if presence is not None:
            presence.take(client.id)  # a slot in the cluster, or HubFull
        try:
            self._inbox.register(reg)
            while not reg.done.acquire(True, _POLL):
                if not self._is_running():
                    raise HubNotRunning(
                        "the hub stopped before the stream was registered (hub.stop(), or the "
                        "worker is shutting down)")
            if reg.error is not None:
                raise reg.error
        except BaseException:
            if presence is not None:  # admitted, never registered
                presence.leave(client.id)
            raise
        if reg.catchup is not None:  # the history could not serve it: read the log
            assert self.backplane is not None
            self._inbox.catch_up(reg, self.backplane, self.counters)
        return reg

    def unregister(self, client: Client) -> None:
        """Remove *client* and end its stream; idempotent, never blocks.

        :raises TypeError: if *client* is not a :class:`Client`.
        """
        _check_client(client)
        client._finish(CLOSED)
        if self.running:
            self._inbox.unregister(client)

    def disconnect(self, pattern: str) -> int:
        """End the streams of every client whose ID matches *pattern* now.

        Use it when a user logs out or loses a permission; browsers reconnect
        (after the ``retry`` hint) and go through your authorization again.

        With a backplane that carries control entries
        (:class:`sse_kit.redis.RedisBackplane`), it appends one to the log, and
        every hub (every worker, every host) ends its matching streams where the
        entry stands among the events: an event published after this returns
        reaches none of them. Without one, it acts on this hub's streams only.

        :returns: how many streams were ended on this hub (with a backplane:
            once this hub's reader has applied the entry, waited for up to 10
            seconds; the other workers' streams are not counted).
        :raises InvalidPattern: if *pattern* is empty or not a ``str``.
        :raises BackplaneUnavailable: with a backplane, if the control entry
            could not be appended: no stream was ended, on any worker.
        """
        compiled = compile_pattern(pattern)
        if self._cluster is None:
            n = self._call(lambda: self._router.kick(compiled), 0)
            if n:
                self.counters.add("kicked", n)
        else:
            try:
                entry_id = self._cluster.control(CONTROL_DISCONNECT, pattern)
            except BackplaneUnavailable:
                self.counters.add("backplane_errors")
                raise
            n = self._await_control(entry_id)
        log.info("sse_kit: disconnect(%r) ended %d stream(s)", pattern, n)
        return n

    def _await_control(self, entry_id: str) -> int:
        """How many streams the control entry *entry_id* ended on this hub, once
        its reader applied it (0 if it does not run here, or not in time)."""
        key = parse_stream_id(entry_id)
        if key is None or not self.running or threading.current_thread() is self._thread:
            return 0  # nothing here to wait for (or the hub thread itself: it applies it later)
        awaited = Awaited(key)
        self._inbox.await_control(awaited)
        if not awaited.done.acquire(True, _CONTROL_WAIT):
            log.warning("sse_kit: this worker has not read the control entry %s within %gs; "
                        "it ends its streams when it does", entry_id, _CONTROL_WAIT)
            return 0
        return awaited.result

    def presence(self, pattern: str = "*") -> dict[str, int]:
        """The client IDs matching *pattern* that have streams open, with how
        many each, sorted by ID: across the cluster with a backplane that keeps
        a roster (:class:`sse_kit.redis.RedisBackplane`; a worker that died
        without stopping counts until ``presence_ttl`` has passed), else on this hub.

        :raises InvalidPattern: if *pattern* is empty or not a ``str``.
        :raises BackplaneUnavailable: if the backplane's roster cannot be read in time.
        :raises HubNotRunning: with such a backplane, if the hub was stopped in this
            process; a hub that never ran starts here.
        """
        compiled = compile_pattern(pattern)
        if self._cluster is not None:
            self._ensure_running("presence()")
            assert self._presence is not None
            counts = self._presence.count(compiled)
        else:
            counts = self._call(lambda: self._router.presence(compiled), {})
        return dict(sorted(counts.items()))

    def _call(self, fn: Callable[[], T], default: T) -> T:
        """Run *fn* on the hub thread and return its result (*default* if stopped)."""
        if not self.running:
            return default
        if threading.current_thread() is self._thread:
            return fn()
        call = self._inbox.call(fn, default)
        while not call.done.acquire(True, _POLL):
            if not self._is_running():
                return default
        return call.result  # type: ignore[no-any-return]

    def flush(self) -> None:
        """Return once every command put in the inbox before this call has been
        routed (events queued to clients, registrations done). For tests and
        orderly shutdowns; publishing never needs it."""
        self._call(lambda: None, None)

    # -- queries ----------------------------------------------------------------

    def get_client_count(self) -> int:
        """How many streams are open (connections, not distinct IDs)."""
        return self._router.client_count if self.running else 0

    def get_client_ids(self) -> list[str]:
        """Every connected client ID once, sorted."""
        return self._call(lambda: self._router.index.ids(), [])

    def get_client(self, client_id: str) -> Client | None:
        """A connection with exactly *client_id* (the newest), or ``None``.

        :raises TypeError: if *client_id* is not a ``str``.
        """
        if not isinstance(client_id, str):
            raise TypeError(f"client_id must be a str, not {type(client_id).__name__}")
        return self._call(lambda: self._router.newest(client_id), None)

    def clients(self, pattern: str = "*") -> list[Client]:
        """The connections whose ID matches *pattern*."""
        compiled = compile_pattern(pattern)
        return self._call(lambda: list(self._router.index.match(compiled)), [])

    def stats(self) -> dict[str, int]:
        """This process's metrics: the counters since the hub was created, and the
        gauges, ``clients`` (open streams now) among them. Every name is listed,
        with its meaning, in ``docs/operations.md``."""
        snapshot = self.counters.snapshot()
        snapshot["clients"] = self.get_client_count()
        return snapshot

    def __iter__(self) -> Iterator[Client]:
        return iter(self.clients())

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Hub {state} clients={self.get_client_count()}>"
