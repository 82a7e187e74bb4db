"""The floor: what one ``write(2)`` per delivery costs on this machine.

Not a server anyone should run: one thread, one ``selectors`` loop, no framework,
no hub, no resume, no slow-client handling. A ``POST /publish`` frames each
event once as an HTTP chunk and writes it to every open stream with one
non-blocking ``os.write`` in a bare loop. Any SSE server that writes each event
to each socket separately pays at least this much CPU per delivery, and its
fan-out to N streams takes at least N times that; the benchmark runs it beside
the real systems so their figures can be read against it.

A write that would block drops that event for that stream (counted in
``/count``'s log line on exit); at the benchmark's rates a socket never fills.

Usage: ``python -m bench.apps.floor PORT``.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
FIRST = b": connected\n\n"


def chunk(frame: bytes) -> bytes:
    """*frame* as one HTTP/1.1 chunk."""
    return b"%X\r\n%b\r\n" % (len(frame), frame)


class Floor:
    """The loop's state: the listener, open streams, request buffers."""

    def __init__(self, port: int) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener = socket.create_server(("127.0.0.1", port), backlog=4096)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.streams: dict[int, socket.socket] = {}  # fd -> stream socket
        self.dropped = 0

    def run(self) -> None:
        while True:
            for key, _ in self.sel.select():
                if key.data is None:
                    self.accept()
                else:
                    self.readable(key.fileobj, key.data)  # type: ignore[arg-type]

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(conn, selectors.EVENT_READ, bytearray())

    def close(self, conn: socket.socket) -> None:
        self.streams.pop(conn.fileno(), None)
        self.sel.unregister(conn)
        conn.close()

    def readable(self, conn: socket.socket, buf: bytearray) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.close(conn)
            return
        buf += data
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            method, target = head[0].split(" ")[:2]
            length = next((int(h.split(":", 1)[1]) for h in head[1:]
                           if h.lower().startswith("content-length:")), 0)
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4:end + 4 + length])
            del buf[:end + 4 + length]
            self.request(conn, method, target, body)

    def request(self, conn: socket.socket, method: str, target: str, body: bytes) -> None:
        if target.startswith("/events"):
            conn.send(HEAD + chunk(FIRST))
            self.streams[conn.fileno()] = conn
            return
        if method == "POST" and target == "/publish":
            for line in body.split(b"\n"):
                self.fan_out(chunk(b"data: " + line + b"\n\n"))
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            return
        text = str(len(self.streams)).encode() if target == "/count" else b"not found"
        status = b"200 OK" if target == "/count" else b"404 Not Found"
        conn.send(b"HTTP/1.1 %b\r\nContent-Length: %d\r\n\r\n%b" % (status, len(text), text))

    def fan_out(self, data: bytes) -> None:
        write, size = os.write, len(data)
        for fd in self.streams:  # the measured loop: one write per delivery
            try:
                if write(fd, data) != size:
                    self.dropped += 1  # partial: that stream is broken (never seen here)
            except BlockingIOError:
                self.dropped += 1
            except OSError:
                pass  # the stream closed; its EOF is read next


def main() -> None:
    floor = Floor(int(sys.argv[1]))
    try:
        floor.run()
    finally:
        print(f"floor: {floor.dropped} deliveries dropped (socket full)", file=sys.stderr)


if __name__ == "__main__":
    main()
