"""The wire codec: exact encoder output, the spec's own decoder examples, and round trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_kit._wire import data_to_text, encode_comment, encode_fields, encode_id_line, encode_retry
from tests._decoder import DecodedEvent, SSEDecoder, decode


def frame(data: object, **fields: Any) -> bytes:
    return encode_fields(data_to_text(data), **fields)


def message(
    data: str, id: str = "", event: str = "message", retry: int | None = None
) -> DecodedEvent:
    return DecodedEvent(event=event, data=data, id=id, retry=retry)


ENCODED: list[Any] = [
    pytest.param(lambda: frame("hello"), b"data: hello\n\n", id="simple"),
    pytest.param(lambda: frame("a\nb"), b"data: a\ndata: b\n\n", id="lf"),
    pytest.param(lambda: frame("a\r\nb"), b"data: a\ndata: b\n\n", id="crlf"),
    pytest.param(lambda: frame("a\rb"), b"data: a\ndata: b\n\n", id="lone-cr"),
    pytest.param(lambda: frame("a\r\n\rb"), b"data: a\ndata: \ndata: b\n\n", id="crlf-then-cr"),
    pytest.param(lambda: frame("a\n"), b"data: a\ndata: \n\n", id="trailing-newline"),
    pytest.param(lambda: frame(""), b"data: \n\n", id="empty"),
    pytest.param(lambda: frame("  two"), b"data:   two\n\n", id="leading-spaces"),
    pytest.param(lambda: frame("a: b"), b"data: a: b\n\n", id="colon"),
    pytest.param(lambda: frame("a\x00b"), b"data: a\x00b\n\n", id="nul-in-data"),
    pytest.param(
        lambda: frame("a\u2028b\x85c\x0bd"),
        "data: a\u2028b\x85c\x0bd\n\n".encode(),
        id="not-sse-line-breaks",
    ),
    pytest.param(lambda: frame("héllo ✓ 😀"), "data: héllo ✓ 😀\n\n".encode(), id="unicode"),
    pytest.param(
        lambda: frame({"b": 1, "a": [1, 2.5], "é": None, "t": "x\ny"}),
        'data: {"b":1,"a":[1,2.5],"é":null,"t":"x\\ny"}\n\n'.encode(),
        id="json-dict",
    ),
    pytest.param(lambda: frame([1, "x", True]), b'data: [1,"x",true]\n\n', id="json-list"),
    pytest.param(lambda: frame((1, 2)), b"data: [1,2]\n\n", id="json-tuple"),
    pytest.param(
        lambda: frame(MappingProxyType({"r": range(2)})),
        b'data: {"r":[0,1]}\n\n',
        id="json-other-mapping-and-sequence",
    ),
    pytest.param(lambda: frame("héllo".encode()), "data: héllo\n\n".encode(), id="bytes"),
    pytest.param(lambda: frame(bytearray(b"a\nb")), b"data: a\ndata: b\n\n", id="bytearray"),
    pytest.param(lambda: frame(memoryview(b"x")), b"data: x\n\n", id="memoryview"),
    pytest.param(
        lambda: frame("x", retry=1500, id="7", event="update"),
        b"id: 7\nevent: update\nretry: 1500\ndata: x\n\n",
        id="field-order",
    ),
    pytest.param(lambda: frame("x", event=""), b"data: x\n\n", id="empty-event-left-out"),
    pytest.param(lambda: frame("x", id=""), b"id: \ndata: x\n\n", id="empty-id-kept"),
    pytest.param(
        lambda: frame("x", event=" e", id=" 1"),
        b"id:  1\nevent:  e\ndata: x\n\n",
        id="leading-space-in-names",
    ),
    pytest.param(lambda: frame("x", retry=0), b"retry: 0\ndata: x\n\n", id="retry-zero"),
    pytest.param(lambda: encode_id_line("42"), b"id: 42\n", id="id-line"),
    pytest.param(
        lambda: encode_comment("keepalive 1700000000"),
        b": keepalive 1700000000\n\n",
        id="comment",
    ),
    pytest.param(lambda: encode_comment("a\r\nb\rc"), b": a\n: b\n: c\n\n", id="comment-lines"),
    pytest.param(lambda: encode_comment(""), b": \n\n", id="empty-comment"),
    pytest.param(lambda: encode_retry(3000), b"retry: 3000\n\n", id="retry-frame"),
]


@pytest.mark.parametrize(("encode", "expected"), ENCODED)
def test_encode(encode: Callable[[], bytes], expected: bytes) -> None:
    assert encode() == expected


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


REJECTED: list[Any] = [
    pytest.param(lambda: frame("x", id="a\nb"), ValueError, "id", id="lf-in-id"),
    pytest.param(lambda: frame("x", id="a\rb"), ValueError, "id", id="cr-in-id"),
    pytest.param(lambda: frame("x", id="a\x00b"), ValueError, "id", id="nul-in-id"),
    pytest.param(lambda: frame("x", id="\ud800"), ValueError, "id", id="surrogate-in-id"),
    pytest.param(lambda: frame("x", id=7), TypeError, "id", id="int-id"),
    pytest.param(lambda: frame("x", event="a\nb"), ValueError, "event", id="lf-in-event"),
    pytest.param(lambda: frame("x", event="a\rb"), ValueError, "event", id="cr-in-event"),
    pytest.param(lambda: frame("x", event="a\x00"), ValueError, "event", id="nul-in-event"),
    pytest.param(lambda: frame("x", event=b"e"), TypeError, "event", id="bytes-event"),
    pytest.param(lambda: frame("x", retry="100"), TypeError, "retry", id="str-retry"),
    pytest.param(lambda: frame("x", retry=1.5), TypeError, "retry", id="float-retry"),
    pytest.param(lambda: frame("x", retry=True), TypeError, "retry", id="bool-retry"),
    pytest.param(lambda: frame("x", retry=-1), ValueError, "retry", id="negative-retry"),
    pytest.param(
        lambda: encode_retry(None),  # type: ignore[arg-type]
        TypeError,
        "retry",
        id="none-retry-frame",
    ),
    pytest.param(lambda: encode_retry(-5), ValueError, "retry", id="negative-retry-frame"),
    pytest.param(
        lambda: encode_id_line(None),  # type: ignore[arg-type]
        TypeError,
        "id",
        id="none-id-line",
    ),
    pytest.param(lambda: encode_id_line("a\nb"), ValueError, "id", id="lf-in-id-line"),
    pytest.param(lambda: frame(b"a\xffb"), ValueError, "data", id="invalid-utf8"),
    pytest.param(lambda: frame("\udc80"), ValueError, "data", id="surrogate-in-data"),
    pytest.param(lambda: frame(None), TypeError, "data", id="none-data"),
    pytest.param(lambda: frame(42), TypeError, "data", id="int-data"),
    pytest.param(lambda: frame({1, 2}), TypeError, "data", id="set-data"),
    pytest.param(lambda: frame({"a": object()}), TypeError, "data", id="object-in-json"),
    pytest.param(lambda: frame({"a": b"x"}), TypeError, "data", id="bytes-in-json"),
    pytest.param(lambda: frame([float("nan")]), ValueError, "data", id="nan-in-json"),
    pytest.param(lambda: frame(_circular()), ValueError, "data", id="circular-json"),
    pytest.param(
        lambda: encode_fields(b"x"),  # type: ignore[arg-type]
        TypeError,
        "data",
        id="bytes-to-encode-fields",
    ),
    pytest.param(lambda: encode_comment("\udfff"), ValueError, "comment", id="surrogate-comment"),
    pytest.param(
        lambda: encode_comment(1),  # type: ignore[arg-type]
        TypeError,
        "comment",
        id="int-comment",
    ),
]


@pytest.mark.parametrize(("encode", "error", "field"), REJECTED)
def test_encode_rejects(encode: Callable[[], bytes], error: type[Exception], field: str) -> None:
    with pytest.raises(error, match=rf"\b{field}\b"):
        encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\xffb", "event data must be UTF-8; byte 0xff at offset 1 is not"),
        (
            {1},
            "event data must be str, bytes, dict or list (or another Mapping or Sequence), not set",
        ),
    ],
)
def test_data_error_messages(data: object, expected: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        data_to_text(data)
    assert str(info.value) == expected


# Streams from the spec's own examples (#event-stream-interpretation), then one per rule.
DECODED: list[Any] = [
    pytest.param(b"data: YHOO\ndata: +2\ndata: 10\n\n", [message("YHOO\n+2\n10")], id="spec-stock"),
    pytest.param(
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n\n",
        [message("first event", "1"), message("second event"), message(" third event")],
        id="spec-comment-and-ids",
    ),
    pytest.param(
        b"data\n\ndata\ndata\n\ndata:", [message(""), message("\n")], id="spec-empty-data"
    ),
    pytest.param(b"data:test\n\ndata: test\n\n", [message("test")] * 2, id="spec-one-space"),
    pytest.param(b"data: a\rdata: b\r\r", [message("a\nb")], id="lone-cr"),
    pytest.param(b"data: a\r\ndata: b\r\n\r\n", [message("a\nb")], id="crlf"),
    pytest.param(b"data: a\r\n\rdata: b\n\n", [message("a"), message("b")], id="crlf-then-cr"),
    pytest.param(b"\xef\xbb\xbfdata: x\n\n", [message("x")], id="bom-stripped"),
    pytest.param(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", [], id="second-bom-is-not"),
    pytest.param(b"event: add\ndata: 1\n\n", [message("1", event="add")], id="event-type"),
    pytest.param(b"event:\ndata: x\n\n", [message("x")], id="empty-type-is-message"),
    pytest.param(b"event: lost\n\ndata: x\n\n", [message("x")], id="type-reset-without-data"),
    pytest.param(
        b"id: 7\ndata: a\n\ndata: b\n\n", [message("a", "7"), message("b", "7")], id="id-persists"
    ),
    pytest.param(
        b"id: 5\ndata: a\n\nid: 6\x00\ndata: b\n\n",
        [message("a", "5"), message("b", "5")],
        id="id-with-nul-ignored",
    ),
    pytest.param(b"id: 3\n\ndata: x\n\n", [message("x", "3")], id="id-only-block"),
    pytest.param(
        "retry: 50\nretry: 1a\nretry: -1\nretry:\nretry: ²\ndata: x\n\ndata: y\n\n".encode(),
        [message("x", retry=50), message("y")],
        id="retry-ascii-digits-only",
    ),
    pytest.param(b"Data: x\nfoo: bar\ndata: y\n\n", [message("y")], id="unknown-and-case"),
    pytest.param(b"data: a:b\n\n", [message("a:b")], id="colon-in-value"),
    pytest.param(b"data: \xff\n\n", [message("\ufffd")], id="invalid-utf8-replaced"),
    pytest.param(b":\n\n: hi\n\n\n\n", [], id="comments-and-blank-lines"),
    pytest.param(b"data: x\n \ndata: y\n\n", [message("x\ny")], id="space-line-is-not-blank"),
    pytest.param(b"data: x\n", [], id="unterminated-event-discarded"),
]


@pytest.mark.parametrize(("stream", "expected"), DECODED)
def test_decode(stream: bytes, expected: list[DecodedEvent]) -> None:
    assert decode(stream) == expected


def test_retry_frame_sets_retry_but_dispatches_nothing() -> None:
    assert SSEDecoder().retry is None
    decoder = SSEDecoder()
    assert decoder.feed(encode_retry(3000)) == []
    assert decoder.retry == 3000
    assert decoder.feed(b"data: x\n\n") == [message("x")]  # retry is per block
    assert decoder.retry == 3000


def test_last_event_id_is_set_at_the_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\n") == []
    assert decoder.last_event_id == ""  # still only in the buffer (#dispatchMessage step 1)
    decoder.feed(b"\n")
    assert decoder.last_event_id == "5"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"data: a\r", b"\ndata: b\r\n\r\n"], [message("a\nb")], id="crlf-split"),
        pytest.param([b"data: a\r", b"", b"\n\r", b"\n"], [message("a")], id="crlf-split-empty"),
        pytest.param([b"data: \xc3", b"\xa9\n\n"], [message("é")], id="utf8-split"),
        pytest.param([b"\xef", b"\xbb", b"\xbfdata: x\n\n"], [message("x")], id="bom-split"),
        pytest.param([b"data: x\n\n", b"\xef\xbb\xbfdata: y\n\n"], [message("x")], id="late-bom"),
    ],
)
def test_decode_chunks(chunks: list[bytes], expected: list[DecodedEvent]) -> None:
    decoder = SSEDecoder()
    assert [event for chunk in chunks for event in decoder.feed(chunk)] == expected


def test_lone_cr_at_chunk_end_dispatches_at_once() -> None:
    assert SSEDecoder().feed(b"data: a\r\r") == [message("a")]


def test_id_line_prepends_to_a_body() -> None:
    body = encode_fields("x", event="e", retry=5)
    assert encode_id_line("9") + body == encode_fields("x", event="e", id="9", retry=5)


# --- properties ---------------------------------------------------------------------------

_SPECIAL = st.sampled_from(["\r", "\n", "\x00", " ", ":", "\ufeff", "\ud800", "é", "😀"])
_ANY_TEXT = st.text(st.one_of(_SPECIAL, st.characters(exclude_categories=())))
# Sendable text: anything but a lone surrogate (category Cs), which UTF-8 cannot carry.
_DATA = st.text(
    st.one_of(_SPECIAL.filter(lambda c: c != "\ud800"), st.characters(exclude_categories=("Cs",)))
)
_NAME = st.text(
    st.one_of(
        st.sampled_from([" ", ":", "\ufeff"]),
        st.characters(exclude_characters="\r\n\x00", exclude_categories=("Cs",)),
    )
)
_RETRY = st.none() | st.integers(min_value=0, max_value=2**63)
_FIELDS = st.fixed_dictionaries(
    {"data": _DATA, "event": st.none() | _NAME, "id": st.none() | _NAME, "retry": _RETRY}
)


def _normalised(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _sendable_name(name: str | None) -> bool:
    return name is None or not (_has_surrogate(name) or any(c in name for c in "\r\n\x00"))


def _expected(fields: dict[str, Any], last_id: str = "") -> DecodedEvent:
    event_id = last_id if fields["id"] is None else fields["id"]
    return message(
        _normalised(fields["data"]), event_id, fields["event"] or "message", fields["retry"]
    )


def _feed_in_pieces(stream: bytes, cuts: list[int]) -> list[DecodedEvent]:
    decoder, events, start = SSEDecoder(), [], 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        events += decoder.feed(stream[start:cut])
        start = cut
    return events


@given(data=_ANY_TEXT, event=st.none() | _ANY_TEXT, id=st.none() | _ANY_TEXT, retry=_RETRY)
def test_frame_round_trips_or_is_refused(
    data: str, event: str | None, id: str | None, retry: int | None
) -> None:
    fields = {"data": data, "event": event, "id": id, "retry": retry}
    if _has_surrogate(data) or not (_sendable_name(event) and _sendable_name(id)):
        with pytest.raises(ValueError):
            encode_fields(data, event=event, id=id, retry=retry)
    else:
        assert decode(encode_fields(data, event=event, id=id, retry=retry)) == [_expected(fields)]


@given(fields=_FIELDS, data=st.data())
def test_frame_decodes_the_same_however_it_is_cut(
    fields: dict[str, Any], data: st.DataObject
) -> None:
    stream = encode_fields(**fields)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream))))
    assert _feed_in_pieces(stream, cuts) == [_expected(fields)]


_ITEMS = st.lists(
    st.tuples(st.just("frame"), _FIELDS)
    | st.tuples(st.just("comment"), _DATA)
    | st.tuples(st.just("retry"), st.integers(min_value=0)),
    max_size=8,
)


@given(items=_ITEMS, data=st.data())
def test_concatenated_frames_decode_one_to_one(
    items: list[tuple[str, Any]], data: st.DataObject
) -> None:
    stream, expected, last_id = b"", [], ""
    for kind, item in items:
        if kind == "frame":
            stream += encode_fields(**item)
            expected.append(_expected(item, last_id))
            last_id = expected[-1].id
        else:  # comments and retry frames dispatch nothing
            stream += encode_comment(item) if kind == "comment" else encode_retry(item)
    assert decode(stream) == expected
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream))))
    assert _feed_in_pieces(stream, cuts) == expected


@given(fields=_FIELDS)
def test_id_line_contract(fields: dict[str, Any]) -> None:
    item_id = fields.pop("id") or ""
    assert encode_id_line(item_id) + encode_fields(**fields) == encode_fields(**fields, id=item_id)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


@given(value=st.lists(_JSON) | st.dictionaries(st.text(), _JSON))
def test_json_data_round_trips(value: Any) -> None:
    (event,) = decode(frame(value))
    assert json.loads(event.data) == value
    assert "\n" not in event.data  # JSON escapes line breaks: always one data line
