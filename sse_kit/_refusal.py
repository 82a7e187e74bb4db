"""The one answer to a stream request that opens no stream.

Every refusal of the request pipeline (:mod:`sse_kit._wsgi`,
:mod:`sse_kit._admission`, :mod:`sse_kit.flask`) is built by :func:`refuse`:
one line of ``text/plain``, the CORS headers the request may read it with, a
counter and an INFO line that names the path, never the query string.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Response

from ._cors import CORSPolicy
from ._hub import Hub

__all__ = ["note_refusal", "refuse", "with_cors"]

log = logging.getLogger("sse_kit._wsgi")  # one logger for the request pipeline's lines


def refuse(
    hub: Hub,
    environ: Mapping[str, Any],
    status: int,
    reason: str,
    *,
    counter: str | None,
    cors: CORSPolicy | None = None,
    **headers: str,
) -> Response:
    """The one answer to a request that opens no stream: *reason* as one line of
    ``text/plain``, with *headers* and the CORS headers *cors* gives the request.
    With a *counter*, it is counted in ``hub.stats()[counter]`` and logged (the
    hub counts and logs its own refusals: ``counter=None``)."""
    if counter is not None:
        note_refusal(hub, environ, status, reason, counter)
    refusal = Response(reason + "\n", status=status, mimetype="text/plain", headers=headers)
    return with_cors(refusal, environ, cors)


def note_refusal(
    hub: Hub, environ: Mapping[str, Any], status: int, reason: str, counter: str
) -> None:
    """Count a refusal in ``hub.stats()[counter]`` and log it at INFO."""
    hub.counters.add(counter)
    # The path only: a query string may carry a token, and logs are read by many.
    log.info("sse_kit: refused %s %r: %d %s", environ.get("REQUEST_METHOD", "GET"),
             environ.get("PATH_INFO", ""), status, reason)


def with_cors(
    response: Response, environ: Mapping[str, Any], cors: CORSPolicy | None
) -> Response:
    """*response* with the CORS headers *cors* gives this request (if any)."""
    if cors is not None:
        for name, value in cors.headers(environ):
            if name not in response.headers:
                response.headers.add(name, value)
    return response
