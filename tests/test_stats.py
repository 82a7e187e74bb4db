"""The metrics table: counters, gauges, listeners, and the hub's numbers in it."""

from __future__ import annotations

import re
import threading

from sse_kit import Hub
from sse_kit._stats import COUNTERS, GAUGES, Counters
from tests._live import REPO_ROOT, wait_for
from tests._streams import Reader


def test_every_name_is_in_one_table_with_a_meaning() -> None:
    assert not set(COUNTERS) & set(GAUGES)
    assert all(meaning.endswith(".") for meaning in [*COUNTERS.values(), *GAUGES.values()])
    assert set(Counters().snapshot()) == {*COUNTERS, *GAUGES}


def test_counters_gauges_and_high_water_marks() -> None:
    c = Counters()
    c.add("published")
    c.add_many(delivered=3, dropped=0)
    c.set("clients", 2)
    c.observe_max("queue_high_water", 5)
    c.observe_max("queue_high_water", 3)  # lower: ignored
    snap = c.snapshot()
    assert (snap["published"], snap["delivered"], snap["dropped"]) == (1, 3, 0)
    assert (snap["clients"], snap["queue_high_water"]) == (2, 5)


def test_a_listener_gets_the_current_state_then_every_change_in_order() -> None:
    c = Counters()
    c.add("connects", 2)
    c.set("clients", 2)
    calls: list[tuple[str, str, float]] = []
    c.listen(lambda name, kind, value: calls.append((name, kind, value)))
    assert ("connects", "inc", 2) in calls and ("clients", "set", 2) in calls
    assert ("published", "inc", 0) not in calls  # zero counters need no increment
    calls.clear()
    c.add_many(published=1, delivered=0)
    c.observe_max("queue_high_water", 4)
    c.observe_max("queue_high_water", 1)
    c.set("backplane_lag_ms", 250)
    assert calls == [
        ("published", "inc", 1),
        ("queue_high_water", "set", 4),
        ("backplane_lag_ms", "set", 250),
    ]


def test_concurrent_updates_are_all_counted() -> None:
    c = Counters()

    def bump() -> None:
        for i in range(2000):
            c.add("delivered")
            c.observe_max("queue_high_water", i)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.snapshot()["delivered"] == 8000
    assert c.snapshot()["queue_high_water"] == 1999


def test_the_hub_counts_clients_queue_depth_and_resumes() -> None:
    with Hub(client_buffer=50) as hub:
        reader = Reader(hub, "user:1")
        reader.take(1, event="connected")
        assert hub.stats()["clients"] == 1 and hub.stats()["connects"] == 1
        for i in range(20):
            hub.broadcast_to_pattern("user:1", str(i))
        assert [e.data for e in reader.take(20)] == [str(i) for i in range(20)]
        assert 1 <= hub.stats()["queue_high_water"] <= 20
        reader.close()
        wait_for(lambda: hub.stats()["clients"] == 0, message="the stream to unregister")
        again = Reader(hub, "user:1", last_event_id="nonsense")
        again.take(1, event="reset")
        s = hub.stats()
        assert (s["connects"], s["disconnected"], s["resets"], s["published"]) == (2, 1, 1, 20)
        assert s["delivered"] == 20
        again.close()



def test_the_operations_page_lists_every_metric_as_the_code_does() -> None:
    from sse_kit.prometheus import CONVERTED, GAUGE_MODES

    page = (REPO_ROOT / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (counter|gauge) \| `(\w+)` \| (\w+) \| (.+) \|$", page,
                      re.MULTILINE)
    documented = {name: (kind, prom, mode, meaning) for name, kind, prom, mode, meaning in rows}
    expected = {
        **{n: ("counter", f"sse_kit_{n}_total", "sum", m) for n, m in COUNTERS.items()},
        **{n: ("gauge", f"sse_kit_{CONVERTED.get(n, (n,))[0]}", GAUGE_MODES[n], m)
           for n, m in GAUGES.items()},
    }
    assert documented == expected
