"""Reading a Redis stream's replies: entries, the stream's state, and whether it
still holds every entry after an ID.

Pure functions over what redis-py returns, parsed (``redis.Redis``) or raw (a
cluster transaction does not parse); no I/O, so the rules are tested on their own.
An entry is ``p <pattern> b <encoded event>``; a *genesis* entry (``g 1``) starts
every stream, so that a stream made anew is told apart from a trimmed one; a
*control* entry is ``x <action> t <pattern>`` (no ``p`` field, so a reader that
predates control entries skips it as it skips a genesis entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ._backplane import Control, Entry, Item
from ._history import RESET_EXPIRED, RESET_LOST, RESET_UNKNOWN, StreamKey, parse_stream_id

__all__ = [
    "ACTION",
    "BODY",
    "GENESIS",
    "PATTERN",
    "TARGET",
    "ZERO",
    "Info",
    "as_str",
    "check",
    "entries",
    "format_id",
    "info_of",
    "items",
    "key_of",
    "xrange_rows",
    "xread_rows",
]

# Entry fields. A genesis entry has only GENESIS; readers skip it.
PATTERN: Final = b"p"
BODY: Final = b"b"
GENESIS: Final = b"g"
# Control entry fields: the action and the pattern it acts on.
ACTION: Final = b"x"
TARGET: Final = b"t"
ZERO: Final = (0, 0)

# Where the stream stands, from XINFO STREAM: (last-generated-id, first entry's ID,
# whether the first entry is a genesis entry); None when the stream does not exist.
Info = tuple[StreamKey, StreamKey | None, bool] | None


def as_str(value: bytes | str) -> str:
    """*value* as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


def key_of(value: bytes | str) -> StreamKey:
    """An entry ID as a pair of ints.

    :raises ValueError: if it is not one (a reply this module cannot read).
    """
    key = parse_stream_id(as_str(value))
    if key is None:
        raise ValueError(f"expected a stream entry ID, got {value!r}")
    return key


def _fields(raw: Any) -> Mapping[bytes, Any]:
    """An entry's fields: a dict, or the flat ``[k, v, k, v]`` list of a raw reply."""
    if isinstance(raw, Mapping):
        return raw
    items = iter(raw)
    return dict(zip(items, items, strict=True))


def info_of(reply: object) -> Info:
    """Parse an XINFO STREAM reply, parsed by redis-py or raw (a cluster transaction
    returns it raw), or the error it gave for a missing key."""
    if isinstance(reply, Exception):  # the error reply, kept by execute(raise_on_error=False)
        if "no such key" in str(reply).lower():
            return None
        raise reply
    if not isinstance(reply, Mapping):  # a flat [k, v, k, v] list
        reply = _fields(reply)
    info = {as_str(k): v for k, v in reply.items()}
    last, first = key_of(info["last-generated-id"]), info.get("first-entry")
    if not first:
        return last, None, False
    return last, key_of(first[0]), GENESIS in _fields(first[1])


def check(info: Info, after: StreamKey) -> str | None:
    """Whether the stream still holds every entry after *after*; if not, why not."""
    if info is None:
        return None if after == ZERO else RESET_LOST
    last, first, genesis = info
    if after > last:
        return RESET_UNKNOWN  # from the future, or from a lost stream with later IDs
    if first is not None and first > after:
        if genesis:
            # The stream began after *after*: only a position taken while there was
            # no stream ("0-0") continues in it; any other ID is from a lost stream.
            return None if after == ZERO else RESET_LOST
        return RESET_EXPIRED  # trimmed by maxlen
    return None


def xrange_rows(reply: Any) -> list[tuple[Any, Mapping[bytes, Any]]]:
    """The ``(id, fields)`` rows of an XRANGE reply (parsed or raw)."""
    return [(row[0], _fields(row[1])) for row in reply or ()]


def xread_rows(reply: Any) -> list[tuple[Any, Mapping[bytes, Any]]]:
    """The rows of a one-stream XREAD reply: ``[[stream, rows]]`` (RESP2, parsed or
    raw), ``{stream: rows}`` or ``{stream: [rows]}`` (RESP3), or ``None``."""
    if not reply:
        return []
    rows = next(iter(reply.values())) if isinstance(reply, Mapping) else reply[0][1]
    if rows and len(rows) == 1 and rows[0] and isinstance(rows[0][0], (list, tuple)):
        rows = rows[0]
    return xrange_rows(rows)


def entries(rows: list[tuple[Any, Mapping[bytes, Any]]]) -> list[Entry]:
    """The events among *rows* (what a resume replays): genesis and control
    entries are skipped (a control acted on the streams open when it was read)."""
    return [item for item in items(rows) if isinstance(item, tuple)]


def items(rows: list[tuple[Any, Mapping[bytes, Any]]]) -> list[Item]:
    """The events and control entries among *rows*, in log order (what a reader
    hands its hub); genesis entries are skipped."""
    out: list[Item] = []
    for raw_id, fields in rows:
        pattern = fields.get(PATTERN)
        if pattern is not None:
            event_id = as_str(raw_id)
            out.append((event_id, key_of(event_id), as_str(pattern), bytes(fields[BODY])))
        elif (action := fields.get(ACTION)) is not None:
            event_id = as_str(raw_id)
            out.append(Control(event_id, key_of(event_id), as_str(action),
                               as_str(fields[TARGET])))
    return out


def format_id(key: StreamKey) -> str:
    """A pair of ints as an entry ID."""
    return f"{key[0]}-{key[1]}"
