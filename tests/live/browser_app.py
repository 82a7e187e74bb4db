"""The live test app plus a page for the browser tests.

``GET /page?cid=<id>&types=a,b&mode=raw|helper`` loads a page that opens
``/events/?cid=<id>`` and appends every event it receives to ``window.seen``
(``{type, id, data}``), so a test reads what the browser saw with
``execute_script``. ``mode=raw`` uses ``EventSource`` and ``addEventListener``
directly; ``mode=helper`` uses ``sse_kit.js`` (served by the blueprint) and also
records ``data`` as parsed (``parsed``) and every state change in
``window.states``.

``POST /kick`` (JSON ``{"pattern": ...}``) ends the matching streams now, as an
app does when a user logs out.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

from sse_kit.flask import SSEKitExtension
from tests.live.apps import create_app as create_base_app

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sse_kit browser test</title>
<script src="/events/sse_kit.js"></script></head>
<body><pre id="log"></pre>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const url = "/events/?cid=" + encodeURIComponent(params.get("cid"));
const types = ["connected", "message", "reset"].concat(
  (params.get("types") || "").split(",").filter(Boolean));
window.seen = [];
window.states = [];
function record(entry) {
  window.seen.push(entry);
  document.getElementById("log").textContent += JSON.stringify(entry) + "\\n";
}
if (params.get("mode") === "helper") {
  window.stream = SSEKit.connect(url);
  window.states.push(window.stream.state);
  window.stream.onState((state) => window.states.push(state));
  for (const type of types) {
    if (type === "reset") continue;
    window.stream.on(type, (data, ev) =>
      record({type: ev.type, id: ev.lastEventId, data: ev.data, parsed: data}));
  }
  window.stream.onReset((info, ev) =>
    record({type: "reset", id: ev.lastEventId, data: ev.data, parsed: info}));
} else {
  window.source = new EventSource(url);
  for (const type of types) {
    window.source.addEventListener(type, (ev) =>
      record({type: ev.type, id: ev.lastEventId, data: ev.data}));
  }
}
</script></body></html>
"""


def create_app() -> Flask:
    """:func:`tests.live.apps.create_app` with ``/page`` and ``/kick``."""
    app = create_base_app()
    ext = app.extensions["sse_kit"]
    assert isinstance(ext, SSEKitExtension)
    hub = ext.hub

    @app.get("/page")
    def page() -> ResponseReturnValue:
        return Response(PAGE, mimetype="text/html")

    @app.post("/kick")
    def kick() -> ResponseReturnValue:
        return jsonify(kicked=hub.disconnect(request.get_json()["pattern"]))

    return app
