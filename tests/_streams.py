"""In-process stream readers for unit tests: serve_sse() driven like a WSGI server would."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.test import EnvironBuilder

from sse_kit import Hub, serve_sse
from sse_kit._backplane import Entry, Feed, Replay
from sse_kit._wire import encode_fields
from tests._decoder import DecodedEvent, SSEDecoder


def environ(path: str = "/events", **headers: str) -> dict[str, Any]:
    """A WSGI environ for a GET of *path* with *headers*."""
    return EnvironBuilder(path=path, headers=headers).get_environ()


def entry(ms: int, pattern: str) -> Entry:
    """A backplane entry with ID ``<ms>-0`` and data ``e<ms>``."""
    return f"{ms}-0", (ms, 0), pattern, encode_fields(f"e{ms}")


class TestLog:
    """A backplane whose log the test writes (through :attr:`feed`, as its reader
    would) and whose :meth:`replay` the test answers (:attr:`on_replay`)."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.feed: Feed | None = None
        self.on_replay: Callable[[str], Replay] = lambda after: Replay(reset="unavailable")
        self.claims: set[str] = set()

    def publish(self, pattern: str, body: bytes) -> str:
        raise NotImplementedError("the test writes the log through feed")

    def start_reader(self, feed: Feed) -> TestLog:
        self.feed = feed
        feed.rebase("1-0", None)  # as a reader does at first contact
        return self

    def replay(self, after: str) -> Replay:
        return self.on_replay(after)

    def claim_once(self, name: str, ttl: float) -> bool:
        """A claim kept in this log (for the test's lifetime)."""
        if name in self.claims:
            return False
        self.claims.add(name)
        return True

    def stop(self) -> None:
        """The reader stops (nothing runs)."""

    def close(self) -> None:
        """Nothing to release."""


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
