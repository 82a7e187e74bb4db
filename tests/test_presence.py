"""Presence, disconnect and control entries on one hub (no broker): what stays
local without a backplane, and the order a control entry keeps among events."""

from __future__ import annotations

import json
import logging

import pytest

from sse_kit import EVENT_TYPE_PRESENCE, Hub, InvalidPattern
from sse_kit._backplane import Control
from tests._live import wait_for
from tests._streams import Reader, TestLog, entry


def presence_events(reader: Reader, n: int) -> list[tuple[str, str]]:
    events = reader.take(n, event=EVENT_TYPE_PRESENCE)
    return [(d["client_id"], d["state"]) for d in (json.loads(ev.data) for ev in events)]


def test_presence_counts_this_hubs_streams_per_id() -> None:
    with Hub() as hub:
        readers = [Reader(hub, cid) for cid in ("user:1", "user:1", "user:2", "room:7")]
        assert hub.presence() == {"room:7": 1, "user:1": 2, "user:2": 1}
        assert list(hub.presence()) == ["room:7", "user:1", "user:2"]  # sorted by ID
        assert hub.presence("user:*") == {"user:1": 2, "user:2": 1}
        assert hub.presence("user:2") == {"user:2": 1}
        assert hub.presence("nobody") == {}
        readers[0].close()
        wait_for(lambda: hub.presence("user:1") == {"user:1": 1}, message="one user:1 left")
        for reader in readers[1:]:
            reader.close()
        wait_for(lambda: hub.presence() == {}, message="nobody left")


def test_presence_rejects_a_bad_pattern() -> None:
    with Hub() as hub, pytest.raises(InvalidPattern):
        hub.presence("")


def test_a_stopped_hub_has_no_presence() -> None:
    assert Hub().presence() == {}


def test_join_and_leave_events_go_where_the_app_routes_them() -> None:
    def route(client_id: str) -> str | None:
        return None if client_id.startswith("watch:") else "watch:*"

    with Hub(presence_events=route) as hub:
        watcher = Reader(hub, "watch:1")
        first, second = Reader(hub, "user:1"), Reader(hub, "user:1")
        assert presence_events(watcher, 1) == [("user:1", "join")]  # one join for both
        first.close()
        other = Reader(hub, "user:2")
        second.close()
        other.close()
        assert presence_events(watcher, 3) == [
            ("user:2", "join"), ("user:1", "leave"), ("user:2", "leave")]
        watcher.close()


def test_a_failing_route_is_counted_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def route(client_id: str) -> str | None:
        raise RuntimeError("the app's bug")

    with Hub(presence_events=route) as hub:
        reader = Reader(hub, "user:1")
        hub.broadcast_to_pattern("user:1", "still here")
        assert reader.take(1, event="message")[0].data == "still here"
        assert hub.stats()["cluster_errors"] == 1
        assert "could not announce the join of client 'user:1'" in caplog.text
        reader.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [({"presence_ttl": 0}, ValueError, "presence_ttl"),
     ({"presence_ttl": float("inf")}, ValueError, "presence_ttl"),
     ({"presence_events": "watch:*"}, TypeError, "presence_events")],
)
def test_invalid_presence_options_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        Hub(**kwargs)  # type: ignore[arg-type]


def test_a_backplane_without_control_entries_says_once_that_they_stay_per_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sse_kit"):
        hub = Hub(backplane=TestLog())
    assert "disconnect(), max_clients_per_id and presence() act on this worker only" in caplog.text
    assert hub.stats()["misconfigured"] == 1
    with hub:
        reader = Reader(hub, "user:1")
        assert hub.disconnect("user:*") == 1  # local, as documented
        assert reader.ended()
        reader.close()
        wait_for(lambda: hub.presence() == {}, message="the stream to leave")


def test_a_control_entry_ends_the_streams_it_matches_between_the_events_around_it() -> None:
    log = TestLog()
    with Hub(backplane=log) as hub:
        kicked, bystander = Reader(hub, "user:1"), Reader(hub, "room:7")
        assert log.feed is not None
        # One batch, as a reader hands it: an event, the control entry, an event.
        log.feed.deliver([entry(2, "*"), Control("3-0", (3, 0), "disconnect", "user:*"),
                          entry(4, "*")])
        assert [ev.data for ev in kicked.rest() if ev.event == "message"] == ["e2"]
        assert [ev.data for ev in bystander.take(2, event="message")] == ["e2", "e4"]
        assert hub.stats()["kicked"] == 1
        # Applied once: the same entry again (a reader's retry) ends nothing.
        again = Reader(hub, "user:1")
        log.feed.deliver([Control("3-0", (3, 0), "disconnect", "user:*"), entry(5, "*")])
        assert [ev.data for ev in again.take(1, event="message")] == ["e5"]
        # An action this version does not know is counted, and ends nothing.
        log.feed.deliver([Control("6-0", (6, 0), "reboot", "*"), entry(7, "*")])
        assert [ev.data for ev in again.take(1, event="message")] == ["e7"]
        assert hub.stats()["cluster_errors"] == 1
        again.close()
        bystander.close()
