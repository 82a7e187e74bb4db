"""The load generator: many SSE streams on raw sockets, one thread, one selector.

# design: the load thread (:meth:`Load.run`) owns every socket and every
# :class:`Slot`'s connection state. Other threads talk to it through
# :attr:`Load.commands` (a queue it polls between selects) and only read the
# slots' counters and ``last_event_at`` (floats and ints, written by it alone).

A :class:`Slot` is one logical client (``cid``) that connects, reads, and
reconnects: on churn (its lifetime over) half the time with ``Last-Event-ID``
and half the time fresh; when the server ends the stream, always with it, as a
browser does. Kinds: ``normal``; ``slow`` (4 KiB receive buffer, reads in short
bursts between long pauses); ``mute`` (sends its request, never reads).
Every received event goes through the SSE parser and its slot's
:class:`~bench.chaos.ledger.Ledger`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import queue
import random
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.chaos.ledger import Ledger, Violation
from bench.chaos.sse import Parser
from tests._live import ChunkedDecoder

_HEAD_TIMEOUT = 30.0  # seconds a busy server may take to answer a stream's request
_SLOW_RCVBUF = 4096


@dataclass
class Slot:
    """One logical client across its reconnects."""

    cid: str
    kind: str  # "normal", "slow", "mute", "burst"
    ledger: Ledger
    last_id: str = ""
    pid: int | None = None  # the worker serving the current stream
    open: bool = False  # the current stream got its head
    last_event_at: float = 0.0  # monotonic time of the last publisher event
    connects: int = 0
    resumes: int = 0
    server_closes: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    # the load thread's own state
    sock: socket.socket | None = None
    due: float = 0.0  # when to (re)connect, close, or resume reading
    ends_at: float = float("inf")
    head: bytes = b""
    decoder: ChunkedDecoder | None = None
    parser: Parser | None = None
    paused: bool = False
    cut_at: float | None = None  # when the server ended or refused its stream, until back


@dataclass
class Outage:
    """One stream cut by the server side (ended, refused, unreachable) until its next 200."""

    cid: str
    cut_at: float  # monotonic
    back_at: float


class Load:
    """Runs the slots against ``host:port`` until :meth:`stop`."""

    def __init__(self, host: str, port: int, *, seed: int = 1) -> None:
        self.host, self.port = host, port
        self.rng = random.Random(seed)
        self.slots: list[Slot] = []
        self.commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.selector = selectors.DefaultSelector()
        self.churn = True
        self.errors: Counter[str] = Counter()
        self.seen_max: dict[str, int] = {}  # the highest seq received, per publisher
        self.outages: list[Outage] = []  # appended by the load thread only
        self._running = True

    # -- called from other threads (through the command queue) --
    def add(self, count: int, kind: str, prefix: str = "c") -> list[Slot]:
        """Create *count* slots of *kind*; they connect within a second of now."""
        base = len(self.slots)
        slots = [Slot(f"{prefix}:{base + i}", kind, Ledger(f"{prefix}:{base + i}"))
                 for i in range(count)]
        now = time.monotonic()

        def start() -> None:
            for slot in slots:
                slot.due = now + self.rng.uniform(0, 1.0)
                self.slots.append(slot)
        self.commands.put(start)
        return slots

    def close(self, slots: list[Slot]) -> None:
        """Close these slots' streams for good."""
        def close() -> None:
            for slot in slots:
                self._drop(slot)
                slot.due, slot.cut_at = float("inf"), None
        self.commands.put(close)

    def stop(self) -> None:
        def stop() -> None:
            self._running = False
        self.commands.put(stop)

    def violations(self) -> list[Violation]:
        return [v for slot in self.slots for v in slot.ledger.violations]

    # -- the load thread --
    def run(self) -> None:
        try:
            while self._running:
                while True:
                    try:
                        self.commands.get_nowait()()
                    except queue.Empty:
                        break
                for key, mask in self.selector.select(0.05):
                    slot: Slot = key.data
                    if mask & selectors.EVENT_WRITE:
                        self._connected(slot)
                    else:
                        self._readable(slot)
                self._timers(time.monotonic())
        finally:
            for slot in self.slots:
                self._drop(slot)
            self.selector.close()

    def _timers(self, now: float) -> None:
        for slot in self.slots:
            if now < slot.due and now < slot.ends_at:
                continue
            if slot.sock is None:
                if now >= slot.due:
                    self._connect(slot)
            elif not slot.open and now >= slot.due:
                self.errors["no head in time"] += 1
                self._reconnect_later(slot)
            elif self.churn and now >= slot.ends_at:
                self._drop(slot)
                slot.due = now + self.rng.uniform(0.05, 1.0)
                if self.rng.random() < 0.5:
                    slot.last_id = ""  # this reopen starts fresh
            elif slot.kind == "slow" and now >= slot.due:
                self._pause(slot, not slot.paused)

    def _connect(self, slot: Slot) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if slot.kind == "slow":  # before connect(): the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SLOW_RCVBUF)
        sock.setblocking(False)
        code = sock.connect_ex((self.host, self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.errors[f"connect: {errno.errorcode.get(code, code)}"] += 1
            slot.due = time.monotonic() + 0.5
            return
        slot.sock, slot.open, slot.head, slot.paused = sock, False, b"", False
        slot.due = time.monotonic() + _HEAD_TIMEOUT
        slot.ends_at = float("inf")
        self.selector.register(sock, selectors.EVENT_WRITE, slot)

    def _connected(self, slot: Slot) -> None:
        assert slot.sock is not None
        code = slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.errors[f"connect: {errno.errorcode.get(code, code)}"] += 1
            self._reconnect_later(slot)
            return
        resume = f"Last-Event-ID: {slot.last_id}\r\n" if slot.last_id else ""
        request = (f"GET /events/?cid={slot.cid} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   f"Accept: text/event-stream\r\n{resume}\r\n").encode()
        try:
            slot.sock.send(request)  # a few hundred bytes into an empty buffer
        except OSError as exc:
            self.errors[f"send: {exc.__class__.__name__}"] += 1
            self._reconnect_later(slot)
            return
        slot.connects += 1
        if slot.last_id:
            slot.resumes += 1
        else:
            slot.ledger.fresh()
        if slot.kind == "mute":
            self.selector.unregister(slot.sock)
            slot.open, slot.due = True, float("inf")
        else:
            self.selector.modify(slot.sock, selectors.EVENT_READ, slot)

    def _readable(self, slot: Slot) -> None:
        assert slot.sock is not None
        try:
            data = slot.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if slot.open:
                slot.server_closes += 1
            self._reconnect_later(slot)
            return
        try:
            if not slot.open:
                self._head(slot, data)
            else:
                self._body(slot, data)
        except ValueError as exc:
            slot.ledger.violations.append(Violation("parse", slot.cid, repr(exc)))
            self._reconnect_later(slot)

    def _head(self, slot: Slot, data: bytes) -> None:
        slot.head += data
        if b"\r\n\r\n" not in slot.head:
            return
        head, _, rest = slot.head.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            slot.refused[status] += 1
            self._reconnect_later(slot)
            return
        if b"chunked" not in head.lower():
            raise ValueError(f"expected a chunked stream, got {head!r}")
        slot.open, slot.decoder, slot.parser = True, ChunkedDecoder(), Parser()
        if slot.cut_at is not None:
            self.outages.append(Outage(slot.cid, slot.cut_at, time.monotonic()))
            slot.cut_at = None
        if slot.kind in ("normal", "burst"):
            slot.ends_at = time.monotonic() + self.rng.uniform(3.0, 30.0)
        slot.due = float("inf") if slot.kind != "slow" else time.monotonic() + 0.5
        self._body(slot, rest)

    def _body(self, slot: Slot, data: bytes) -> None:
        assert slot.decoder is not None and slot.parser is not None
        for chunk in slot.decoder.feed(data):
            for message in slot.parser.feed(chunk):
                if message.id is not None:
                    slot.last_id = message.id
                if message.event == "connected":
                    slot.pid = json.loads(message.data).get("metadata", {}).get("pid")
                elif message.event == "reset":
                    slot.ledger.reset(json.loads(message.data)["reason"])
                elif message.event == "message":
                    body = json.loads(message.data)
                    slot.ledger.event(body["p"], body["s"], body["ok"])
                    if body["s"] > self.seen_max.get(body["p"], 0):
                        self.seen_max[body["p"]] = body["s"]
                    slot.last_event_at = time.monotonic()
        if slot.decoder.done:
            slot.server_closes += 1
            self._reconnect_later(slot)

    def _pause(self, slot: Slot, pause: bool) -> None:
        assert slot.sock is not None
        if pause:
            self.selector.unregister(slot.sock)
            slot.due = time.monotonic() + self.rng.uniform(2.0, 8.0)
        else:
            self.selector.register(slot.sock, selectors.EVENT_READ, slot)
            slot.due = time.monotonic() + self.rng.uniform(0.2, 0.5)
        slot.paused = pause

    def _drop(self, slot: Slot) -> None:
        if slot.sock is not None:
            with contextlib.suppress(KeyError):  # paused, or mute: not registered
                self.selector.unregister(slot.sock)
            slot.sock.close()
        slot.sock, slot.open, slot.pid = None, False, None
        slot.ends_at = float("inf")

    def _reconnect_later(self, slot: Slot) -> None:
        """The stream ended or failed: come back soon, resuming (as a browser would)."""
        self._drop(slot)
        if slot.cut_at is None:
            slot.cut_at = time.monotonic()
        slot.due = time.monotonic() + self.rng.uniform(0.1, 1.0)
