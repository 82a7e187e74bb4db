"""The Hub: routes broadcasts to clients by glob pattern."""

# design:
# One thread owns the routing state: the hub thread (Hub.start(), or whoever calls
# Hub.run()) is the only reader and writer of the Router (_router.py): the client
# index, the histories, the resumes in flight. Every other thread hands it work
# through one Inbox of typed commands (_commands.py), run in arrival order; that
# orders events per publisher and makes a resume gap-free. The hub thread never
# blocks on a client: delivering is an append to a bounded outbox, or one
# non-blocking send() for a detached stream (_outlet.py); a stream's deadlines are
# kept by its own thread (or the outlet). The options are one frozen HubOptions
# (_hub_options.py) that the hub, the router and the streams read.
#
# The Hub is the public face: the options, the counters, and the calls. The hub
# thread's run in this process (start, fork, stop) is one HubThread's
# (_hub_thread.py): stop() puts STOP in the inbox (lock-free, so a signal handler
# may call it); the hub thread ends every stream, answers registrations still in
# the inbox with HubNotRunning, and returns. docs/design.md has more.

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from ._advice import Advisor
from ._backplane import Backplane
from ._client import CLOSED, Client, SlowClientPolicy
from ._hub_options import MIB, HubOptions, Option
from ._hub_thread import HubThread
from ._options import check_callable, check_type
from ._outlet import Outlet
from ._patterns import compile_pattern, validate_pattern
from ._receipt import Receipt
from ._router import _Registration
from ._stats import Counters
from ._wire import data_to_text, encode_fields

