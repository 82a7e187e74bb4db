"""The ``text/event-stream`` wire format: a pure encoder.

Nothing here does I/O. Rules cite the WHATWG HTML Living Standard, section 9.2
"Server-sent events" (https://html.spec.whatwg.org/multipage/server-sent-events.html),
called "the spec" below; ``#anchor`` names a subsection of that page.

Every frame the encoder writes is ``id``, ``event``, ``retry`` (each only if given),
one ``data`` line per line of data, then a blank line. Because ``id`` comes first,
``encode_id_line(i) + encode_fields(d, event=e)`` is exactly
``encode_fields(d, event=e, id=i)``: the hub encodes a body once, off its own thread,
and prepends the ID later.

The tests check every frame against a decoder that follows the spec step by step
(``tests/_decoder.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias

from ._options import check_int, check_str

__all__ = [
    "LAST_CHUNK",
    "EventData",
    "data_to_text",
    "encode_comment",
    "encode_fields",
    "encode_id_line",
    "encode_retry",
    "frame_chunk",
    "validate_data",
    "validate_event",
    "validate_id",
    "validate_retry",
    "with_id",
]

# HTTP/1.1's last-chunk (RFC 9112 section 7.1): the end of a chunked body.
LAST_CHUNK: Final = b"0\r\n\r\n"

EventData: TypeAlias = str | bytes | bytearray | memoryview | Mapping[str, Any] | Sequence[Any]
"""What an event's data may be: text, UTF-8 bytes, or a mapping/sequence sent as JSON."""

