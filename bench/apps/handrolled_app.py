"""The hand-rolled pattern: Flask, one ``queue.Queue`` per client, gunicorn gthread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)
_clients: set[queue.Queue[bytes]] = set()
_lock = threading.Lock()


@app.get("/events/")
def events() -> ResponseReturnValue:
    q: queue.Queue[bytes] = queue.Queue(maxsize=1024)
    with _lock:
        _clients.add(q)

    def stream() -> Iterator[bytes]:
        try:
            yield b": connected\n\n"  # sends the headers now
            while True:
                yield q.get()
        finally:
            with _lock:
                _clients.discard(q)

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache"})


@app.post("/publish")
def publish() -> ResponseReturnValue:
    with _lock:
        clients = list(_clients)
    for data in request.get_data().split(b"\n"):
        frame = b"data: " + data + b"\n\n"  # encoded once
        for q in clients:
            try:  # noqa: SIM105 (contextlib.suppress costs more per client)
                q.put_nowait(frame)
            except queue.Full:
                pass
    return "", 204


@app.get("/count")
def count() -> ResponseReturnValue:
    return str(len(_clients))
