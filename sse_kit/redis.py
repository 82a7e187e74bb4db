"""A Redis Streams backplane: every worker and every host delivers every event.

Install with ``pip install sse_kit[redis]``; needs Redis 6.2 or newer.

* A broadcast is one ``XADD <stream> NOMKSTREAM MAXLEN ~ <maxlen> * p <pattern> b <body>``;
  the body is the event encoded once, by the publisher, without its ``id:`` line.
  The entry ID becomes the event's SSE ``id:``, the same on every worker and host.
* Each hub with this backplane runs one reader thread (``sse_kit-redis``) that
  ``XREAD BLOCK``s the stream in batches of ``count`` and hands what it reads to
  its hub, so each worker routes the stream to its own clients.
* A resume the hub's history cannot serve is an ``XRANGE`` after the browser's
  ``Last-Event-ID``, bounded by ``maxlen`` (approximate trimming).
* ``hub.disconnect(pattern)`` appends a *control* entry (``x disconnect t
  <pattern>``) to the same stream, so every hub ends the matching streams at
  the same place among the events.
* Each hub process keeps its streams' count per client ID in a *roster* (keys
  ``<stream>:roster*``, see ``docs/redis.md``), renewed by
  heartbeats, for ``max_clients_per_id`` across the cluster and ``hub.presence()``.
* Every stream starts with a *genesis* entry (no pattern, never delivered), so a
  stream that was lost (Redis restarted empty) and made anew is told apart from
  one that was only trimmed: streams that may have missed events get ``reset``.

Faults: when Redis cannot be reached, streams stay open (keep-alives go on), the
reader reconnects with capped exponential backoff and jitter and resumes after the
last entry it saw, and a broadcast raises :class:`sse_kit.BackplaneUnavailable`
within about ``2 * timeout`` seconds instead of hanging.

Connections are made lazily in the process that uses them, so a backplane built
before gunicorn forks its workers is safe to share.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "sse_kit.redis needs the redis package: pip install 'sse_kit[redis]'"
    ) from exc

from ._backplane import Feed, Replay
from ._cluster import Roster
from ._exceptions import BackplaneUnavailable
from ._history import RESET_LOST, RESET_UNAVAILABLE, RESET_UNKNOWN, StreamKey
from ._history import parse_stream_id as _parse_id
from ._options import check_callable, check_int, check_number, check_str, value_error
from ._patterns import validate_pattern
from ._redis_replies import (
    ACTION,
    BODY,
    GENESIS,
    PATTERN,
    TARGET,
    ZERO,
    Info,
    as_str,
    check,
    entries,
    format_id,
    info_of,
    items,
    key_of,
    xrange_rows,
    xread_rows,
)
from ._redis_roster import RedisRoster, drop_idle_connections
from ._wire import data_to_text, encode_fields

__all__ = ["RedisBackplane"]

log = logging.getLogger(__name__)

# The reader's first retry waits this long; each failure doubles it up to reconnect_max.
_BACKOFF_BASE: Final = 0.05

# Returns a redis.Redis, or anything with its stream commands (redis.cluster.RedisCluster).
Connect = Callable[..., Any]


class RedisBackplane:
    """Carry broadcasts through a Redis stream so that every hub following it
    delivers them (``Hub(backplane=RedisBackplane(url))``); also a
    :class:`sse_kit.Broadcaster` on its own, to publish from a process with no hub.

    :param url: ``redis://``, ``rediss://`` or ``unix://`` URL; or a callable
        ``connect(**options) -> redis.Redis`` (for Sentinel: ``lambda **kw:
        sentinel.master_for("mymaster", **kw)``), called with the socket options
        below in each process that uses the backplane.
    :param stream: the stream's key: one per application (hub namespace). With
        Redis Cluster, hash-tag it (``"{myapp}:sse"``).
    :param maxlen: about how many events the stream keeps for resumes (``XADD
        MAXLEN ~``); the reader must never fall this far behind.
    :param timeout: seconds a command (and connecting) may take before a broadcast
        raises :class:`sse_kit.BackplaneUnavailable`.
    :param block: seconds one ``XREAD BLOCK`` waits; the reader notices it should
        stop within this.
    :param count: most entries the reader takes per read (a burst comes in batches).
    :param reconnect_max: the longest wait, in seconds, between two reconnect attempts.
    :raises TypeError: if an argument is of the wrong type; the message names it.
    :raises ValueError: if an argument is out of range; the message names it.
    """

    def __init__(
        self,
        url: str | Connect,
        *,
        stream: str = "sse_kit",
        maxlen: int = 10_000,
        timeout: float = 1.0,
        block: float = 1.0,
        count: int = 500,
        reconnect_max: float = 5.0,
    ) -> None:
        if isinstance(url, str):
            if url.partition("://")[0] not in ("redis", "rediss", "unix"):
                raise value_error("url", "a redis://, rediss:// or unix:// URL", url)
        else:
            check_callable("url", url, what="a Redis URL or a connect callable")
        check_str("stream", stream)
        check_int("maxlen", maxlen, 1)
        check_number("timeout", timeout, 0.001, unit="seconds")
        check_number("block", block, 0.001, unit="seconds")
        check_int("count", count, 1)
        check_number("reconnect_max", reconnect_max, 0.001, unit="seconds")
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = float(timeout)
        self.block = float(block)
        self.count = count
        self.reconnect_max = float(reconnect_max)
        # _lock guards _client and _pid (the publishing client of this process);
        # held only to create or drop it, never during a command.
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._pid = 0

    def __repr__(self) -> str:
        where = self.url if isinstance(self.url, str) else getattr(self.url, "__name__", "connect")
        return f"<RedisBackplane {where} stream={self.stream!r}>"

    # -- connections -------------------------------------------------------------

    def _connect(self, socket_timeout: float, name: str) -> redis.Redis:
        options: dict[str, Any] = {
            "client_name": name,  # shows in CLIENT LIST: sse_kit:publish, sse_kit:reader
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": self.timeout,
            # One immediate retry replaces a pooled connection the server closed; never
            # after a timeout, when the command may have run (a retried XADD would
            # publish the event twice).
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        }
        if isinstance(self.url, str):
            return redis.Redis.from_url(self.url, **options)
        client: redis.Redis = self.url(**options)  # or a RedisCluster: same commands
        return client

    def _publisher(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # A forked child makes its own: it never shares its parent's sockets.
                self._client = self._connect(self.timeout, "sse_kit:publish")
                self._pid = os.getpid()
            return self._client

    def _lost(self, exc: Exception) -> None:
        """After a failed command: drop this process's publishing client and its
        idle connections (:func:`~sse_kit._redis_roster.drop_idle_connections`:
        one may hold the failed command's reply, which a later publish would take
        for its own, reporting another event's ID), unless Redis answered (a
        ``ResponseError``)."""
        if isinstance(exc, redis.ResponseError):
            return
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            # The client and its pool go with the garbage once no thread uses them.
            drop_idle_connections(client)

    def close(self) -> None:
        """Release this process's publishing connections. Readers end with their hubs."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()

    def __enter__(self) -> RedisBackplane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _unavailable(self, exc: Exception) -> BackplaneUnavailable:
        return BackplaneUnavailable(f"Redis stream {self.stream!r} unreachable: {exc}")

    def stream_exists(self) -> bool:
        """Whether the stream key exists in Redis (something was published to it
        and is still kept). A publisher that finds no key publishes the first
        event ever, or under another name than the hubs follow.

        :raises BackplaneUnavailable: if Redis cannot be reached in time.
        """
        try:
            return bool(self._publisher().exists(self.stream))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._lost(exc)
            raise self._unavailable(exc) from exc

    # -- publishing --------------------------------------------------------------

    def publish(self, pattern: str, body: bytes) -> str:
        """Append one encoded event (without ``id:``) for *pattern*; return its ID.

        :raises BackplaneUnavailable: if Redis cannot be reached in time.
        """
        return self._append([{PATTERN: pattern.encode(), BODY: body}])[0]

    def control(self, action: str, pattern: str) -> str:
        """Append a control entry (``hub.disconnect()`` with this backplane) that
        every hub applies where it stands among the events; return its ID.

        :raises BackplaneUnavailable: if Redis cannot be reached in time.
        """
        return self._append([{ACTION: action.encode(), TARGET: pattern.encode()}])[0]

    def roster(self, member: str, ttl: float) -> Roster:
        """The roster entry of hub process *member*, lapsing *ttl* seconds after
        its last heartbeat (the hub's presence thread uses it)."""
        return RedisRoster(self, member, ttl)

    def broadcast_to_pattern(self, pattern: str, data: Any, *, event: str | None = None) -> None:
        """Send *data* to every client, on every hub following this stream, whose
        ID matches the glob *pattern*. Needs no hub in this process.

        :raises InvalidPattern: if *pattern* is empty or not a ``str``.
        :raises ValueError: if *event* contains CR, LF or NUL.
        :raises TypeError: if *data* is not str, bytes, dict or list.
        :raises BackplaneUnavailable: if Redis cannot be reached in time; the
            event was not published (unless Redis took it and only its answer
            timed out).
        """
        validate_pattern(pattern)
        self.publish(pattern, encode_fields(data_to_text(data), event=event))

    def broadcast_many(self, events: Iterable[Sequence[Any]]) -> list[str]:
        """Publish several events in one round trip (a pipeline), in order.

        :param events: ``(pattern, data)`` or ``(pattern, data, event)`` tuples;
            all are validated and encoded before anything is sent.
        :returns: the events' IDs.
        :raises BackplaneUnavailable: if Redis cannot be reached in time; a
            prefix of the events may have been published.
        """
        batch = []
        for item in events:
            pattern, data, *rest = item
            validate_pattern(pattern)
            event = rest[0] if rest else None
            batch.append({PATTERN: pattern.encode(),
                          BODY: encode_fields(data_to_text(data), event=event)})
        return self._append(batch) if batch else []

    def _append(self, batch: list[dict[bytes, bytes]]) -> list[str]:
        try:
            client = self._publisher()
            ids = self._xadd(client, batch)
            if None in ids:  # no stream yet (or it was lost): begin one, then retry those
                client.xadd(self.stream, {GENESIS: b"1"}, maxlen=self.maxlen, approximate=True)
                missing = [i for i, event_id in enumerate(ids) if event_id is None]
                retried = self._xadd(client, [batch[i] for i in missing])
                for i, event_id in zip(missing, retried, strict=True):
                    ids[i] = event_id
            if None in ids:
                raise redis.ResponseError(f"stream {self.stream!r} vanished while publishing")
        except (redis.RedisError, OSError, ValueError) as exc:
            # OSError/ValueError: the connection was closed under this command
            # (the event may or may not be in).
            self._lost(exc)
            raise self._unavailable(exc) from exc
        return [as_str(event_id) for event_id in ids]

    def _xadd(self, client: redis.Redis, batch: list[dict[bytes, bytes]]) -> list[Any]:
        if len(batch) == 1:
            return [self._xadd_one(client, batch[0])]
        pipe = client.pipeline(transaction=False)
        for fields in batch:
            self._xadd_one(pipe, fields)
        return list(pipe.execute())

    def _xadd_one(self, client: Any, fields: dict[bytes, bytes]) -> Any:
        return client.xadd(self.stream, fields,
                           maxlen=self.maxlen, approximate=True, nomkstream=True)

    def claim_once(self, name: str, ttl: float) -> bool:
        """Claim *name* for *ttl* seconds: ``SET <stream>:once:<name> 1 NX PX``.

        :returns: ``True`` for the first claim, ``False`` while that one stands.
        :raises BackplaneUnavailable: if Redis cannot be reached in time.
        """
        key = f"{self.stream}:once:{name}"  # beside the stream: one hash slot with a hash tag
        try:
            return bool(self._publisher().set(key, b"1", nx=True, px=max(1, round(ttl * 1000))))
        except (redis.RedisError, OSError, ValueError) as exc:
            self._lost(exc)
            raise self._unavailable(exc) from exc

    # -- reading ---------------------------------------------------------------

    def replay(self, after: str) -> Replay:
        """The events after ID *after*, read in one transaction with the stream's
        state; ``reset`` says why they are not all there. Never raises."""
        key = _parse_id(after)
        if key is None:
            return Replay(reset=RESET_UNKNOWN)
        try:
            # The client stays referenced while its pipeline runs: dropped (after
            # another thread's failure), redis-py's Redis.__del__ would close every
            # connection of its pool, this pipeline's included.
            client = self._publisher()
            pipe = client.pipeline(transaction=True)
            pipe.xinfo_stream(self.stream)
            pipe.xrange(self.stream, min="(" + format_id(key), max="+")
            info_reply, range_reply = pipe.execute(raise_on_error=False)
            if isinstance(range_reply, Exception):
                raise range_reply
            reason = check(info_of(info_reply), key)
            if reason:
                return Replay(reset=reason)
            return Replay(entries=entries(xrange_rows(range_reply)))
        except (redis.RedisError, OSError) as exc:
            self._lost(exc)
            log.warning("sse_kit.redis: cannot read the stream for a resume: %s", exc)
        except Exception:  # a reply we cannot read: the stream gets a reset, not a 500
            log.exception("sse_kit.redis: cannot read the stream for a resume")
        return Replay(reset=RESET_UNAVAILABLE)

    def start_reader(self, feed: Feed) -> _Reader:
        """Start a reader thread feeding every entry from now on to *feed*."""
        reader = _Reader(self, feed)
        reader.start()
        return reader


