"""Hub: lifecycle, routing, ordering, counters and limits (in-process, no server)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import threading
from collections.abc import Iterator

import pytest

from sse_kit import Broadcaster, Client, Hub, HubFull, HubNotRunning
from tests._live import wait_for
from tests._streams import Reader


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub(keepalive_interval=30) as h:
        yield h


def test_configuration_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Hub(256)  # type: ignore[misc]


def test_slow_client_default_follows_history() -> None:
    assert Hub().slow_client == "disconnect"
    assert Hub(history_size=0).slow_client == "drop"


def test_start_is_idempotent_and_names_the_thread() -> None:
    h = Hub()
    assert h.start() is h and h.start() is h
    assert [t.name for t in threading.enumerate()].count("sse_kit-hub") >= 1
    assert h.running
    h.stop()
    h.stop()
    assert not h.running


def test_run_blocks_until_stop() -> None:
    h = Hub()
    t = threading.Thread(target=h.run)
    t.start()
    wait_for(lambda: h.running, message="the hub to run")
    with pytest.raises(RuntimeError, match="already running"):
        h.run()
    h.stop()
    t.join(5)
    assert not t.is_alive()


def test_a_hub_starts_itself_on_first_use() -> None:
    h = Hub()
    assert not h.running and h.get_client_ids() == []  # a query does not start it
    h.broadcast_to_pattern("*", "x")
    assert h.running
    h.stop()
    h2 = Hub()
    h2.register(Client("x"))
    assert h2.running and h2.get_client_ids() == ["x"]
    h2.stop()


def test_a_stopped_hub_refuses_work_and_says_why() -> None:
    h = Hub().start()
    h.stop()
    with pytest.raises(HubNotRunning, match=r"stopped in this process .*call hub.start\(\)"):
        h.broadcast_to_pattern("*", "x")
    with pytest.raises(HubNotRunning, match="stopped in this process"):
        h.register(Client("x"))
    assert h.get_client_ids() == [] and h.get_client_count() == 0
    h.start()  # an explicit start runs it again
    h.broadcast_to_pattern("*", "x")
    h.stop()


def test_on_start_runs_after_each_start_and_at_once_when_running() -> None:
    h = Hub()
    seen: list[bool] = []

    @h.on_start
    def ticker(hub: Hub) -> None:
        seen.append(hub.running)
        hub.broadcast_to_pattern("*", "tick")  # the hub runs: this cannot fail

    assert seen == []
    h.start()
    assert seen == [True]
    h.on_start(lambda hub: seen.append(False))  # already running: called now
    assert seen == [True, False]
    h.stop()
    h.start()
    assert seen == [True, False, True, False]
    h.stop()
    with pytest.raises(TypeError, match="callable"):
        h.on_start("not a function")  # type: ignore[arg-type]


def test_a_failing_on_start_callback_is_logged_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Hub()
    ran: list[str] = []

    def broken(hub: Hub) -> None:
        raise RuntimeError("boom")

    h.on_start(broken)
    h.on_start(lambda hub: ran.append("second"))
    with caplog.at_level("ERROR", logger="sse_kit._hub"):
        h.start()
    h.stop()
    assert ran == ["second"]
    assert "on_start callback" in caplog.text and "boom" in caplog.text


def test_hub_is_a_broadcaster(hub: Hub) -> None:
    assert isinstance(hub, Broadcaster)


def test_register_unregister_and_queries(hub: Hub) -> None:
    a, b, c = Client("user:1"), Client("user:1"), Client("user:2")
    for x in (a, b, c):
        hub.register(x)
    assert hub.get_client_count() == 3
    assert hub.get_client_ids() == ["user:1", "user:2"]
    assert hub.get_client("user:1") is b
    assert hub.get_client("nobody") is None
    assert hub.clients("user:*") == [a, b, c]
    hub.unregister(a)
    hub.unregister(a)
    hub.flush()
    assert hub.get_client_count() == 2 and a.closed
    assert hub.stats()["disconnected"] == 1


def test_routing_by_pattern(hub: Hub) -> None:
    clients = {cid: Client(cid) for cid in ["job:1:a", "job:1:b", "job:2:a", "user:42"]}
    for c in clients.values():
        hub.register(c)
    hub.broadcast_to_pattern("job:1:*", "one")
    hub.broadcast_to_pattern("job:?:a", "a")
    hub.broadcast_to_pattern("user:42", {"n": 1}, event="note")
    hub.flush()
    got = {cid: [f.split(b"\n", 1)[1] for f in c._take(0)[0]] for cid, c in clients.items()}
    assert got == {
        "job:1:a": [b"data: one\n\n", b"data: a\n\n"],
        "job:1:b": [b"data: one\n\n"],
        "job:2:a": [b"data: a\n\n"],
        "user:42": [b'event: note\ndata: {"n":1}\n\n'],
    }


def test_one_encoding_is_shared_by_every_recipient(hub: Hub) -> None:
    a, b = Client("a"), Client("b")
    hub.register(a)
    hub.register(b)
    hub.broadcast_to_pattern("*", "x" * 1000)
    hub.flush()
    (fa,), (fb,) = a._take(0)[0], b._take(0)[0]
    assert fa is fb


def test_bad_event_names_raise(hub: Hub) -> None:
    with pytest.raises(ValueError, match="event"):
        hub.broadcast_to_pattern("*", "x", event="a\nb")


def test_events_from_each_publisher_arrive_in_order() -> None:
    hub = Hub(client_buffer=2000).start()
    reader = Reader(hub, "c")
    reader.take(1, event="connected")

    def publish(tag: str) -> None:
        for i in range(500):
            hub.broadcast_to_pattern("c", f"{tag}{i}")

    threads = [threading.Thread(target=publish, args=(t,)) for t in "xyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [e.data for e in reader.take(1500)]
    for tag in "xyz":
        assert [d for d in got if d[0] == tag] == [f"{tag}{i}" for i in range(500)]
    reader.close()
    hub.stop()


def test_stats_count_what_happened() -> None:
    with Hub(history_size=0) as hub:
        c = Client("c", buffer=2)
        hub.register(c)
        for i in range(5):
            hub.broadcast_to_pattern("*", str(i))
        hub.broadcast_to_pattern("nobody", "x")
        hub.flush()
        s = hub.stats()
        assert (s["published"], s["delivered"], s["dropped"], s["clients"]) == (6, 2, 3, 1)


def test_max_clients_refuses_the_next_registration() -> None:
    with Hub(max_clients=2) as hub:
        hub.register(Client("a"))
        hub.register(Client("b"))
        with pytest.raises(HubFull, match="max_clients=2"):
            hub.register(Client("c"))
        assert hub.stats()["refused"] == 1


def test_stop_ends_every_stream_promptly() -> None:
    hub = Hub(keepalive_interval=30).start()
    readers = [Reader(hub, f"c{i}") for i in range(20)]
    for r in readers:
        r.take(1, event="connected")
    hub.stop()
    for r in readers:
        assert r.ended(timeout=2)
        assert r.raw[-1] == b"retry: 250\n\n"


def test_keepalive_is_a_comment_after_silence() -> None:
    with Hub(keepalive_interval=0.05) as hub:
        reader = Reader(hub, "c")
        wait_for(lambda: any(chunk.startswith(b": keepalive ") for chunk in reader.raw),
                 message="a keep-alive comment")
        chunk = next(c for c in reader.raw if c.startswith(b": keepalive "))
        assert chunk.endswith(b"\n\n") and chunk[12:-2].isdigit()
        reader.close()


def test_connected_event_payload() -> None:
    with Hub() as hub:
        reader = Reader(hub, "user:1", user_id="u1", session_id="s1", metadata={"plan": "pro"})
        ev = reader.next()
        assert ev.event == "connected"
        assert json.loads(ev.data) == {
            "client_id": "user:1", "user_id": "u1", "session_id": "s1",
            "metadata": {"plan": "pro"},
        }
        assert reader.decoder.retry == 3000
        reader.close()


def test_closing_one_of_two_connections_keeps_the_other() -> None:
    with Hub() as hub:
        a, b = Reader(hub, "user:1"), Reader(hub, "user:1")
        a.take(1, event="connected")
        b.take(1, event="connected")
        hub.broadcast_to_pattern("user:1", "both")
        assert a.next().data == "both" and b.next().data == "both"
        a.close()
        wait_for(lambda: hub.get_client_count() == 1, message="one client left")
        hub.broadcast_to_pattern("user:1", "survivor")
        assert b.next().data == "survivor"
        b.close()
        wait_for(lambda: hub.get_client_count() == 0, message="no client left")


def test_disconnect_ends_matching_streams() -> None:
    with Hub() as hub:
        a, b = Reader(hub, "user:1:x"), Reader(hub, "user:2:x")
        a.take(1)
        b.take(1)
        assert hub.disconnect("user:1:*") == 1
        assert a.ended()
        hub.broadcast_to_pattern("*", "still here")
        assert b.next().data == "still here"
        b.close()


def _json_default(value: object) -> object:
    """The recipe docs/quickstart.md gives for data JSON has no type for."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@dataclasses.dataclass
