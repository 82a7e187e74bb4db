"""A hub's options: :class:`sse_kit.Hub`'s keyword arguments, checked once and
frozen, read by the hub, its router and its streams alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, NoReturn, Protocol, TypeVar, overload

from ._backplane import Backplane
from ._client import DISCONNECT, DROP, SlowClientPolicy
from ._options import check_callable, check_choice, check_int, check_seconds, check_type

__all__ = ["MIB", "HubOptions", "Option"]

MIB: Final = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HubOptions:
    """The options of one hub, read-only once it is built (streams already open
    would not see a change). :class:`sse_kit.Hub` builds it from its keyword
    arguments, which hold the defaults; each is also a read-only attribute of the
    hub (``hub.max_clients``).

    :param client_buffer: events each client may have waiting to be written.
    :param keepalive_interval: seconds of silence after which a stream writes a
        keep-alive comment (which is also how a vanished client is noticed).
    :param max_clients: streams the hub serves at once; more get ``503``.
        ``None``: no limit.
    :param history_size: recent broadcasts kept for ``Last-Event-ID`` resume
        (``0`` turns resume off: every reconnect across a gap gets ``reset``; with a
        backplane such a resume is read from the backplane instead).
    :param history_ttl: seconds a broadcast stays resumable.
    :param slow_client: ``"disconnect"`` (default with history or a backplane) ends a
        stream whose outbox overflows, after writing what is queued; the browser
        reconnects and resumes from history, so nothing is lost. ``"drop"`` (default
        without history) drops the events that do not fit, for that client only.
    :param retry: the ``retry:`` hint, in milliseconds, on every stream's first frame.
    :param shutdown_retry: the ``retry:`` hint written when the hub stops, or a
        stream reaches *max_age*, so browsers come back (to another worker, or
        through your authorization again) quickly.
    :param max_clients_per_id: streams one client ID may hold at once (browser
        tabs); the newest beyond it is refused (``429``). ``None``: no limit.
    :param max_event_size: the largest encoded event, in bytes, that
        :meth:`Hub.broadcast_to_pattern <sse_kit.Hub.broadcast_to_pattern>` and
        :meth:`Client.send <sse_kit.Client.send>` accept.
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
        (``json.dumps``'s ``default``). Used by ``broadcast_to_pattern`` and
        ``Client.send``. ``None``: such a value raises ``TypeError``.
    :param presence_ttl: with a backplane that keeps a roster
        (:class:`sse_kit.redis.RedisBackplane`): seconds after which a worker
        that died without stopping (``SIGKILL``, a lost host) no longer counts
        in ``Hub.presence()`` and ``max_clients_per_id``; each worker renews its
        entry every third of it. A clean stop removes the entry at once.
    :param presence_events: ``presence_events(client_id)`` returns the pattern
        a ``presence`` event goes to when *client_id* joins (its first stream
        opens, anywhere in the cluster) or leaves (its last one ends), or
        ``None`` for no event; data ``{"client_id": ..., "state": "join"}`` (or
        ``"leave"``). ``None``: no presence events. Without a backplane it runs
        on the hub thread: keep it quick.
    :raises TypeError: if an argument is of the wrong type; the message names it.
    :raises ValueError: if an argument is out of range; the message names it.
    """

    client_buffer: int
    keepalive_interval: float
    max_clients: int | None
    history_size: int
    history_ttl: float
    slow_client: SlowClientPolicy
    retry: int
    shutdown_retry: int
    max_clients_per_id: int | None
    max_event_size: int
    client_buffer_bytes: int
    max_age: float | None
    write_timeout: float | None
    backplane: Backplane | None
    fast_path: bool
    json_default: Callable[[Any], Any] | None
    presence_ttl: float
    presence_events: Callable[[str], str | None] | None

    def __post_init__(self) -> None:
        check_int("client_buffer", self.client_buffer, 1)
        check_seconds("keepalive_interval", self.keepalive_interval)
        check_int("max_clients", self.max_clients, 1, optional=True)
        check_int("history_size", self.history_size, 0)
        check_seconds("history_ttl", self.history_ttl)
        check_choice("slow_client", self.slow_client, (DISCONNECT, DROP))
        check_int("retry", self.retry, 0, unit="milliseconds")
        check_int("shutdown_retry", self.shutdown_retry, 0, unit="milliseconds")
        check_int("max_clients_per_id", self.max_clients_per_id, 1, optional=True)
        check_int("max_event_size", self.max_event_size, 1, unit="bytes")
        check_int("client_buffer_bytes", self.client_buffer_bytes, 1, unit="bytes")
        check_seconds("max_age", self.max_age, optional=True)
        check_seconds("write_timeout", self.write_timeout, optional=True)
        check_type("backplane", self.backplane, Backplane, optional=True,
                   what="a sse_kit.Backplane (such as sse_kit.redis.RedisBackplane)")
        check_type("fast_path", self.fast_path, bool)
        check_callable("json_default", self.json_default, optional=True)
        check_seconds("presence_ttl", self.presence_ttl)
        check_callable("presence_events", self.presence_events, optional=True)
        for name in ("keepalive_interval", "history_ttl", "max_age", "write_timeout",
                     "presence_ttl"):
            seconds = getattr(self, name)
            if seconds is not None:  # an int given is kept as a float, as it is read
                object.__setattr__(self, name, float(seconds))

    @staticmethod
    def default_slow_client(history_size: int, backplane: Backplane | None) -> SlowClientPolicy:
        """``"disconnect"`` when a reconnect can resume (a history or a backplane),
        else ``"drop"``, which loses only the events that do not fit."""
        return DISCONNECT if history_size or backplane is not None else DROP


class _HasOptions(Protocol):
    @property
    def options(self) -> HubOptions: ...


class Option(Generic[T]):
    """One of the hub's options as a read-only attribute of the hub (``hub.max_clients``),
    read from :attr:`Hub.options <sse_kit.Hub.options>`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.__doc__ = (f"The hub's ``{name}`` (read-only; see "
                        ":class:`~sse_kit._hub_options.HubOptions`).")

    @overload
    def __get__(self, hub: None, owner: type) -> Option[T]: ...
    @overload
    def __get__(self, hub: _HasOptions, owner: type) -> T: ...
    def __get__(self, hub: _HasOptions | None, owner: type) -> Option[T] | T:
        return self if hub is None else getattr(hub.options, self.name)

    def __set__(self, hub: _HasOptions, value: object) -> NoReturn:
        # Streams already open read the options at registration: a change would
        # apply to some streams and not others.
        raise AttributeError(
            f"Hub.{self.name} is read-only: pass it to Hub({self.name}=...) when you build the hub")
