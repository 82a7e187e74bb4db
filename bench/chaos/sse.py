"""An incremental parser of the text/event-stream format; pure, no I/O.

Follows the WHATWG HTML "Server-sent events" section, "Event stream
interpretation": lines end with CRLF, LF or a lone CR (so a CR at the end of
the bytes so far waits for the next byte); a line starting with ``:`` is a
comment; ``field: value`` drops one leading space of the value; ``data`` lines
join with LF; an empty line dispatches the event; ``id`` (without NUL) sets the
last event ID, which persists across events.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Message:
    """One dispatched event."""

    event: str
    data: str
    id: str | None  # the ``id:`` field of this event, if it had one


class Parser:
    """Feed it the decoded body in any pieces; it returns the events they complete."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_event_id = ""
        self.comments = 0

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes; return the events they completed, in order."""
        self._buffer += data
        out: list[Message] = []
        start = 0
        buffer = self._buffer
        while True:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else len(buffer))
            if cr >= 0:
                if cr == len(buffer) - 1:
                    break  # a CR last: the next byte may be its LF
                end, after = cr, cr + (2 if buffer[cr + 1 : cr + 2] == b"\n" else 1)
            elif lf >= 0:
                end, after = lf, lf + 1
            else:
                break
            self._line(buffer[start:end].decode("utf-8"), out)
            start = after
        self._buffer = buffer[start:]
        return out

    def _line(self, line: str, out: list[Message]) -> None:
        if not line:
            if self._data:  # the spec: an empty data buffer dispatches nothing
                out.append(Message(self._event or "message", "\n".join(self._data), self._id))
            self._event, self._data, self._id = "", [], None
            return
        if line.startswith(":"):
            self.comments += 1
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = self.last_event_id = value
