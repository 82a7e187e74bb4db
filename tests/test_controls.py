"""Control entries' bookkeeping on the hub thread (pure: no thread, no broker)."""

from __future__ import annotations

from sse_kit._controls import Awaited, Controls


def answered(awaited: Awaited) -> bool:
    return awaited.done.acquire(False)


def test_a_wait_placed_before_its_entry_is_answered_when_it_is_applied() -> None:
    controls = Controls()
    awaited = Awaited((5, 0))
    controls.wait(awaited)
    controls.applied((4, 0), 9)  # another entry
    assert not answered(awaited)
    controls.applied((5, 0), 3)
    assert answered(awaited) and awaited.result == 3


def test_a_wait_placed_after_its_entry_is_answered_at_once() -> None:
    controls = Controls()
    controls.applied((5, 0), 3)
    awaited = Awaited((5, 0))
    controls.wait(awaited)
    assert answered(awaited) and awaited.result == 3


def test_each_entry_is_applied_once() -> None:
    controls = Controls()
    assert controls.is_new((5, 0))
    controls.applied((5, 0), 1)
    assert not controls.is_new((5, 0)) and not controls.is_new((4, 9))
    assert controls.is_new((5, 1))


def test_only_recent_counts_are_kept_and_an_older_entry_answers_zero() -> None:
    controls = Controls()
    for ms in range(1, 101):
        controls.applied((ms, 0), ms)
    old, recent = Awaited((1, 0)), Awaited((100, 0))
    controls.wait(old)
    controls.wait(recent)
    assert answered(old) and old.result == 0
    assert answered(recent) and recent.result == 100


def test_waits_the_hub_will_never_answer_are_released() -> None:
    controls = Controls()
    skipped, later, last = Awaited((5, 0)), Awaited((9, 0)), Awaited((12, 0))
    for awaited in (skipped, later, last):
        controls.wait(awaited)
    controls.release((8, 0))  # the reader continues after 8-0: 5-0 will never be read here
    assert answered(skipped) and skipped.result == 0
    assert not answered(later)
    controls.release(None)  # the hub stops
    assert answered(later) and answered(last)
