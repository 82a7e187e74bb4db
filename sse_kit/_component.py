"""Component: the hub as a lifecycle unit of an application (gokit ``sse.Component``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ._hub import Hub
from ._options import check_type, value_error

__all__ = ["Broadcaster", "Component", "Description", "Health"]

_NAME = "sse"  # gokit's component name: Component.name and every Health it reports


@runtime_checkable
class Broadcaster(Protocol):
    """Anything that can publish an event to the clients matching a pattern.

    :class:`Hub` satisfies it; so does a backplane publishing from a process
    with no hub. Type your publishing code against this, not against ``Hub``.
    """

    def broadcast_to_pattern(self, pattern: str, data: Any, *, event: str | None = None) -> object:
        """Send *data* to every client whose ID matches the glob *pattern*
        (:class:`Hub` returns a :class:`Receipt`; a backplane returns ``None``)."""
        ...


@dataclass(frozen=True, slots=True)
class Description:
    """What a component is, for an application's startup banner or admin page.

    :ivar metrics: the hub's :meth:`Hub.stats` when it was described.
    """

    name: str
    type: str
    details: str
    # A snapshot: two descriptions of one component are equal whatever the numbers.
    metrics: Mapping[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Health:
    """A component's health: ``status`` is ``"healthy"`` or ``"unhealthy"``."""

    name: str
    status: Literal["healthy", "unhealthy"]
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """Whether :attr:`status` is ``"healthy"``."""
        return self.status == "healthy"


class Component:
    """Starts and stops a :class:`Hub` with the application, and reports on it.

    :param hub: the hub to manage; a new ``Hub()`` when omitted.
    :param path: where the stream is mounted, for :meth:`describe`.
    """

    def __init__(self, hub: Hub | None = None, *, path: str = "/events") -> None:
        check_type("hub", hub, Hub, optional=True)
        check_type("path", path, str)
        if not path.startswith("/"):
            raise value_error("path", "a str starting with '/'", path)
        self._hub = hub if hub is not None else Hub()
        self._path = path

    @property
    def name(self) -> str:
        """``"sse"``, as gokit's ``comp.Name()``; also the name :meth:`health` reports."""
        return _NAME

    @property
    def hub(self) -> Hub:
        """The managed hub."""
        return self._hub

    def start(self) -> None:
        """Start the hub thread (idempotent)."""
        self._hub.start()

    def stop(self) -> None:
        """Stop the hub, ending every stream (idempotent)."""
        self._hub.stop()

    def describe(self) -> Description:
        """Name ``"SSE Hub"``, type ``"sse"``, details ``"Path: <path>"``, and the
        hub's metrics (the numbers :meth:`health` and ``/metrics`` report)."""
        return Description(name="SSE Hub", type="sse", details=f"Path: {self._path}",
                           metrics=self._hub.stats())

    def health(self) -> Health:
        """Healthy while the hub thread runs, named :attr:`name`; details are the hub's
        metrics (:meth:`Hub.stats`), the message sums them up."""
        stats = self._hub.stats()
        if not self._hub.running:
            return Health(_NAME, "unhealthy", "the hub thread is not running", stats)
        message = (
            f"{stats['clients']:.0f} client(s) connected; {stats['published']:.0f} published,"
            f" {stats['dropped']:.0f} dropped, {stats['slow_disconnects']:.0f} slow-client"
            f" disconnect(s), {stats['resets']:.0f} reset(s)"
        )
        return Health(_NAME, "healthy", message, stats)
