"""A spec-exact ``text/event-stream`` decoder, for the tests (and bench/): what an
``EventSource`` would dispatch from the bytes a stream wrote.

Rules cite the WHATWG HTML Living Standard, section 9.2 "Server-sent events"
(https://html.spec.whatwg.org/multipage/server-sent-events.html); ``#anchor`` names
a subsection of that page.

Round trip: decoding a frame from :mod:`sse_kit._wire` gives back the event type,
the ID and the data, except that every ``\\r\\n`` and lone ``\\r`` in the data comes
back as ``\\n`` (the spec has no way to send which line break a line ended with).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["DecodedEvent", "SSEDecoder", "decode"]

# #parsing-an-event-stream: a line ends with CRLF, a lone LF or a lone CR.
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """One event as an ``EventSource`` would dispatch it.

    :ivar event: the event type; "message" when the frame named none.
    :ivar data: the ``data`` lines joined with ``\\n``.
    :ivar id: the last event ID string at dispatch; it persists across events.
    :ivar retry: the reconnection time set by a ``retry`` field since the previous
        blank line, else ``None``; :attr:`SSEDecoder.retry` keeps the current one.
    """

    event: str
    data: str
    id: str
    retry: int | None = None


class SSEDecoder:
    """An incremental ``text/event-stream`` parser that follows the spec step by step.

    Feed it bytes cut anywhere (inside a CRLF pair or a UTF-8 sequence); it returns
    the events each chunk completes. An event still open when the stream ends is
    never dispatched (#event-stream-interpretation), so there is no ``flush()``.
    """

    def __init__(self) -> None:
        # #event-stream-interpretation: "UTF-8 decode" replaces invalid bytes with U+FFFD.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # a character has been decoded; a later BOM is data
        self._skip_lf = False  # the last chunk ended in CR; a leading LF completes a CRLF
        self._partial: list[str] = []  # pieces of the line not yet ended
        self._data: list[str] = []  # the data buffer, one item per ``data`` line
        self._event_type = ""  # the event type buffer
        self._id_buffer = ""  # the last event ID buffer
        self._last_event_id = ""  # the last event ID string
        self._frame_retry: int | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str:
        """The ID a browser would send as ``Last-Event-ID`` when it reconnects."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time (ms) the stream last set, or ``None`` if it never did."""
        return self._retry

    def feed(self, chunk: bytes) -> list[DecodedEvent]:
        """Parse *chunk* and return the events it completes, in order."""
        text = self._utf8.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            # "UTF-8 decode" strips one leading BOM (#event-stream-interpretation).
            text = text.removeprefix("\ufeff")
        if self._skip_lf:
            self._skip_lf = False
            text = text.removeprefix("\n")
        # Split only the new text, so a long line fed in small chunks stays linear.
        *lines, tail = _LINE_BREAK.split(text)
        if lines:
            lines[0] = "".join(self._partial) + lines[0]
            self._partial = []
        self._partial.append(tail)
        # A CR at the end ends its line now, so CR-only streams are not held back.
        self._skip_lf = text.endswith("\r")
        return [event for event in map(self._line, lines) if event is not None]

    def _line(self, line: str) -> DecodedEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment
        # No colon: the whole line is the field name and the value is empty.
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")  # exactly one space, never more
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self._frame_retry = int(value)
        return None  # unknown fields are ignored; names are case-sensitive

    def _dispatch(self) -> DecodedEvent | None:
        # #dispatchMessage step 1: the ID string is set even if nothing is dispatched.
        self._last_event_id = self._id_buffer
        retry, self._frame_retry = self._frame_retry, None
        event_type, self._event_type = self._event_type, ""
        if not self._data:
            return None  # step 2: an empty data buffer dispatches nothing
        # Steps 3-7: drop the final LF (implicit in the join), default the type.
        data, self._data = "\n".join(self._data), []
        return DecodedEvent(event_type or "message", data, self._last_event_id, retry)


def decode(stream: bytes) -> list[DecodedEvent]:
    """Decode a whole stream; an unterminated last event is discarded, as the spec says."""
    return SSEDecoder().feed(stream)
