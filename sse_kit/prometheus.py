"""Prometheus metrics for a :class:`~sse_kit.Hub` (``pip install sse_kit[prometheus]``).

:class:`HubMetrics` mirrors a hub's metrics (:meth:`~sse_kit.Hub.stats`, whose names and
meanings are ``sse_kit._stats.COUNTERS`` and ``GAUGES``) into metrics of the
official ``prometheus_client`` library, as they change, and renders them in the
Prometheus text format. ``create_blueprint(hub, metrics=True)`` serves that at
``<prefix>/metrics``.

Several gunicorn workers: each worker has its own hub, so one worker's numbers
are a fraction of the service's. Run gunicorn with ``PROMETHEUS_MULTIPROC_DIR``
set to an empty directory (prometheus_client's multiprocess mode; the variable
must be in the environment before ``prometheus_client`` is imported). Every
worker then writes its values to files there, and a scrape served by any worker
adds them up: counters are summed over every worker that ever ran, ``clients``
over the live workers (``livesum``), ``queue_high_water`` is the maximum over all
(``max``) and the backplane lag the maximum over the live ones (``livemax``).
Add :func:`sse_kit.gunicorn.child_exit` to the gunicorn config so a dead
worker's live gauges are removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
    from prometheus_client import multiprocess as _multiprocess
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sse_kit.prometheus needs the prometheus_client package: "
        "pip install 'sse_kit[prometheus]'"
    ) from exc

from ._hub import Hub
from ._options import check_str, check_type
from ._stats import COUNTERS, GAUGES

__all__ = ["CONTENT_TYPE", "HubMetrics", "mark_worker_dead", "multiprocess_dir"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST  # of the text rendered by HubMetrics.render()
NAMESPACE: Final = "sse_kit"
# How each gauge is combined across workers in multiprocess mode (see the module doc).
_Mode = Literal["livesum", "max", "livemax"]
GAUGE_MODES: Final[Mapping[str, _Mode]] = {
    "clients": "livesum",
    "queue_high_water": "max",
    "backplane_lag_ms": "livemax",
}
# Gauges exposed under another name and unit: stats name -> (Prometheus name, factor).
CONVERTED: Final[Mapping[str, tuple[str, float]]] = {
    "backplane_lag_ms": ("backplane_lag_seconds", 0.001),
}
_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The prometheus_client multiprocess directory, or ``None`` in single-process mode."""
    return os.environ.get(_ENV) or os.environ.get(_ENV.lower()) or None


def mark_worker_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (a no-op outside multiprocess mode)."""
    if multiprocess_dir() is not None:
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class HubMetrics:
    """A hub's metrics as ``prometheus_client`` metrics named ``sse_kit_*``.

    Counters become ``sse_kit_<name>_total``; gauges ``sse_kit_<name>``, except
    ``backplane_lag_ms``, exposed in seconds as ``sse_kit_backplane_lag_seconds``
    (Prometheus' base unit). Every series carries a ``hub`` label so two hubs in
    one app stay apart.

    :param hub: the hub to observe; its current values are taken over at once.
    :param hub_label: the ``hub`` label's value (the blueprint passes its name).
    :param registry: where the metrics are registered; a private registry when
        omitted (pass ``prometheus_client.REGISTRY`` to serve them with your
        app's own metrics in single-process mode).
    """

    def __init__(
        self, hub: Hub, *, hub_label: str = "sse", registry: CollectorRegistry | None = None
    ) -> None:
        check_type("hub", hub, Hub)
        check_str("hub_label", hub_label)
        self.registry = registry if registry is not None else CollectorRegistry()
        self._counters = {
            name: Counter(name, meaning, ["hub"], namespace=NAMESPACE,
                          registry=self.registry).labels(hub_label)
            for name, meaning in COUNTERS.items()
        }
        self._gauges = {
            name: Gauge(CONVERTED.get(name, (name, 1.0))[0], meaning, ["hub"],
                        namespace=NAMESPACE, registry=self.registry,
                        multiprocess_mode=GAUGE_MODES.get(name, "livesum")).labels(hub_label)
            for name, meaning in GAUGES.items()
        }
        self._factors = {name: factor for name, (_, factor) in CONVERTED.items()}
        hub.counters.listen(self._mirror)

    def _mirror(self, name: str, kind: str, value: int) -> None:
        if kind == "inc":
            self._counters[name].inc(value)
        else:
            self._gauges[name].set(value * self._factors.get(name, 1))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (:data:`CONTENT_TYPE`): this
        process's, or every worker's added up in multiprocess mode."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