class _Price:
    amount: decimal.Decimal
    at: datetime.date


def test_json_default_encodes_datetimes_decimals_and_dataclasses() -> None:
    when = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)
    data = {"at": when, "price": _Price(decimal.Decimal("9.90"), when.date())}
    with Hub(json_default=_json_default) as hub:
        reader = Reader(hub, "c")
        assert reader.next().event == "connected"
        hub.broadcast_to_pattern("c", data)
        assert json.loads(reader.next().data) == {
            "at": "2026-11-30T12:00:00+00:00",
            "price": {"amount": "9.90", "at": "2026-11-30"},
        }
        client = hub.get_client("c")
        assert client is not None and client.send([decimal.Decimal("1.5")])
        assert json.loads(reader.next().data) == ["1.5"]
        reader.close()
    with Hub() as plain, pytest.raises(TypeError, match="not JSON-serialisable"):
        plain.broadcast_to_pattern("c", data)
    with pytest.raises(TypeError, match="json_default must be callable"):
        Hub(json_default="iso")  # type: ignore[arg-type]


def test_a_broadcast_says_how_many_streams_it_reached(hub: Hub) -> None:
    hub.register(Client("user:1:a"))
    hub.register(Client("user:1:b"))
    hub.register(Client("user:2:a"))
    assert hub.broadcast_to_pattern("user:1:*", "x").matched() == 2
    assert hub.broadcast_to_pattern("user:*", "x").matched() == 3
    assert hub.broadcast_to_pattern("job:7:*", "x").matched() == 0  # reached nobody here
    # Receipts of a batch (broadcasts waiting in the inbox together) each get the answer.
    receipts = [hub.broadcast_to_pattern("user:2:*", str(i)) for i in range(50)]
    assert {r.matched() for r in receipts} == {1}
    assert "matched=1" in repr(receipts[0])


def test_a_receipt_that_is_never_routed_answers_none() -> None:
    h = Hub().start()
    h.register(Client("c"))
    release = threading.Event()
    holder = threading.Thread(target=h._call, args=(release.wait, None), daemon=True)
    holder.start()  # the hub thread is busy in release.wait()
    wait_for(lambda: not h._core.inbox.qsize(), message="the hub thread to take the call")
    h.stop(timeout=0)  # queued: the hub is still running, behind the call
    receipt = h.broadcast_to_pattern("c", "late")  # queued behind the stop
    release.set()
    h.stop()
    assert receipt.matched(timeout=5) is None  # answered, not left waiting
    holder.join(5)
