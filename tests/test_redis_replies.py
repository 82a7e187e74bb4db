"""Reading Redis stream replies (pure: the rules that decide a reset, and reply shapes)."""

from __future__ import annotations

from typing import Any

import pytest

from sse_kit._backplane import Control
from sse_kit._redis_replies import (
    ZERO,
    Info,
    check,
    entries,
    format_id,
    info_of,
    items,
    key_of,
    xrange_rows,
    xread_rows,
)

# A stream whose newest entry is 500-0 and whose first entry is 100-0.
TRIMMED: Info = ((500, 0), (100, 0), False)  # the first entry is an event: trimmed before it
BEGUN: Info = ((500, 0), (100, 0), True)  # the first entry is the genesis: nothing trimmed


@pytest.mark.parametrize(
    ("info", "after", "reason"),
    [
        (None, ZERO, None),  # no stream, and the position was taken while there was none
        (None, (50, 0), "lost"),  # no stream, but the client saw one: it was lost
        (TRIMMED, (100, 0), None),  # everything after the first entry is there
        (TRIMMED, (300, 7), None),
        (TRIMMED, (500, 0), None),  # up to date
        (TRIMMED, (99, 0), "expired"),  # what came before the first entry was trimmed
        (TRIMMED, ZERO, "expired"),
        (BEGUN, ZERO, None),  # the stream began after the position: all of it is new
        (BEGUN, (99, 0), "lost"),  # an ID from before this stream: from a lost one
        (BEGUN, (100, 0), None),
        (TRIMMED, (500, 1), "unknown"),  # newer than anything in the stream
        (((500, 0), None, False), (400, 0), None),  # an empty stream that reached 500-0
    ],
)
def test_what_a_stream_still_holds(info: Info, after: tuple[int, int], reason: str | None
                                   ) -> None:
    assert check(info, after) == reason


PARSED_INFO = {
    "length": 2,
    "last-generated-id": b"5-1",
    "first-entry": (b"5-0", {b"g": b"1"}),
    "last-entry": (b"5-1", {b"p": b"x", b"b": b"data: 1\n\n"}),
}
RAW_INFO = [b"length", 2, b"last-generated-id", b"5-1", b"first-entry", [b"5-0", [b"g", b"1"]],
            b"last-entry", [b"5-1", [b"p", b"x", b"b", b"data: 1\n\n"]]]


@pytest.mark.parametrize("reply", [PARSED_INFO, RAW_INFO], ids=["parsed", "raw"])
def test_xinfo_stream_parsed_or_raw(reply: Any) -> None:
    assert info_of(reply) == ((5, 1), (5, 0), True)


def test_xinfo_of_a_missing_stream_is_none_and_other_errors_raise() -> None:
    assert info_of(RuntimeError("ERR no such key")) is None
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        info_of(RuntimeError("WRONGTYPE Operation against a key holding the wrong kind"))


ROWS_PARSED = [(b"7-0", {b"g": b"1"}), (b"7-1", {b"p": b"user:*", b"b": b"data: hi\n\n"})]
ROWS_RAW = [[b"7-0", [b"g", b"1"]], [b"7-1", [b"p", b"user:*", b"b", b"data: hi\n\n"]]]
WANT = [("7-1", (7, 1), "user:*", b"data: hi\n\n")]


@pytest.mark.parametrize(
    "reply",
    [[[b"s", ROWS_PARSED]], [[b"s", ROWS_RAW]], {b"s": ROWS_PARSED}, {b"s": [ROWS_PARSED]}],
    ids=["resp2", "resp2-raw", "resp3", "resp3-nested"],
)
def test_xread_replies_give_the_events_and_skip_the_genesis(reply: Any) -> None:
    rows = xread_rows(reply)
    assert [r[0] for r in rows] == [b"7-0", b"7-1"]
    assert entries(rows) == WANT


def test_control_entries_come_in_log_order_and_a_replay_skips_them() -> None:
    rows = xrange_rows([*ROWS_RAW, [b"7-2", [b"x", b"disconnect", b"t", b"user:1"]],
                        [b"7-3", [b"p", b"user:*", b"b", b"data: after\n\n"]]])
    assert items(rows) == [
        *WANT, Control("7-2", (7, 2), "disconnect", "user:1"),
        ("7-3", (7, 3), "user:*", b"data: after\n\n")]
    assert entries(rows) == [*WANT, ("7-3", (7, 3), "user:*", b"data: after\n\n")]


def test_xrange_and_empty_replies() -> None:
    assert entries(xrange_rows(ROWS_RAW)) == WANT
    assert xread_rows(None) == [] and xread_rows([]) == [] and xrange_rows([]) == []


def test_ids() -> None:
    assert key_of(b"1700000000000-3") == (1700000000000, 3) == key_of("1700000000000-3")
    assert format_id((1700000000000, 3)) == "1700000000000-3"
    with pytest.raises(ValueError, match="stream entry ID"):
        key_of(b"nope")
