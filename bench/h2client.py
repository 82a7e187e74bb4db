"""The benchmark's HTTP/2 load generator: N SSE streams over C TLS connections.

``python -m bench.h2client HOST PORT PATH N C`` opens C TLS connections that
negotiate ``h2`` (ALPN; the server's certificate is not checked: the bench makes
a self-signed one), spreads N streams over them (``GET PATH?cid=c<i>``, each an
HTTP/2 stream), and reads the SSE ``data:`` lines the publisher sends, exactly as
``bench/client.c`` does over HTTP/1.1: ``data: B <seq> <scheduled send time, µs
since the epoch> <padding>``; latency is receive time minus the scheduled time.

It speaks client.c's protocol on stdin/stdout (``START <first>``, ``STOP <last>``,
``QUIT``; one JSON object per answer), so the runner drives either alike. It is
Python (the ``h2`` state machine over ``ssl``), so it costs more CPU per delivery
than client.c: the runner marks a step invalid when it used more than 70% of its
core, and the plan runs HTTP/2 at rates it can read.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings

WINDOW = 1 << 24  # each stream's and the connection's receive window: never the bottleneck


@dataclass
class Stream:
    """One SSE stream: its partial line and the last sequence number seen."""

    line: bytearray = field(default_factory=bytearray)
    last_seq: int = -1
    ok: bool = False  # answered 200
    dead: bool = False


class Stats:
    """The step's figures, as client.c counts them."""

    def __init__(self) -> None:
        self.in_step = False
        self.first = -1
        self.reset(-1)
        self.bytes = 0

    def reset(self, first: int) -> None:
        self.first = first
        self.received = self.gaps = self.reorder = self.late = 0
        self.latencies: list[int] = []

    def data_line(self, stream: Stream, payload: bytes) -> None:
        text = payload.lstrip(b" ").lstrip(b'"')
        if not text.startswith(b"B "):
            return
        parts = text[2:].split(b" ", 2)
        seq, stamp = int(parts[0]), int(parts[1])
        now = time.time_ns() // 1000
        if seq <= stream.last_seq:
            self.reorder += 1
            return
        if stream.last_seq >= 0 and seq > stream.last_seq + 1:
            self.gaps += seq - stream.last_seq - 1
        stream.last_seq = seq
        if not self.in_step or seq < self.first:
            self.late += 1
            return
        self.received += 1
        self.latencies.append(max(0, now - stamp))

    def percentile(self, q: float) -> int:
        lat = sorted(self.latencies)
        if not lat:
            return -1
        return lat[min(len(lat) - 1, int(q * len(lat)))]


class Connection:
    """One TLS connection carrying many streams."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection((host, port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        if self.sock.selected_alpn_protocol() != "h2":
            raise SystemExit(f"h2client: the server did not negotiate h2 "
                             f"({self.sock.selected_alpn_protocol()!r})")
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(WINDOW)
        self.streams: dict[int, Stream] = {}
        self.flush()
        self.sock.setblocking(False)

    def open(self, path: str, authority: str) -> None:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [
            (":method", "GET"), (":scheme", "https"), (":authority", authority),
            (":path", path), ("accept", "text/event-stream"),
        ], end_stream=True)
        self.streams[stream_id] = Stream()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.setblocking(True)
            self.sock.sendall(data)
            self.sock.setblocking(False)

    def readable(self, stats: Stats) -> bool:
        """Read what is there; False once the connection is gone."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            except OSError:
                return False
            if not data:
                return False
            stats.bytes += len(data)
            for event in self.h2.receive_data(data):
                self.on_event(event, stats)
            if not self.sock.pending():
                break
        self.flush()
        return True

    def on_event(self, event: h2.events.Event, stats: Stats) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.ok = dict(event.headers).get(b":status") == b"200"
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                body(stream, event.data, stats)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.dead = True


def body(stream: Stream, data: bytes, stats: Stats) -> None:
    """Split *data* into lines and count each ``data:`` line."""
    line = stream.line
    start = 0
    for i, ch in enumerate(data):
        if ch in (10, 13):
            line += data[start:i]
            if line.startswith(b"data:"):
                stats.data_line(stream, bytes(line[5:]))
            line.clear()
            start = i + 1
    line += data[start:]


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m bench.h2client HOST PORT PATH N C", file=sys.stderr)
        return 2
    host, port, path, n, c = argv[0], int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    started = time.monotonic()
    conns = [Connection(host, port, context) for _ in range(c)]
    sep = "&" if "?" in path else "?"
    for i in range(n):
        conns[i % c].open(f"{path}{sep}cid=c{i}", f"{host}:{port}")
    for conn in conns:
        conn.flush()
    sel = selectors.DefaultSelector()
    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    stats = Stats()
    streams = [s for conn in conns for s in conn.streams.values()]
    reported = False
    wall0 = cpu0 = 0.0
    while True:
        if not reported and all(s.ok or s.dead for s in streams):
            ok = sum(s.ok for s in streams)
            print(json.dumps({"ready": ok, "failed": n - ok,
                              "seconds": round(time.monotonic() - started, 3)}), flush=True)
            reported = True
        for key, _ in sel.select(1.0):
            conn = key.data
            if conn is None:
                line = sys.stdin.readline()
                if not line or line.startswith("QUIT"):
                    return 0
                word, _, arg = line.partition(" ")
                if word == "START":
                    first = int(arg)
                    stats.reset(first)
                    stats.in_step = True
                    for s in streams:
                        s.last_seq = max(s.last_seq, first - 1)
                    wall0, cpu0 = time.monotonic(), cpu_s()
                elif word == "STOP":
                    stats.in_step = False
                    alive = sum(s.ok and not s.dead for s in streams)
                    print(json.dumps({
                        "received": stats.received,
                        "expected": (int(arg) - stats.first + 1) * alive,
                        "gaps": stats.gaps, "reorder": stats.reorder, "late": stats.late,
                        "alive": alive, "p50_us": stats.percentile(0.5),
                        "p99_us": stats.percentile(0.99), "p999_us": stats.percentile(0.999),
                        "max_us": max(stats.latencies, default=-1),
                        "cpu_s": round(cpu_s() - cpu0, 4),
                        "wall_s": round(time.monotonic() - wall0, 4), "bytes": stats.bytes,
                    }), flush=True)
            elif not conn.readable(stats):
                sel.unregister(conn.sock)
                for s in conn.streams.values():
                    s.dead = True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