# #parsing-an-event-stream: a line ends with CRLF, a lone LF or a lone CR.
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
# CR/LF would end the field early; the spec ignores an ``id`` holding NUL
# (#processField) and we refuse NUL in ``event`` too, so one rule covers both
# names; a lone surrogate cannot be encoded as UTF-8 at all.
_BAD_NAME_CHAR: Final = re.compile("[\r\n\x00\ud800-\udfff]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_BYTES_LIKE: Final = (bytes, bytearray, memoryview)


def validate_event(event: object) -> str | None:
    """Return *event* if it can be sent as an event type (``None`` means "message").

    :raises TypeError: if *event* is neither ``str`` nor ``None``.
    :raises ValueError: if *event* holds CR, LF, NUL or a lone surrogate.
    """
    return None if event is None else _check_name("event", event)


def validate_id(id: object) -> str | None:
    """Return *id* if it can be sent as an event ID (``""`` resets the client's).

    :raises TypeError: if *id* is neither ``str`` nor ``None``.
    :raises ValueError: if *id* holds CR, LF, NUL or a lone surrogate.
    """
    return None if id is None else _check_name("id", id)


def validate_retry(retry: object) -> int | None:
    """Return *retry* if it can be sent as a reconnection time in milliseconds.

    :raises TypeError: if *retry* is not an ``int`` (``bool`` is refused) or ``None``.
    :raises ValueError: if *retry* is negative.
    """
    return None if retry is None else _check_retry(retry)


def validate_data(data: object) -> None:
    """Check that *data* has a type :func:`data_to_text` accepts.

    Cheap: bytes are not decoded and mappings are not serialised here.

    :raises TypeError: if *data* is not str, bytes-like, a mapping or a sequence.
    """
    if not isinstance(data, (str, *_BYTES_LIKE, Mapping, Sequence)):
        raise TypeError(
            "event data must be str, bytes, dict or list (or another Mapping or "
            f"Sequence), not {type(data).__name__}"
        )


def data_to_text(data: object, json_default: Callable[[Any], Any] | None = None) -> str:
    """Turn event data into the text sent in its ``data:`` lines.

    ``str`` is sent as is, bytes-like data must be UTF-8 (the spec allows no other
    encoding), and a mapping or sequence is sent as compact JSON (no NaN or
    infinity, which ``JSON.parse`` rejects). Inside it, a value JSON has no type
    for (a ``datetime``, a ``Decimal``, a dataclass) is given to *json_default*,
    which returns something JSON can encode or raises ``TypeError``
    (``json.dumps``'s ``default``).

    :raises ValueError: if bytes are not UTF-8, or JSON finds a circular reference
        or a non-finite float.
    :raises TypeError: if *data* (or a value inside it) has an unsupported type.
    """
    if isinstance(data, str):
        return data
    validate_data(data)
    if isinstance(data, _BYTES_LIKE):
        raw = bytes(data)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"event data must be UTF-8; byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start} is not"
            ) from None
    kind = type(data).__name__
    try:
        return json.dumps(
            data, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
            default=_to_json if json_default is None else _chain(json_default),
        )
    except TypeError as exc:
        raise TypeError(f"event data ({kind}) is not JSON-serialisable: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"event data ({kind}) is not JSON-serialisable: {exc}") from exc


def encode_fields(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """Encode one complete frame: ``id``, ``event``, ``retry``, ``data`` lines, blank line.

    An empty *event* is left out: the spec dispatches an empty event type as
    "message" (#dispatchMessage, step 6). Each line of *data* (split on CRLF, CR
    and LF) gets its own ``data:`` line, so ``""`` is one empty ``data:`` line,
    which still dispatches an event with empty data. Every value follows
    ``": "``; a parser strips exactly that one space (#event-stream-interpretation),
    so values that begin with a space survive.

    :param data: the event's text; see :func:`data_to_text` for other types.
    :raises TypeError: if *data* is not ``str``, or a field has the wrong type.
    :raises ValueError: if a field is invalid (see the ``validate_*`` functions)
        or *data* holds a lone surrogate.
    """
    head = encode_id_line(id) if id is not None else b""
    if event := validate_event(event):
        head += f"event: {event}\n".encode()
    if retry is not None:
        head += f"retry: {_check_retry(retry)}\n".encode()
    return head + _encode_lines("data: ", "data", data)


def encode_id_line(id: str) -> bytes:
    """Encode ``id: <id>\\n``, to put in front of a body from :func:`encode_fields`.

    :raises TypeError: if *id* is not ``str``.
    :raises ValueError: if *id* holds CR, LF, NUL or a lone surrogate.
    """
    return f"id: {_check_name('id', id)}\n".encode()


def with_id(event_id: str, body: bytes) -> bytes:
    """An event as streamed: ``id: <event_id>`` then *body* (from :func:`encode_fields`,
    without an ID). The one place a broadcast's frame is built (the hub's history
    and the backplane's both use it). *event_id* is one the hub or the backplane
    made (ASCII, no CR/LF/NUL), so it is not checked again here; user input goes
    through :func:`encode_id_line`."""
    return b"id: " + event_id.encode("ascii") + b"\n" + body


def encode_comment(text: str) -> bytes:
    """Encode a comment frame (``: <text>``, one line per line of *text*), e.g. a keep-alive.

    The spec ignores lines that start with a colon (#event-stream-interpretation);
    proxies still see traffic, which is what keeps idle connections open.

    :raises TypeError: if *text* is not ``str``.
    :raises ValueError: if *text* holds a lone surrogate.
    """
    return _encode_lines(": ", "comment", text)


def encode_retry(ms: int) -> bytes:
    """Encode a frame that only sets the client's reconnection time to *ms* milliseconds.

    It dispatches no event: its data buffer stays empty (#dispatchMessage, step 2).

    :raises TypeError: if *ms* is not an ``int`` (``bool`` is refused).
    :raises ValueError: if *ms* is negative.
    """
    return f"retry: {_check_retry(ms)}\n\n".encode()


def frame_chunk(frame: bytes) -> bytes:
    """*frame* as one HTTP/1.1 chunk (RFC 9112 section 7.1), byte for byte as
    gunicorn frames a yielded ``bytes`` (``gunicorn.util.write_chunk``: upper-case
    hex size, CRLF, data, CRLF), so a stream's body reads the same whoever wrote
    each chunk. An empty *frame* would be the last-chunk: never framed here."""
    return b"%X\r\n%b\r\n" % (len(frame), frame)


def _check_name(field: str, value: object) -> str:
    value = check_str(field, value, empty=True)
    bad = _BAD_NAME_CHAR.search(value)
    if bad is not None:
        raise ValueError(
            f"{field} must not contain CR, LF, NUL or a lone surrogate; {value!r} has "
            f"U+{ord(bad.group()):04X} at offset {bad.start()}"
        )
    return value


def _check_retry(retry: object) -> int:
    # #processField: only ASCII digits are a reconnection time, so no sign.
    return int(check_int("retry", retry, 0, unit="milliseconds"))


def _encode_lines(prefix: str, field: str, text: object) -> bytes:
    text = check_str(field, text, empty=True)
    # A lone CR is a line break too (#parsing-an-event-stream), so split on all three.
    lines = _LINE_BREAK.split(text) if "\r" in text else text.split("\n")
    out = prefix + ("\n" + prefix).join(lines) + "\n\n"
    try:
        return out.encode()
    except UnicodeEncodeError:
        bad = _SURROGATE.search(text)
        assert bad is not None  # the only str that UTF-8 cannot encode
        raise ValueError(
            f"{field} must be encodable as UTF-8; U+{ord(bad.group()):04X} at offset "
            f"{bad.start()} is a lone surrogate"
        ) from None


def _chain(json_default: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def default(value: object) -> object:
        if isinstance(value, (Mapping, Sequence)) and not isinstance(value, _BYTES_LIKE):
            return _to_json(value)
        return json_default(value)

    return default


def _to_json(value: object) -> object:
    # json.dumps only knows dict, list and tuple; honour the wider EventData alias.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, _BYTES_LIKE):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
