"""The history ring: IDs, bounds, and what a Last-Event-ID resumes."""

from __future__ import annotations

import sys

import pytest

from sse_kit._history import History, Resume, StreamHistory, parse_stream_id
from sse_kit._patterns import compile_pattern


class FakeClock:
    """A clock the test moves by hand (time is an input here, not a wait)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def publish(h: History, pattern: str, n: int = 1) -> list[str]:
    out = []
    for _ in range(n):
        seq, event_id = h.next_id()
        h.append(seq, compile_pattern(pattern), f"frame {event_id}".encode())
        out.append(event_id)
    return out


def test_ids_increase_and_carry_the_epoch() -> None:
    h = History(size=10, ttl=60)
    first, second = publish(h, "*", 2)
    assert first == f"{h.epoch}-1" and second == f"{h.epoch}-2"
    assert h.last_id == second


def test_two_histories_never_share_an_epoch() -> None:
    assert len({History(size=1, ttl=1).epoch for _ in range(200)}) == 200


def test_resume_returns_exactly_the_missed_matching_events_in_order() -> None:
    h = History(size=100, ttl=60)
    (start,) = publish(h, "user:1")
    publish(h, "user:2")
    publish(h, "user:*", 2)
    resume = h.since(start, "user:1")
    assert resume.reset is None
    assert resume.frames == (f"frame {h.epoch}-3".encode(), f"frame {h.epoch}-4".encode())


def test_resume_from_the_newest_id_is_empty() -> None:
    h = History(size=10, ttl=60)
    (last,) = publish(h, "*")
    assert h.since(last, "x").frames == ()
    assert h.since(h.last_id, "x").reset is None


def test_resume_beyond_the_ring_is_a_reset() -> None:
    h = History(size=5, ttl=60)
    (old,) = publish(h, "*")
    publish(h, "*", 5)
    assert len(h.since(old, "x").frames) == 5  # 2..6 are all still in the ring
    publish(h, "*")
    assert h.since(old, "x").reset == "expired"  # 2 is gone


def test_resume_after_ttl_is_a_reset() -> None:
    clock = FakeClock()
    h = History(size=100, ttl=10, clock=clock)
    (old,) = publish(h, "*")
    publish(h, "*")
    clock.now += 11
    assert h.since(old, "x").reset == "expired"


def test_history_off_still_resumes_without_a_gap() -> None:
    h = History(size=0, ttl=10)
    (old,) = publish(h, "*")
    assert h.since(old, "x").reset is None
    publish(h, "*")
    assert h.since(old, "x").reset == "expired"


def test_ids_of_another_hub_or_the_future_are_unknown() -> None:
    h = History(size=10, ttl=60)
    publish(h, "*", 3)
    other = History(size=10, ttl=60)
    assert h.since(f"{other.epoch}-1", "x").reset == "unknown"
    assert h.since(f"{h.epoch}-4", "x").reset == "unknown"


@pytest.mark.parametrize(
    "bad",
    ["", " ", "-", "abc", "1", "-1", "x--1", "x-1.5", "x-+1", "x-١"  # noqa: RUF001, "x-0x1", "é-1",
     "a" * 10_000, "x-" + "9" * 100, "x-1\x00", str(sys.maxsize)],
)
def test_malformed_ids_are_a_reset(bad: str) -> None:
    h = History(size=10, ttl=60)
    publish(h, "*", 2)
    assert h.since(bad, "x").reset in ("malformed", "unknown")


def test_memory_stays_bounded_under_a_long_publish_loop() -> None:
    clock = FakeClock()
    h = History(size=1000, ttl=300, clock=clock)
    for _ in range(50_000):
        clock.now += 0.001
        seq, _ = h.next_id()
        h.append(seq, compile_pattern("*"), b"x" * 100)
        assert len(h) <= 1000
    assert len(h) == 1000


def test_ttl_bounds_the_ring_when_publishing_slowly() -> None:
    clock = FakeClock()
    h = History(size=1000, ttl=5, clock=clock)
    for _ in range(100):
        clock.now += 1
        publish(h, "*")
    assert len(h) == 6


# -- StreamHistory: keyed by a backplane's stream IDs ---------------------------------


def add(h: StreamHistory, *keys: tuple[int, int], pattern: str = "*") -> None:
    for key in keys:
        h.append(key, compile_pattern(pattern), f"frame {key[0]}-{key[1]}".encode())


@pytest.mark.parametrize(
    ("text", "key"),
    [("0-0", (0, 0)), ("1700000000000-3", (1700000000000, 3)), ("5-0", (5, 0)),
     ("", None), ("5", None), ("5-", None), ("-5", None), ("a-1", None), ("1-2-3", None),
     ("1 -2", None), ("\u0661-1", None), (f"{1 << 64}-0", None), ("9" * 70 + "-0", None)],
)
def test_stream_ids_parse_as_pairs_of_ints(text: str, key: tuple[int, int] | None) -> None:
    assert parse_stream_id(text) == key


def test_stream_ids_order_as_integers_not_as_text() -> None:
    h = StreamHistory(size=10, ttl=60)
    h.rebase((9, 0))
    add(h, (9, 5), (10, 0), (10, 11))
    assert h.last_id == "10-11"
    resume = h.since((9, 5), "x")
    assert resume is not None and resume.frames == (b"frame 10-0", b"frame 10-11")


def test_stream_history_covers_from_its_position_to_its_newest_event() -> None:
    h = StreamHistory(size=3, ttl=60)
    assert h.last_id == "" and h.since((0, 0), "x") is None  # position unknown
    h.rebase((100, 0))
    add(h, (101, 0), (102, 0))
    assert h.since((100, 0), "x") == Resume(frames=(b"frame 101-0", b"frame 102-0"))
    assert h.since((101, 5), "x") == Resume(frames=(b"frame 102-0",))  # between two IDs
    assert h.since((102, 0), "x") == Resume()
    assert h.since((99, 0), "x") is None  # before the position: ask the stream
    assert h.since((103, 0), "x") is None  # not routed here yet: ask the stream
    add(h, (103, 0), (104, 0))  # evicts 101
    assert h.since((100, 0), "x") is None
    assert h.since((101, 0), "x") is not None


def test_stream_history_filters_by_pattern_and_expires_by_ttl() -> None:
    clock = FakeClock()
    h = StreamHistory(size=10, ttl=5, clock=clock)
    h.rebase((1, 0))
    add(h, (2, 0), pattern="user:1")
    add(h, (3, 0), pattern="user:2")
    resume = h.since((1, 0), "user:2")
    assert resume is not None and resume.frames == (b"frame 3-0",)
    clock.now += 6
    assert h.since((1, 0), "user:2") is None and len(h) == 0


def test_after_a_rebase_to_no_stream_only_the_new_entries_are_covered() -> None:
    h = StreamHistory(size=10, ttl=60)
    h.rebase((500, 0))
    add(h, (501, 0))
    h.rebase((0, 0))  # the stream was lost
    assert h.since((501, 0), "x") is None
    add(h, (900, 0), (901, 0))
    assert h.since((501, 0), "x") is None  # an ID of the lost stream is not covered
    assert h.since((0, 0), "x") is None
    assert h.since((900, 0), "x") == Resume(frames=(b"frame 901-0",))


def test_stream_history_off_tracks_the_position_only() -> None:
    h = StreamHistory(size=0, ttl=60)
    h.rebase((1, 0))
    add(h, (2, 0))
    assert len(h) == 0 and h.last_id == "2-0"
    assert h.since((2, 0), "x") == Resume()
    assert h.since((1, 0), "x") is None
