"""sse_kit.gunicorn: hub discovery and the sizing rule (the hooks run for real in tests/live)."""

from __future__ import annotations

import pytest
from flask import Flask

from sse_kit import Hub
from sse_kit.flask import create_blueprint
from sse_kit.gunicorn import find_hubs, sizing


def test_find_hubs_on_a_flask_app_and_a_plain_callable() -> None:
    hub, other = Hub(), Hub()
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub), url_prefix="/e")

    def wsgi(environ: object, start_response: object) -> list[bytes]:
        return []

    wsgi.sse_kit_hubs = [other, other]  # type: ignore[attr-defined]
    assert find_hubs(app) == [hub]
    assert find_hubs(wsgi) == [other]
    assert find_hubs(None) == []


def test_sizing() -> None:
    assert sizing(100) == {"threads": 108, "worker_connections": 1000}
    assert sizing(5000, other_requests=16) == {"threads": 5016, "worker_connections": 5032}
    with pytest.raises(ValueError):
        sizing(0)
