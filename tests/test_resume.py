"""Lossless resume through the hub: replay + live with no gap and no duplicate."""

from __future__ import annotations

import json
import random
import threading

import pytest

from sse_kit import Hub, serve_sse
from sse_kit._backplane import Replay
from tests._decoder import decode
from tests._streams import Reader, TestLog, entry, environ


def test_a_reconnect_receives_exactly_what_it_missed_then_live_events() -> None:
    with Hub() as hub:
        first = Reader(hub, "user:1")
        connected = first.next()
        hub.broadcast_to_pattern("user:1", "a")
        (a,) = first.take(1, event="message")
        first.close()
        for i in range(5):
            hub.broadcast_to_pattern("user:*", f"missed {i}")
            hub.broadcast_to_pattern("user:2", "not for you")
        again = Reader(hub, "user:1", last_event_id=a.id)
        ev = again.next()
        assert ev.event == "connected" and ev.id == a.id  # continues from where it was
        assert [e.data for e in again.take(5, event="message")] == [f"missed {i}" for i in range(5)]
        hub.broadcast_to_pattern("user:1", "live")
        assert again.next().data == "live"
        again.close()
        assert connected.id != a.id
        s = hub.stats()
        assert (s["resumed"], s["replayed"], s["resets"]) == (1, 5, 0)


def test_the_connected_event_id_makes_even_a_silent_stream_resumable() -> None:
    with Hub() as hub:
        hub.broadcast_to_pattern("*", "before")
        r = Reader(hub, "c")
        position = r.next().id
        r.close()
        hub.broadcast_to_pattern("*", "while away")
        again = Reader(hub, "c", last_event_id=position)
        assert [e.data for e in again.take(1, event="message")] == ["while away"]
        again.close()


@pytest.mark.parametrize(
    ("last_event_id", "reason"),
    [("", "malformed"), ("garbage", "malformed"), ("-1", "unknown"), ("x" * 300, "malformed"),
     ("é-1", "unknown"), ("0-1", "unknown")],
)
def test_unusable_ids_get_a_reset_then_live_events(last_event_id: str, reason: str) -> None:
    with Hub() as hub:
        r = Reader(hub, "c", last_event_id=last_event_id)
        connected, reset = r.next(), r.next()
        assert connected.event == "connected"
        assert reset.event == "reset"
        assert json.loads(reset.data)["reason"] == reason
        hub.broadcast_to_pattern("*", "live")
        assert r.next().data == "live"
        r.close()
        assert hub.stats()["resets"] == 1


def test_an_id_older_than_the_history_gets_a_reset() -> None:
    with Hub(history_size=3) as hub:
        r = Reader(hub, "c")
        hub.broadcast_to_pattern("*", "0")
        (zero,) = r.take(1, event="message")
        r.close()
        for i in range(4):
            hub.broadcast_to_pattern("*", str(i))
        again = Reader(hub, "c", last_event_id=zero.id)
        assert again.take(1, event="reset")[0].data.startswith('{"reason":"expired"')
        again.close()


def test_reconnecting_while_others_publish_loses_and_repeats_nothing() -> None:
    """Many reconnects at random points while three threads publish: the events seen,
    stitched together across connections, are every event exactly once, in order."""
    rng = random.Random(1234)
    n_per_thread = 400
    with Hub(client_buffer=5000, history_size=5000) as hub:
        def publish(tag: str) -> None:
            for i in range(n_per_thread):
                hub.broadcast_to_pattern("reader", f"{tag}:{i}")

        seen: list[str] = []
        last_id: str | None = None
        reader = Reader(hub, "reader")
        last_id = reader.next().id
        threads = [threading.Thread(target=publish, args=(t,)) for t in "abc"]
        for t in threads:
            t.start()
        reconnects = 0
        while len(seen) < 3 * n_per_thread:
            for ev in reader.take(min(rng.randint(1, 60), 3 * n_per_thread - len(seen)),
                                  event="message"):
                seen.append(ev.data)
                last_id = ev.id
            reader.close()
            reconnects += 1
            reader = Reader(hub, "reader", last_event_id=last_id)
            assert reader.next().event == "connected"
        reader.close()
        for t in threads:
            t.join()
    assert reconnects > 20
    assert len(seen) == len(set(seen)) == 3 * n_per_thread
    for tag in "abc":
        assert [s for s in seen if s[0] == tag] == [f"{tag}:{i}" for i in range(n_per_thread)]


def test_a_slow_client_is_cut_after_its_queue_and_resumes_losslessly() -> None:
    with Hub(client_buffer=4) as hub:
        assert hub.slow_client == "disconnect"
        # A stream nobody iterates past its first chunk: its outbox fills up.
        stalled = serve_sse(hub, environ(), "slow").response
        first = next(iter(stalled))
        for i in range(10):
            hub.broadcast_to_pattern("*", str(i))
        hub.flush()
        events = decode(first + b"".join(stalled))  # ends after the 4 queued events
        messages = [e for e in events if e.event == "message"]
        assert [e.data for e in messages] == ["0", "1", "2", "3"]
        stalled.close()
        s = hub.stats()
        assert (s["slow_disconnects"], s["dropped"]) == (1, 0)
        again = Reader(hub, "slow", last_event_id=messages[-1].id)
        assert [e.data for e in again.take(6, event="message")] == [str(i) for i in range(4, 10)]
        again.close()


def test_drop_policy_loses_events_for_the_slow_client_only() -> None:
    with Hub(client_buffer=4, slow_client="drop") as hub:
        stalled = serve_sse(hub, environ(), "slow").response
        next(iter(stalled))
        for i in range(10):
            hub.broadcast_to_pattern("*", str(i))
        hub.flush()
        assert hub.stats()["dropped"] == 6
        assert not hub.get_client("slow").closed  # type: ignore[union-attr]
        stalled.close()


def test_a_resume_read_from_the_backplane_holds_live_batches_then_loses_and_repeats_nothing(
) -> None:
    log = TestLog()

    def replay(after: str) -> Replay:
        # While the log is read, the reader delivers 2-0..4-0: held for this stream.
        assert log.feed is not None and after == "0-9"
        log.feed.deliver([entry(2, "a"), entry(3, "a"), entry(4, "b")])
        hub.flush()
        # The read saw up to 5-0 (the reader has not yet): 2-0..5-0 are the replay.
        return Replay(entries=[entry(2, "a"), entry(3, "a"), entry(4, "b"), entry(5, "a")])

    log.on_replay = replay
    with Hub(backplane=log) as hub:
        r = Reader(hub, "a", last_event_id="0-9")
        assert r.next().event == "connected"
        assert log.feed is not None
        log.feed.deliver([entry(5, "a"), entry(6, "a")])  # 5-0 was replayed, 6-0 is new
        log.feed.deliver([entry(7, "a")])
        assert [e.id for e in r.take(5, event="message")] == ["2-0", "3-0", "5-0", "6-0", "7-0"]
        r.close()
        s = hub.stats()
        assert (s["resumed"], s["replayed"], s["resets"]) == (1, 3, 0)
