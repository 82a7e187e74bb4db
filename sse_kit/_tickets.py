"""Stream tickets: a stream URL that authenticates without a bearer token.

The application's authenticated API mints a ticket (:meth:`StreamTickets.mint`)
bound to a client ID; the page opens ``/events/?ticket=...`` with it. A ticket
is signed with the application's secret (``itsdangerous``), lives a few
seconds (``ttl``) and opens one stream only: a second use, on any worker when
the hub has a backplane, is refused. It may also carry the expiry of the
identity behind it (a session's, a token's): the stream it opens ends then, and
the browser comes back through the application for a fresh ticket.
"""

# design:
# Single use is a claim on the ticket's nonce, remembered until the ticket has
# expired anyway: through the backplane (ClaimingBackplane.claim_once, Redis SET NX) so
# that every worker and host sees it, else in this process (_Spent). _Spent's
# lock guards its table, held to test-and-add one nonce (and drop expired
# ones), never while anything blocks.

from __future__ import annotations

import collections
import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from itsdangerous import BadData, URLSafeSerializer

from ._exceptions import InvalidTicket
from ._options import (
    check_callable,
    check_int,
    check_seconds,
    check_str,
    type_error,
    value_error,
)

if TYPE_CHECKING:
    from ._backplane import ClaimingBackplane

__all__ = ["Identity", "StreamTickets", "epoch_of"]

# The query parameter a stream URL carries its ticket in.
TICKET_PARAM: Final = "ticket"
# Seconds a spent nonce is remembered beyond the ticket's own expiry (clock steps).
_MARGIN: Final = 5.0

# Refusal reasons: one line each, never the ticket itself.
NO_TICKET: Final = "a stream ticket is required"
BAD_TICKET: Final = "the stream ticket is malformed or not signed by this application"
EXPIRED_TICKET: Final = "the stream ticket has expired"
SPENT_TICKET: Final = "the stream ticket was already used"
EXPIRED_IDENTITY: Final = "the identity behind the stream ticket has expired"
TOO_MANY: Final = "too many stream tickets in use; try again"


def epoch_of(name: str, value: object) -> float | None:
    """*value* (a timezone-aware :class:`~datetime.datetime`, or seconds since
    the epoch) as seconds since the epoch; ``None`` stays ``None``.

    :raises TypeError: for another type.
    :raises ValueError: for a naive datetime or a number that is not finite."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise value_error(name, "a timezone-aware datetime", value)
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(name, "a datetime or seconds since the epoch", value)
    if not math.isfinite(value):
        raise value_error(name, "finite", value)
    return float(value)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a redeemed ticket says the stream is for.

    :ivar client_id: the client ID the ticket was minted for.
    :ivar expires_at: when that identity expires (seconds since the epoch), or
        ``None``: the stream it opens ends then.
    """

    client_id: str
    expires_at: float | None = None


