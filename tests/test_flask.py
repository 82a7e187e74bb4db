"""The Flask blueprint: mounting, client IDs, metadata, and the app extension."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from flask import Flask, session

import sse_kit
from sse_kit import Hub
from sse_kit.flask import SSEKitExtension, create_blueprint
from tests._decoder import SSEDecoder


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub() as h:
        yield h


def connected(app: Flask, path: str = "/events/") -> dict[str, object]:
    response = app.test_client().get(path, buffered=False)
    assert response.status_code == 200
    first = next(iter(response.response))
    response.close()
    (ev,) = SSEDecoder().feed(first)
    data: dict[str, object] = json.loads(ev.data)
    return data


def test_default_client_id_is_random_and_anonymous(hub: Hub) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub), url_prefix="/events")
    a = connected(app, "/events/?cid=user:1&client_id=user:1")
    b = connected(app)
    assert str(a["client_id"]).startswith("anon:") and str(b["client_id"]).startswith("anon:")
    assert a["client_id"] != b["client_id"]


def test_client_id_and_metadata_come_from_the_app(hub: Hub) -> None:
    app = Flask(__name__)
    app.secret_key = "test"

    @app.get("/login")
    def login() -> str:
        session["uid"] = "42"
        return "ok"

    app.register_blueprint(
        create_blueprint(hub, client_id=lambda r: f"user:{session.get('uid', 'nobody')}",
                         metadata=lambda r: {"ua": r.headers.get("User-Agent", "")}),
        url_prefix="/events",
    )
    client = app.test_client()
    client.get("/login")
    response = client.get("/events/", headers={"User-Agent": "t"}, buffered=False)
    (ev,) = SSEDecoder().feed(next(iter(response.response)))
    response.close()
    assert json.loads(ev.data) == {"client_id": "user:42", "metadata": {"ua": "t"}}


def test_extension_records_the_hub(hub: Hub) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub, name="a"), url_prefix="/a")
    app.register_blueprint(create_blueprint(hub, name="b"), url_prefix="/b")
    ext = app.extensions["sse_kit"]
    assert isinstance(ext, SSEKitExtension) and ext.hubs == [hub] and ext.hub is hub


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [({"client_id": "user:1"}, TypeError), ({"metadata": 3}, TypeError)],
)
def test_bad_arguments(hub: Hub, kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        create_blueprint(hub, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Hub"):
        create_blueprint(object())  # type: ignore[arg-type]


def test_import_sse_kit_does_not_import_flask() -> None:
    import subprocess
    import sys

    code = "import sys, sse_kit; print('flask' in sys.modules, 'redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_blueprint_serves_the_js_helper() -> None:
    hub = Hub()
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub), url_prefix="/events")
    with app.test_client().get("/events/sse_kit.js") as r:
        assert r.status_code == 200 and r.mimetype == "text/javascript"
        assert b"SSEKit" in r.data and r.headers["ETag"]
        assert r.headers["Cache-Control"] == "public, max-age=3600"
        # The helper's version is the package's: one release, one helper.
        assert f'version: "{sse_kit.__version__}"'.encode() in r.data
