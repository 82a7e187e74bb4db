"""The history ring: IDs, bounds, and what a Last-Event-ID resumes."""

from __future__ import annotations

import sys

import pytest

from sse_kit._history import History
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
