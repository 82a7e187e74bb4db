"""The blueprint's routes besides the stream: the browser helper."""

from __future__ import annotations

from flask import Flask

from sse_kit import Hub
from sse_kit.flask import create_blueprint


def test_the_blueprint_serves_the_js_helper() -> None:
    hub = Hub()
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub), url_prefix="/events")
    with app.test_client().get("/events/sse_kit.js") as r:
        assert r.status_code == 200 and r.mimetype == "text/javascript"
        assert b"SSEKit" in r.data and r.headers["ETag"]
        assert r.headers["Cache-Control"] == "public, max-age=3600"
