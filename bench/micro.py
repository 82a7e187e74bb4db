"""Routing cost: one broadcast to an exact ID or a ``prefix:*`` pattern, with 100
or 10,000 other clients connected (in-process; no sockets: what is measured is
the hub's work per broadcast, the part that could grow with other clients)."""

from __future__ import annotations

import time

from sse_kit import Client, Hub


def routing_cost_us(others: int, pattern: str, broadcasts: int = 20_000) -> float:
    """Microseconds of hub work per broadcast (half reach one client, half none)."""
    hub = Hub(history_size=0).start()
    try:
        for i in range(others):
            hub.register(Client(f"user:{i}:tab"))
        target = Client("job:17:a", buffer=broadcasts + 10)
        hub.register(target)
        hub.flush()
        # Every other broadcast goes to a twin pattern that matches no client, so
        # consecutive broadcasts never share a pattern: the hub cannot route them
        # as one batch, and every broadcast pays its own lookup.
        twin = pattern.replace("17", "18")
        t0 = time.perf_counter()
        for _ in range(broadcasts // 2):
            hub.broadcast_to_pattern(pattern, "x" * 60)
            hub.broadcast_to_pattern(twin, "x" * 60)
        hub.flush()
        elapsed = time.perf_counter() - t0
        frames, _ = target._take(0)
        assert len(frames) == broadcasts // 2, len(frames)
        return 1e6 * elapsed / broadcasts
    finally:
        hub.stop()


def run(
    counts: tuple[int, ...] = (100, 10_000), broadcasts: int = 20_000
) -> dict[str, dict[int, float]]:
    """{pattern kind: {other clients: µs per broadcast}} (best of three)."""
    out: dict[str, dict[int, float]] = {}
    for kind, pattern in (("exact", "job:17:a"), ("prefix", "job:17:*")):
        out[kind] = {n: min(routing_cost_us(n, pattern, broadcasts) for _ in range(3))
                     for n in counts}
    return out
