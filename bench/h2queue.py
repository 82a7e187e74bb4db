"""HTTP/2 fan-out cost: an event queued on many streams of one connection, then
framed as DATA (in-process; no socket: what is measured is the work of
``sse_kit._h2table.StreamTable.queue_event`` and ``pump`` per delivery).

Run it with ``python -m bench.h2queue``; it is not part of ``make bench``.
"""

from __future__ import annotations

import time

import h2.config
import h2.connection
import h2.settings

from sse_kit._h2table import StreamTable

_MAX_WINDOW = 2**31 - 1


def _connected(streams: int) -> tuple[StreamTable, list[int]]:
    """A server table with *streams* requests open, their windows wide open."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _MAX_WINDOW})
    client.initiate_connection()
    server.initiate_connection()
    client.increment_flow_control_window(_MAX_WINDOW - 65535)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    sids = []
    for _ in range(streams):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                  (":authority", "bench")], end_stream=True)
        sids.append(sid)
    table = StreamTable(server, 10.0)
    table.receive(client.data_to_send(), bytearray())
    for sid in sids:
        table.send_response_headers(sid, 200, [])
    return table, sids


def cost_us(streams: int = 10, events: int = 20_000, size: int = 200) -> float:
    """Microseconds per delivery (event x stream), queued and framed."""
    table, sids = _connected(streams)
    out = bytearray()
    table.pump(out)
    chunk = b"data: " + b"x" * (size - 8) + b"\n\n"
    started = time.perf_counter()
    for k in range(events):
        for sid in sids:
            table.queue_event(sid, chunk, 1, 1 << 40, 1 << 40)
        if k % 50 == 49:  # the session thread frames after a batch of broadcasts
            out.clear()
            table.pump(out)
    while True:
        out.clear()
        table.pump(out)
        if not out:
            break
    return 1e6 * (time.perf_counter() - started) / (events * streams)


if __name__ == "__main__":
    best = min(cost_us() for _ in range(3))
    print(f"HTTP/2, 10 streams x 20,000 events of 200 B: {best:.2f} us per delivery "
          "(queued and framed; best of three)")
