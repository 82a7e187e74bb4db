"""What a backplane offers beyond events: control entries and a roster of streams.

A backplane that also implements :class:`ClusterBackplane`
(:class:`sse_kit.redis.RedisBackplane` does) makes a hub's acts on clients
cluster-wide:

* :meth:`ClusterBackplane.control` appends a *control entry* to the same log as
  the events (a ``disconnect`` of a pattern), which every hub's reader hands its
  hub thread in log order, so every worker applies it at the same place among
  the events;
* :meth:`ClusterBackplane.roster` gives each hub process its :class:`Roster`: the
  count of its streams per client ID, kept in the broker under a key that lives
  only as long as the process renews it (heartbeats), from which the hubs read
  ``max_clients_per_id`` across the cluster and presence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._backplane import Backplane

__all__ = ["Admission", "Beat", "ClusterBackplane", "Roster"]

@dataclass(frozen=True, slots=True)
class Admission:
    """A roster's answer to a new stream.

    :ivar admitted: whether the stream got its slot (then it is counted).
    :ivar others: the streams of its client ID the cluster held before it.
    """

    admitted: bool
    others: int


@dataclass(frozen=True, slots=True)
class Beat:
    """A roster's answer to a heartbeat.

    :ivar lapsed: this process's entry was gone (its first beat, or it was
        reaped while this process could not beat): the caller beats again with
        its counts.
    :ivar left: the client IDs that left the cluster with the processes forgotten now.
    """

    lapsed: bool
    left: Sequence[str]


class Roster(Protocol):
    """One hub process's entry in the cluster's roster of streams. Every method
    may block on the broker (the hub's presence thread calls them, never the
    hub thread) and raises :class:`sse_kit.BackplaneUnavailable` when the broker
    cannot be reached in time."""

    def admit(self, client_id: str, limit: int | None) -> Admission:
        """Count one more stream of *client_id* here, unless the live processes
        already hold *limit* (``None``: no limit)."""
        ...

    def leave(self, client_id: str) -> int:
        """Count one stream of *client_id* less here; return how many the
        cluster still holds."""
        ...

    def beat(self, counts: Mapping[str, int] | None) -> Beat:
        """Renew this process's entry for another TTL (first rewriting it from
        *counts*, when given) and forget the processes that stopped renewing theirs."""
        ...

    def clear(self) -> Sequence[str]:
        """Remove this process's entry (a clean stop); return the client IDs that
        left the cluster with it."""
        ...

    def count(self) -> dict[str, int]:
        """Streams per client ID across the live processes (this one included)."""
        ...

    def count_of(self, client_id: str) -> int:
        """Streams of *client_id* across the live processes."""
        ...


@runtime_checkable
class ClusterBackplane(Backplane, Protocol):
    """A backplane that carries control entries and keeps a roster."""

    def control(self, action: str, pattern: str) -> str:
        """Append a control entry to the log; return its entry ID.

        :raises BackplaneUnavailable: if the log cannot be reached in time.
        """
        ...

    def roster(self, member: str, ttl: float) -> Roster:
        """The roster entry of the process *member* (unique per hub run), which
        lapses *ttl* seconds after its last :meth:`Roster.beat`."""
        ...
