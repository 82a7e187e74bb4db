"""flask-sse in its documented mode: Redis pub/sub, gunicorn gevent worker."""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Flask, Response, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
_open = [0]


@app.get("/events/")
def events() -> ResponseReturnValue:
    """flask-sse's own ``sse.stream`` view, plus a first comment that sends the
    headers at once (as the other systems do) and a count of open streams."""

    @stream_with_context
    def stream() -> Iterator[str]:
        _open[0] += 1
        try:
            yield ": connected\n\n"
            for message in sse.messages():
                yield str(message)
        finally:
            _open[0] -= 1

    return Response(stream(), mimetype="text/event-stream")


@app.post("/publish")
def publish() -> ResponseReturnValue:
    for data in request.get_data(as_text=True).split("\n"):
        sse.publish(data)
    return "", 204


@app.get("/count")
def count() -> ResponseReturnValue:
    return str(_open[0])


app.register_blueprint(sse, url_prefix="/stream")