class _Reader:
    """One hub's reader: XREAD in batches, reconnect, detect lost streams.

    :meth:`start` learns where the stream stands before it returns (so nothing
    published after the hub started is missed), then reads in a thread. Owns
    its connection, made in the process that reads.
    """

    def __init__(self, backplane: RedisBackplane, feed: Feed) -> None:
        self._bp = backplane
        self._feed = feed
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse_kit-redis", daemon=True)
        # The reader's state: touched by start() before the thread runs, then by it only.
        self._client: redis.Redis | None = None
        self._last: StreamKey | None = None  # the last entry read; None until first contact
        self._check = True  # read along with the stream's state (after errors, full batches)
        self._failures = 0  # consecutive failed attempts

    def start(self) -> None:
        """Contact Redis once (a few ``timeout`` at most), then read in a thread."""
        self._attempt()
        self._thread.start()

    def stop(self) -> None:
        """Stop after the read in progress (at most ``block`` seconds); never blocks."""
        self._stopping.set()

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        stopping = self._stopping
        while not stopping.is_set():
            if self._failures:
                delay = min(self._bp.reconnect_max, _BACKOFF_BASE * 2 ** min(self._failures, 20))
                if stopping.wait(delay * random.uniform(0.5, 1.0)):  # jitter: workers differ
                    break
            self._attempt()
        if self._client is not None:
            self._client.close()

    def _attempt(self) -> None:
        try:
            self._step()
        except redis.RedisError as exc:
            self._failed(exc)
        except Exception:  # a bug: keep the hub and its streams up, retry later
            log.exception("sse_kit.redis: reader failed; retrying")
            self._failed(None)

    def _failed(self, exc: Exception | None) -> None:
        self._failures += 1
        self._feed.counters.add("backplane_errors")
        if self._stopping.is_set():
            pass  # the hub stopped: whatever the read in progress hit does not matter
        elif exc is not None and self._failures == 1:
            log.warning("sse_kit.redis: lost the stream %r (%s); reconnecting",
                        self._bp.stream, exc)
        elif exc is not None:
            log.debug("sse_kit.redis: attempt %d failed: %s", self._failures, exc)
        if self._client is not None:
            self._client.close()
            self._client = None
        self._check = True

    def _read_checked(self, client: Any, last: StreamKey | None) -> tuple[Info, object]:
        """The stream's state and the next batch after *last*, atomically (MULTI)."""
        bp = self._bp
        pipe = client.pipeline(transaction=True)
        pipe.xinfo_stream(bp.stream)
        if last is not None:
            pipe.xread({bp.stream: format_id(last)}, count=bp.count)
        info_reply, *rest = pipe.execute(raise_on_error=False)
        for result in rest:
            if isinstance(result, Exception):
                raise result
        return info_of(info_reply), (rest[0] if rest else None)

    def _step(self) -> None:
        """Read once: the stream's state when needed, and the next batch."""
        bp, feed, last = self._bp, self._feed, self._last
        if self._client is None:
            self._client = bp._connect(bp.block + bp.timeout, "sse_kit:reader")
        client = self._client
        reply: object = None
        info: Info = None
        checked = last is None or self._check
        if checked:
            info, reply = self._read_checked(client, last)
        else:
            assert last is not None
            reply = client.xread({bp.stream: format_id(last)}, count=bp.count,
                                 block=int(bp.block * 1000))
        if self._failures:
            log.warning("sse_kit.redis: reconnected to the stream %r after %d failed attempt(s);"
                        " resuming after %s", bp.stream, self._failures,
                        format_id(last) if last is not None else "its end")
            feed.counters.add("backplane_reconnects")
            self._failures = 0
        if checked:
            self._check = False
            reason = None if last is None else check(info, last)
            if last is None or reason is not None:
                self._last = info[0] if info is not None else ZERO
                if reason == RESET_UNKNOWN:
                    reason = RESET_LOST  # the stream was made anew, with older IDs
                if reason is not None:  # logged here: the hub thread does no logging I/O
                    log.warning("sse_kit.redis: the stream %r was %s after %s; every open"
                                " stream gets a reset, continuing after %s", bp.stream,
                                reason, format_id(last) if last else "?", format_id(self._last))
                feed.rebase(format_id(self._last), reason)
                return
        rows = xread_rows(reply)
        if rows:
            read = items(rows)
            if read:
                feed.deliver(read)
            self._last = key_of(rows[-1][0])
            self._check = len(rows) >= bp.count  # behind: make sure nothing was trimmed
