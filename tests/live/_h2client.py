"""A small HTTP/2 client over a real socket (the ``h2`` package's state machine),
for the live tests that need what httpx does not expose: a stream whose reader
stops (no WINDOW_UPDATE for it), RST_STREAM and GOAWAY as the server sends them.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.settings


class H2Client:
    """One HTTP/2 connection to ``host:port`` (TLS with ALPN ``h2`` when *tls*).

    :param window: the initial stream window this client announces (bytes).
    :param upgrade: cleartext only: start as HTTP/1.1 with ``GET upgrade``
        asking ``Upgrade: h2c`` (RFC 7540 section 3.2); its response comes on
        stream 1. Without it, HTTP/2 from the first byte (TLS with ALPN, or
        cleartext with prior knowledge).
    """

    def __init__(self, host: str, port: int, *, tls: bool = True, window: int = 65535,
                 upgrade: str | None = None) -> None:
        raw = socket.create_connection((host, port), timeout=10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
            ctx.set_alpn_protocols(["h2"])
            self.sock: socket.socket = ctx.wrap_socket(raw, server_hostname=host)
        else:
            self.sock = raw
        self.authority = f"{host}:{port}"
        self.scheme = "https" if tls else "http"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.body: dict[int, bytes] = {}
        early = b""
        if upgrade is None:
            self.conn.initiate_connection()
        else:
            early = self._upgrade(upgrade)
        self.sock.sendall(self.conn.data_to_send())
        self.status: dict[int, str] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}  # stream -> error code
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.stalled: set[int] = set()  # streams whose data this client never credits
        if early:
            self._receive(early)

    def get(self, path: str, *, accept: str = "*/*", headers: tuple[tuple[str, str], ...] = ()
            ) -> int:
        """Send a GET; return its stream ID."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path),
                                     (":scheme", self.scheme), (":authority", self.authority),
                                     ("accept", accept), *headers], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.body[sid] = b""
        return sid

    def _upgrade(self, path: str) -> bytes:
        """Ask for h2c on an HTTP/1.1 GET of *path*; return what followed the 101."""
        settings = self.conn.initiate_upgrade_connection().decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.authority}\r\n"
                          "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                          f"HTTP2-Settings: {settings}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"no answer to the upgrade: {head!r}")
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"the upgrade was not accepted: {head!r}")
        self.body[1] = b""
        return rest

    def open_streams(self, prefix: str, n: int) -> list[int]:
        """Open *n* event streams (client IDs ``prefix:0``, ...) and wait until
        each has its ``connected`` event; return their stream IDs."""
        streams = [self.get(f"/events/?cid={prefix}:{i}", accept="text/event-stream")
                   for i in range(n)]
        self.pump(lambda: all(b"event: connected" in self.body[s] for s in streams))
        return streams

    def widen(self, streams: list[int], size: int) -> None:
        """Give each of *streams* *size* more bytes of window (WINDOW_UPDATE)."""
        for sid in streams:
            self.conn.increment_flow_control_window(size, stream_id=sid)
        self.sock.sendall(self.conn.data_to_send())

    def pump(self, until: Callable[[], object], timeout: float = 20.0) -> None:
        """Read frames until *until()* is truthy.

        :raises TimeoutError: if it is not after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"HTTP/2 client: condition not met in {timeout:g}s; "
                                   f"ended={sorted(self.ended)} reset={self.reset}")
            if self.closed:
                raise ConnectionError("the server closed the connection")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.closed = True
                continue
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.status[event.stream_id] = dict(
                    (bytes(k).decode(), bytes(v).decode()) for k, v in event.headers
                )[":status"]
            elif isinstance(event, h2.events.DataReceived):
                self.body[event.stream_id] = self.body.get(event.stream_id, b"") + event.data
                if event.stream_id in self.stalled:
                    # The reader stopped: credit the connection, never the stream.
                    self.conn.increment_flow_control_window(event.flow_controlled_length)
                else:
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset[event.stream_id] = int(event.error_code)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
        self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
