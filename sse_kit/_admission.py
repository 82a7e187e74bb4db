"""What admits a stream request before the hub does: the connection-rate
limit, a stream ticket, the identity's expiry.

Steps of the request pipeline (:mod:`sse_kit._wsgi`), each returning the
refusal (built by :func:`sse_kit._refusal.refuse`) or what the next step needs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Response

from ._backplane import ClaimingBackplane
from ._cors import CORSPolicy
from ._exceptions import BackplaneUnavailable, InvalidTicket
from ._hub import Hub
from ._ratelimit import RateLimit
from ._refusal import refuse
from ._tickets import TICKET_PARAM, Identity, StreamTickets

__all__ = ["check_expiry", "earliest", "limit_rate", "query_param", "redeem_ticket"]


def limit_rate(
    hub: Hub, environ: Mapping[str, Any], rate_limit: RateLimit | None,
    cors: CORSPolicy | None = None,
) -> Response | None:
    """``429`` with ``Retry-After`` when the request's source has opened
    streams faster than *rate_limit* allows; ``None`` to go on."""
    if rate_limit is None:
        return None
    if rate_limit.shared_by_a_proxy(environ):
        hub.advise_once(
            "rate_limit:proxy", logging.WARNING,
            "sse_kit: stream requests come through a proxy (a forwarding header) but the "
            "RateLimit keys on REMOTE_ADDR, the proxy's address: every client behind it "
            "shares one bucket. Fix: werkzeug's ProxyFix, or RateLimit(key=...) reading "
            "the address your proxy adds (docs/security.md)")
    wait = rate_limit.take(environ)
    if wait is None:
        return None
    return refuse(hub, environ, 429, "too many stream requests from this source; retry later",
                  counter="rate_limited", cors=cors,
                  **{"Retry-After": str(max(1, math.ceil(wait)))})


def redeem_ticket(
    hub: Hub, environ: Mapping[str, Any], tickets: StreamTickets,
    cors: CORSPolicy | None = None,
) -> Identity | Response:
    """The identity the request's ``?ticket=`` was minted for (the ticket is
    spent now, on every worker when the hub has a backplane), or the refusal:
    ``401`` with the reason, ``503`` when its use cannot be checked."""
    store = hub.backplane if isinstance(hub.backplane, ClaimingBackplane) else None
    if store is None and (hub.backplane is not None or environ.get("wsgi.multiprocess")):
        hub.advise_once(
            "tickets:per_worker", logging.WARNING,
            "sse_kit: stream tickets are spent in this worker only (%s), so a ticket could "
            "open one stream on each worker. Fix: Hub(backplane=sse_kit.redis."
            "RedisBackplane(url)) (docs/security.md), or -w 1",
            "the hub has no backplane" if hub.backplane is None
            else f"{type(hub.backplane).__name__} has no claim_once")
    try:
        return tickets.redeem(query_param(environ, TICKET_PARAM), backplane=store)
    except InvalidTicket as exc:
        headers = {}
        if exc.status == 503:  # this process's table of spent tickets is full
            headers["Retry-After"] = "1"
            hub.advise_once(
                "tickets:max_spent", logging.WARNING,
                "sse_kit: refused a stream ticket: this process already keeps "
                "StreamTickets(max_spent=%d) spent tickets that have not expired. Fix: raise "
                "max_spent, shorten ttl, or give the hub a backplane (the spent tickets are "
                "then kept in Redis)", tickets.max_spent)
        return refuse(hub, environ, exc.status, str(exc), counter="tickets_refused", cors=cors,
                      **headers)
    except BackplaneUnavailable:
        hub.counters.add("backplane_errors")
        retry_after = str(max(1, round(hub.retry / 1000)))
        return refuse(hub, environ, 503, "the stream ticket cannot be checked now; retry later",
                      counter="tickets_refused", cors=cors, **{"Retry-After": retry_after})


def check_expiry(
    hub: Hub, environ: Mapping[str, Any], expires_at: float | None,
    cors: CORSPolicy | None = None,
) -> Response | None:
    """``401`` when the request's identity has expired already (*expires_at*,
    seconds since the epoch); ``None`` to go on."""
    if expires_at is None or expires_at > time.time():
        return None
    return refuse(hub, environ, 401, "the identity of this request has expired",
                  counter="forbidden", cors=cors)


def earliest(*times: float | None) -> float | None:
    """The earliest of *times* that is not ``None``, or ``None``."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def query_param(environ: Mapping[str, Any], name: str) -> str | None:
    """Query parameter *name* of the request (its first value), or ``None``."""
    query = environ.get("QUERY_STRING", "")
    if name not in query:
        return None
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values[0] if values else None
