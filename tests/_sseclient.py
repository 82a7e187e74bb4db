"""A real SSE client for live tests: httpx-sse reading in a thread, events in a queue."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

_END = object()


class SSEClient:
    """Connects with httpx-sse and collects events until closed or the stream ends."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.url = url
        self.events: queue.Queue[Any] = queue.Queue()
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self.last_event_id = ""
        self._connected = threading.Event()
        self._socket: socket.socket | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, read=None))
        self._headers = headers or {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"no response from {url}")

    def _run(self) -> None:
        try:
            with connect_sse(self._client, "GET", self.url, headers=self._headers) as source:
                stream = source.response.extensions["network_stream"]
                self._socket = stream.get_extra_info("socket")
                self.status = source.response.status_code
                self.response_headers = source.response.headers
                self._connected.set()
                if self.status != 200:
                    return
                for sse in source.iter_sse():
                    if sse.event == "message" and not sse.data:
                        # httpx-sse dispatches a comment's blank line as an empty
                        # message once an ID has been seen (the spec does not).
                        continue
                    if sse.id:
                        self.last_event_id = sse.id
                    self.events.put(sse)
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test, or the server went away
        finally:
            self._connected.set()
            self.events.put(_END)

    def next(self, timeout: float = 10.0) -> ServerSentEvent:
        """The next event; raises if the stream ended or nothing came in time."""
        item = self.events.get(timeout=timeout)
        if item is _END:
            raise EOFError("the stream ended")
        assert isinstance(item, ServerSentEvent)
        return item

    def take(self, n: int, *, event: str | None = "message",
             timeout: float = 10.0) -> list[ServerSentEvent]:
        """The next *n* events of type *event* (``None``: any), skipping others."""
        out: list[ServerSentEvent] = []
        while len(out) < n:
            sse = self.next(timeout)
            if event is None or sse.event == event:
                out.append(sse)
        return out

    def ended(self, timeout: float = 10.0) -> bool:
        """Whether the stream ended (the server closed it) within *timeout*."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Drop the connection, as a closed browser tab does."""
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        self._thread.join(5)
        self._client.close()
