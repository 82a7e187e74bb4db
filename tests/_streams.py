"""In-process stream readers for unit tests: serve_sse() driven like a WSGI server would."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from werkzeug.test import EnvironBuilder

from sse_kit import Hub, serve_sse
from tests._decoder import DecodedEvent, SSEDecoder


def environ(path: str = "/events", **headers: str) -> dict[str, Any]:
    """A WSGI environ for a GET of *path* with *headers*."""
    return EnvironBuilder(path=path, headers=headers).get_environ()


class Reader:
    """Iterates one stream in a thread, as a server's worker thread would, and
    hands decoded events to the test through a queue."""

    def __init__(self, hub: Hub, client_id: str, *, last_event_id: str | None = None,
                 **kwargs: Any) -> None:
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self.response = serve_sse(hub, environ(**headers), client_id, **kwargs)
        assert self.response.status_code == 200, self.response.get_data()
        self.body = self.response.response
        self.decoder = SSEDecoder()
        self.events: queue.Queue[DecodedEvent | None] = queue.Queue()
        self.raw: list[bytes] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for chunk in self.body:
                self.raw.append(chunk)
                for ev in self.decoder.feed(chunk):
                    self.events.put(ev)
        finally:
            self.events.put(None)

    def next(self, timeout: float = 10.0) -> DecodedEvent:
        """The next event (skipping nothing); fails if the stream ended."""
        ev = self.events.get(timeout=timeout)
        assert ev is not None, "the stream ended"
        return ev

    def take(
        self, n: int, *, event: str | None = None, timeout: float = 10.0
    ) -> list[DecodedEvent]:
        """The next *n* events of type *event* (others are skipped)."""
        out: list[DecodedEvent] = []
        while len(out) < n:
            ev = self.next(timeout)
            if event is None or ev.event == event:
                out.append(ev)
        return out

    def rest(self, timeout: float = 10.0) -> Iterator[DecodedEvent]:
        """The remaining events until the stream ends."""
        while (ev := self.events.get(timeout=timeout)) is not None:
            yield ev

    def ended(self, timeout: float = 10.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """What a server does when the client goes away."""
        self.body.close()
