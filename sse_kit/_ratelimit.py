"""A connection-rate limit: a token bucket per source of stream requests.

A reconnect storm from one source (a script in a loop, a page reloading
itself, a NAT in front of a broken client) is answered ``429`` with a
``Retry-After`` while every other source keeps connecting.
"""

# design:
# One RateLimit is shared by the request threads of one process: gunicorn
# workers each keep their own buckets (the limit is per worker). The table
# of buckets is bounded by max_keys: the source idle longest is forgotten first
# (an OrderedDict in last-use order), which only makes the limit more lenient
# for that source (its bucket starts full again), never stricter for another.

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from ._options import check_callable, check_int, check_number, value_error

__all__ = ["RateLimit", "remote_addr"]

# The header a proxy adds; its presence with the default key is a shared-bucket trap.
FORWARDED_HEADERS: Final = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED")
# Set by werkzeug's ProxyFix once it has rewritten REMOTE_ADDR from X-Forwarded-For.
_PROXY_FIX_KEY: Final = "werkzeug.proxy_fix.orig"

Key = Callable[[Mapping[str, Any]], "str | None"]


def remote_addr(environ: Mapping[str, Any]) -> str | None:
    """The default key: the peer's address, ``REMOTE_ADDR``."""
    value = environ.get("REMOTE_ADDR")
    return str(value) if value else None


class RateLimit:
    """How often one source may open a stream: a token bucket per source.

    Each source starts with *burst* tokens; a stream request takes one, and
    tokens come back at *rate* per second up to *burst*. A request that finds
    no token is answered ``429 Too Many Requests`` with ``Retry-After`` (the
    whole seconds until a token is back), before authorization runs. Pass it
    to :func:`sse_kit.serve_sse` or :func:`sse_kit.flask.create_blueprint`
    (``rate_limit=``). The buckets live in this process: under gunicorn each
    worker keeps its own.

    :param rate: tokens per second each source gets back (its sustained rate
        of stream requests).
    :param burst: the most tokens a source holds: how many streams it may open
        at once (a NAT with many users needs more).
    :param key: ``(environ) -> str | None``: the source of a request.
        The default, :func:`~sse_kit._ratelimit.remote_addr`, is the peer's address; behind a
        proxy every request comes from the proxy, so use werkzeug's
        ``ProxyFix`` or a key that reads the address the proxy adds (see
        ``docs/security.md``). ``None`` exempts the request.
    :param max_keys: the most sources remembered; beyond it the source idle
        longest is forgotten (its bucket starts full again).
    :param clock: seconds, monotonic (for tests).
    :raises TypeError: if an argument is of the wrong type; the message names it.
    :raises ValueError: if *rate*, *burst* or *max_keys* is out of range.
    """

    def __init__(
        self,
        rate: float = 1.0,
        *,
        burst: int = 10,
        key: Key | None = None,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_number("rate", rate, 0)
        if not rate > 0:
            raise value_error("rate", "a finite number > 0", rate)
        check_int("burst", burst, 1)
        check_int("max_keys", max_keys, 1)
        check_callable("key", key, optional=True, what="a callable (environ) -> str | None")
        check_callable("clock", clock)
        self.rate = float(rate)
        self.burst = burst
        self.key: Key = remote_addr if key is None else key
        self.max_keys = max_keys
        self._clock = clock
        # _lock guards _buckets (source -> [tokens, time of the last update]),
        # held for one bucket's arithmetic; never while calling the key function.
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def take(self, environ: Mapping[str, Any]) -> float | None:
        """Take a token for the request *environ*: ``None`` when it may go on,
        else the seconds until its source has a token again."""
        source = self.key(environ)
        if source is None:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(source)
            if bucket is None:
                bucket = self._buckets[source] = [float(self.burst), now]
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(source)
                bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return None
            return (1.0 - bucket[0]) / self.rate

    def sources(self) -> int:
        """How many sources are remembered now (at most *max_keys*)."""
        with self._lock:
            return len(self._buckets)

    def shared_by_a_proxy(self, environ: Mapping[str, Any]) -> bool:
        """Whether *environ* came through a proxy that this limit cannot see
        through: the default key, a forwarding header, and no ``ProxyFix``
        (every client behind that proxy then shares one bucket)."""
        return (self.key is remote_addr and _PROXY_FIX_KEY not in environ
                and any(name in environ for name in FORWARDED_HEADERS))

    def __repr__(self) -> str:
        return f"<RateLimit rate={self.rate:g}/s burst={self.burst} sources={self.sources()}>"