class StreamTickets:
    """Mints and redeems short-lived, single-use stream tickets.

    :param secret: the application's secret key (Flask's ``app.secret_key``);
        every worker and host that redeems must have the same one.
    :param ttl: seconds a ticket may wait before it is used.
    :param salt: separates these signatures from the application's others.
    :param max_spent: the most tickets this process remembers as used when no
        backplane is given to :meth:`redeem` (each for about *ttl* seconds);
        beyond it redemptions are refused (``503``), never let through twice.
    :param clock: seconds since the epoch (for tests).
    :raises TypeError: if an argument is of the wrong type; the message names it.
    :raises ValueError: if *secret* is empty, or *ttl* or *max_spent* is out of range.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        ttl: float = 30.0,
        salt: str = "sse_kit.stream-ticket",
        max_spent: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(secret, (str, bytes)):
            raise type_error("secret", "a str or bytes", secret)
        if not secret:
            raise value_error("secret", "the application's secret key, not empty", secret)
        check_seconds("ttl", ttl)
        check_int("max_spent", max_spent, 1)
        check_callable("clock", clock)
        self.ttl = float(ttl)
        self.max_spent = max_spent
        self._clock = clock
        self._serializer = URLSafeSerializer(
            secret, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})
        self._spent = _Spent(max_spent)

    def __repr__(self) -> str:
        return f"<StreamTickets ttl={self.ttl:g}s>"

    def mint(self, client_id: str, *, expires_at: datetime | float | None = None) -> str:
        """A ticket that opens one stream for *client_id* within ``ttl`` seconds.

        :param client_id: the client ID the stream will have, from your session.
        :param expires_at: when the identity behind it expires (a session's or a
            token's expiry, as an aware datetime or seconds since the epoch):
            the stream ends then and the browser asks you for a new ticket.
        :returns: a URL-safe string; put it in the stream URL as ``?ticket=``.
        :raises TypeError: if *client_id* is not a ``str``, or *expires_at* has
            the wrong type.
        :raises ValueError: if *client_id* is empty.
        """
        check_str("client_id", client_id)
        identity_end = epoch_of("expires_at", expires_at)
        payload = [client_id, secrets.token_urlsafe(12), round(self._clock() + self.ttl, 3),
                   identity_end]
        return str(self._serializer.dumps(payload))

    def redeem(
        self, ticket: str | None, *, backplane: ClaimingBackplane | None = None
    ) -> Identity:
        """The identity *ticket* was minted for, once: the ticket is spent now.

        :param ticket: the ticket the request carried (``None``: it had none).
        :param backplane: where the spent tickets are kept (``hub.backplane``,
            a :class:`~sse_kit._backplane.ClaimingBackplane`), so that no worker
            or host lets it in twice; ``None``: in this process.
        :raises InvalidTicket: if it is missing, malformed, not signed with this
            secret, expired, already used, or its identity has expired.
        :raises BackplaneUnavailable: if the backplane cannot be reached in time.
        """
        if not ticket:
            raise InvalidTicket(NO_TICKET)
        payload = self._payload(ticket)
        client_id, nonce, deadline, identity_end = payload
        now = self._clock()
        if now > deadline:
            raise InvalidTicket(EXPIRED_TICKET)
        if identity_end is not None and now >= identity_end:
            raise InvalidTicket(EXPIRED_IDENTITY)
        keep = deadline - now + _MARGIN
        if backplane is not None:
            fresh = backplane.claim_once(f"ticket:{nonce}", keep)
        else:
            fresh = self._spent.claim(nonce, now + keep, now)
        if not fresh:
            raise InvalidTicket(SPENT_TICKET)
        return Identity(client_id, identity_end)

    def _payload(self, ticket: str) -> tuple[str, str, float, float | None]:
        try:
            payload: Any = self._serializer.loads(ticket)
        except (BadData, UnicodeError, ValueError):
            raise InvalidTicket(BAD_TICKET) from None
        # Signed by this secret, so written by mint(); checked anyway (a shared
        # secret with another version, or another use of the same salt).
        if (isinstance(payload, list) and len(payload) == 4 and isinstance(payload[0], str)
                and payload[0] and isinstance(payload[1], str)
                and isinstance(payload[2], (int, float))
                and (payload[3] is None or isinstance(payload[3], (int, float)))):
            return payload[0], payload[1], float(payload[2]), payload[3]
        raise InvalidTicket(BAD_TICKET)


class _Spent:
    """The nonces of the tickets this process has let in, until they expire."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        # _lock guards _kept and _order; held to test-and-add one nonce.
        self._lock = threading.Lock()
        self._kept: set[str] = set()
        # (until, nonce) in claim order: near enough oldest-first, so expired
        # nonces are dropped from the front (a later one waits at most a ttl).
        self._order: collections.deque[tuple[float, str]] = collections.deque()

    def claim(self, nonce: str, until: float, now: float) -> bool:
        """True the first time *nonce* is claimed (it is then kept until *until*).

        :raises InvalidTicket: (``503``) when *capacity* nonces are kept and
            none has expired.
        """
        with self._lock:
            order, kept = self._order, self._kept
            while order and order[0][0] <= now:
                kept.discard(order.popleft()[1])
            if nonce in kept:
                return False
            if len(kept) >= self._capacity:
                raise InvalidTicket(TOO_MANY, status=503)
            kept.add(nonce)
            order.append((until, nonce))
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)
