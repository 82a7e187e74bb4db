"""The chaos soak's pass/fail rule (bench/chaos/ledger.py) and its SSE parser."""

from __future__ import annotations

import pytest

from bench.chaos.ledger import Ledger
from bench.chaos.sse import Message, Parser

# (events as (publisher, seq, ok), resets before the index, expected violation kinds)
CASES = [
    ([("a", 1, 0), ("a", 2, 1), ("a", 3, 2)], {}, []),
    ([("a", 1, 0), ("a", 1, 0)], {}, ["duplicate"]),
    ([("a", 2, 1), ("a", 1, 0)], {}, ["reorder"]),
    ([("a", 1, 0), ("a", 3, 2)], {}, ["gap"]),  # 2 was published and never arrived
    ([("a", 1, 0), ("a", 3, 1)], {}, []),  # 2 failed to publish: no gap to explain
    ([("a", 1, 0), ("a", 5, 4)], {1: "lost"}, []),  # a reset announced the loss
    ([("a", 1, 0), ("a", 5, 4), ("a", 7, 6)], {1: "lost"}, ["gap"]),  # one reset, one gap
    ([("a", 1, 0), ("b", 9, 8), ("a", 2, 1)], {}, []),  # publishers are independent
]


@pytest.mark.parametrize(("events", "resets", "kinds"), CASES)
def test_ledger(events: list[tuple[str, int, int]], resets: dict[int, str],
                kinds: list[str]) -> None:
    ledger = Ledger("c:1")
    for index, event in enumerate(events):
        if index in resets:
            ledger.reset(resets[index])
        ledger.event(*event)
    assert [v.kind for v in ledger.violations] == kinds
    assert ledger.delivered == len(events)


def test_a_fresh_stream_owes_nothing_from_before() -> None:
    ledger = Ledger("c:1")
    ledger.event("a", 1, 0)
    ledger.fresh()
    ledger.event("a", 9, 8)
    ledger.event("a", 2, 1)  # fresh again only on the next fresh(): this is a reorder
    assert [v.kind for v in ledger.violations] == ["reorder"]


@pytest.mark.parametrize("split", [1, 2, 3, 5, 1000])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_parser_any_split_any_line_end(split: int, newline: bytes) -> None:
    wire = newline.join([b": hi", b"id: 1-1", b"event: connected", b"data: {}", b"",
                         b"data:a", b"data: b", b"", b"retry: 5", b"", b""])
    parser = Parser()
    out = []
    for start in range(0, len(wire), split):
        out += parser.feed(wire[start : start + split])
    assert out == [Message("connected", "{}", "1-1"), Message("message", "a\nb", None)]
    assert parser.last_event_id == "1-1"
    assert parser.comments == 1