__all__ = ["Hub"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Hub:
    """Routes events to connected clients by glob patterns over client IDs.

    Each keyword argument is described in :class:`~sse_kit._hub_options.HubOptions`
    and kept as a read-only attribute of the same name (``hub.max_clients``);
    setting one raises ``AttributeError``, since streams already open would not see
    the change. :attr:`options` holds them all.

    :raises TypeError: if an argument is of the wrong type; the message names it.
    :raises ValueError: if an argument is out of range; the message names it.
    """

    client_buffer = Option[int]()
    keepalive_interval = Option[float]()
    max_clients = Option[int | None]()
    history_size = Option[int]()
    history_ttl = Option[float]()
    slow_client = Option[SlowClientPolicy]()
    retry = Option[int]()
    shutdown_retry = Option[int]()
    max_clients_per_id = Option[int | None]()
    max_event_size = Option[int]()
    client_buffer_bytes = Option[int]()
    max_age = Option[float | None]()
    write_timeout = Option[float | None]()
    backplane = Option[Backplane | None]()
    fast_path = Option[bool]()
    json_default = Option[Callable[[Any], Any] | None]()
    presence_ttl = Option[float]()
    presence_events = Option[Callable[[str], str | None] | None]()

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
        if slow_client is None:
            slow_client = HubOptions.default_slow_client(history_size, backplane)
        self._options = HubOptions(
            client_buffer=client_buffer, keepalive_interval=keepalive_interval,
            max_clients=max_clients, history_size=history_size, history_ttl=history_ttl,
            slow_client=slow_client, retry=retry, shutdown_retry=shutdown_retry,
            max_clients_per_id=max_clients_per_id, max_event_size=max_event_size,
            client_buffer_bytes=client_buffer_bytes, max_age=max_age,
            write_timeout=write_timeout, backplane=backplane, fast_path=fast_path,
            json_default=json_default, presence_ttl=presence_ttl,
            presence_events=presence_events)
        self.counters = Counters()
        self._advisor = Advisor(self.counters)  # once per process: never reset
        self._core = HubThread(self)

    @property
    def options(self) -> HubOptions:
        """Every option this hub was built with, as one frozen object."""
        return self._options

    def _outlet(self) -> Outlet | None:
        """The outlet detached streams are handed to (``None`` when not running)."""
        return self._core.outlet()

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
        self._core.start()
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
        check_callable("callback", callback)
        self._core.on_start(callback)
        return callback

    def advise_once(self, key: str, level: int, message: str, *args: Any) -> bool:
        """Log *message* (``%``-style *args*) at *level* on the ``sse_kit`` logger,
        unless this hub already said *key* in this process; a WARNING is counted
        in ``stats()["misconfigured"]``. For adapters (sse_kit's own, or yours)
        that spot a setup costing streams or events: say it once, with the fix.

        :returns: whether it was logged now.
        """
        return self._advisor.once(key, level, message, *args)

    def run(self) -> None:
        """Route events in the calling thread until :meth:`stop` is called.

        :raises HubAlreadyRunning: if the hub already runs in this process.
        """
        self._core.run()

    def stop(self, timeout: float | None = 5.0) -> None:
        """End every stream and stop the hub thread; idempotent.

        Safe to call from a signal handler with ``timeout=0``.

        :param timeout: seconds to wait for the hub thread to finish; ``0`` does
            not wait, ``None`` waits without limit.
        """
        self._core.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the hub thread is running in this process."""
        return self._core.running

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
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
        return self._core.publish(pattern, body)

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
        check_type("client", client, Client)
        return self._core.register(client, thread_limit)

    def unregister(self, client: Client) -> None:
        """Remove *client* and end its stream; idempotent, never blocks.

        :raises TypeError: if *client* is not a :class:`Client`.
        """
        check_type("client", client, Client)
        client._finish(CLOSED)
        if self.running:
            self._core.inbox.unregister(client)

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
        :raises InvalidPattern: if *pattern* is empty.
        :raises TypeError: if *pattern* is not a ``str``.
        :raises BackplaneUnavailable: with a backplane, if the control entry
            could not be appended: no stream was ended, on any worker.
        """
        n = self._core.disconnect(pattern, compile_pattern(pattern))
        log.info("sse_kit: disconnect(%r) ended %d stream(s)", pattern, n)
        return n

    def presence(self, pattern: str = "*") -> dict[str, int]:
        """The client IDs matching *pattern* that have streams open, with how
        many each, sorted by ID: across the cluster with a backplane that keeps
        a roster (:class:`sse_kit.redis.RedisBackplane`; a worker that died
        without stopping counts until ``presence_ttl`` has passed), else on this hub.

        :raises InvalidPattern: if *pattern* is empty.
        :raises TypeError: if *pattern* is not a ``str``.
        :raises BackplaneUnavailable: if the backplane's roster cannot be read in time.
        :raises HubNotRunning: with such a backplane, if the hub was stopped in this
            process; a hub that never ran starts here.
        """
        return dict(sorted(self._core.presence(compile_pattern(pattern)).items()))

    def _call(self, fn: Callable[[], T], default: T) -> T:
        """Run *fn* on the hub thread and return its result (*default* if stopped)."""
        return self._core.call(fn, default)

    def flush(self) -> None:
        """Return once every command put in the inbox before this call has been
        routed (events queued to clients, registrations done). For tests and
        orderly shutdowns; publishing never needs it."""
        self._call(lambda: None, None)

    # -- queries ----------------------------------------------------------------

    def get_client_count(self) -> int:
        """How many streams are open (connections, not distinct IDs)."""
        return self._core.router.client_count if self.running else 0

    def get_client_ids(self) -> list[str]:
        """Every connected client ID once, sorted."""
        return self._call(lambda: self._core.router.index.ids(), [])

    def get_client(self, client_id: str) -> Client | None:
        """A connection with exactly *client_id* (the newest), or ``None``.

        :raises TypeError: if *client_id* is not a ``str``.
        """
        check_type("client_id", client_id, str)
        return self._call(lambda: self._core.router.newest(client_id), None)

    def clients(self, pattern: str = "*") -> list[Client]:
        """The connections whose ID matches *pattern*."""
        compiled = compile_pattern(pattern)
        return self._call(lambda: list(self._core.router.index.match(compiled)), [])

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
