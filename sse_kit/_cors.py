"""Cross-origin access to a stream: an exact allow-list of origins, nothing reflected.

A browser page on another origin may read a stream only if the response names
that page's origin in ``Access-Control-Allow-Origin`` (Fetch standard, "CORS
protocol"). :class:`CORSPolicy` names an origin only when it is one of the
configured ones, character for character; it never echoes whatever ``Origin``
a request carries, and never answers ``*``. Every answer carries
``Vary: Origin``, so a shared cache does not hand one origin's answer to another.

Pure: it reads a WSGI environ and returns headers or a werkzeug response, so it
serves a plain WSGI app as well as the Flask blueprint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from werkzeug.wrappers import Response

from ._options import check_int, check_str, check_type, type_error

__all__ = ["CORSPolicy"]

# Request headers a cross-origin stream may send: EventSource sends Last-Event-ID
# when it reconnects; polyfills add Cache-Control. Accept is safelisted anyway.
ALLOWED_HEADERS: Final = ("Last-Event-ID", "Cache-Control", "Accept")
_ALLOWED_LOWER: Final = frozenset(h.lower() for h in ALLOWED_HEADERS)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _normalise_origin(origin: object) -> str:
    """*origin* as a browser serialises it (``scheme://host[:port]``), or ValueError."""
    origin = check_str("an origin in cors_origins", origin)
    if origin in ("*", "null"):
        raise ValueError(
            f"cors_origins must list exact origins; {origin!r} would admit any page"
        )
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"cors_origins: {origin!r} is not an origin ({exc})") from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or origin.endswith(("?", "#"))
    ):
        raise ValueError(
            "cors_origins must hold origins like 'https://app.example.com' or "
            f"'http://localhost:8080' (scheme, host, optional port, nothing else); got {origin!r}"
        )
    if port == _DEFAULT_PORTS[parts.scheme]:
        raise ValueError(
            f"cors_origins: browsers send {parts.scheme}://{parts.hostname} without its "
            f"default port; drop ':{port}' from {origin!r}"
        )
    return origin.lower()


def _netloc(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:  # "http://[" and other garbage
        return None


def _one_line(status: int, reason: str, headers: Iterable[tuple[str, str]]) -> Response:
    response = Response(reason + "\n", status=status, mimetype="text/plain")
    for name, value in headers:
        response.headers.add(name, value)
    return response


class CORSPolicy:
    """Which other origins may open a stream, and with what.

    :param origins: the exact origins allowed (``"https://app.example.com"``).
    :param credentials: send ``Access-Control-Allow-Credentials: true``, so
        ``new EventSource(url, {withCredentials: true})`` carries cookies.
    :param max_age: seconds a browser may cache a preflight answer.
    :raises ValueError: if an origin is ``*``, ``null``, or more than
        ``scheme://host[:port]``, or *max_age* is negative.
    :raises TypeError: if *origins* is a single ``str`` or holds a non-``str``.
    """

    def __init__(
        self, origins: Iterable[str], *, credentials: bool = False, max_age: int = 600
    ) -> None:
        if isinstance(origins, (str, bytes)) or not isinstance(origins, Iterable):
            raise type_error("cors_origins", "a list of origins", origins)
        check_type("cors_credentials", credentials, bool)
        check_int("cors_max_age", max_age, 0, unit="seconds")
        self.origins = frozenset(_normalise_origin(o) for o in origins)
        if not self.origins:
            raise ValueError("cors_origins must name at least one origin; use None for no CORS")
        self.credentials = credentials
        self.max_age = max_age

    def allows(self, origin: str | None) -> bool:
        """Whether *origin* (an ``Origin`` header value) is on the allow-list."""
        return origin is not None and origin.lower() in self.origins

    def refusal(self, environ: Mapping[str, Any]) -> str | None:
        """Why this cross-origin request must not be served, or ``None`` to serve it.

        A request without ``Origin``, or whose ``Origin`` names the host it was
        sent to (some browsers send it on same-origin requests too), is not
        cross-origin and passes.
        """
        origin = environ.get("HTTP_ORIGIN")
        if origin is None or self.allows(origin):
            return None
        host = environ.get("HTTP_HOST")
        if host and _netloc(origin) == str(host).lower():
            return None
        return "this origin may not open the event stream"

    def headers(self, environ: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The CORS headers for the answer to a (non-preflight) request."""
        out = [("Vary", "Origin")]
        origin = environ.get("HTTP_ORIGIN")
        if self.allows(origin):
            assert origin is not None
            out.append(("Access-Control-Allow-Origin", origin.lower()))
            if self.credentials:
                out.append(("Access-Control-Allow-Credentials", "true"))
        return out

    def preflight(self, environ: Mapping[str, Any]) -> Response:
        """The answer to an ``OPTIONS`` preflight: ``204`` with the allowances, or
        ``403`` with a one-line reason (no ``Access-Control-*`` header) when the
        origin, method or a requested header is not allowed."""
        origin = environ.get("HTTP_ORIGIN")
        vary = [("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")]
        if not self.allows(origin):
            return _one_line(403, "this origin may not open the event stream", vary)
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "GET")
        if method != "GET":
            return _one_line(403, f"an event stream is opened with GET, not {method}", vary)
        requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
        extra = {h.strip().lower() for h in requested.split(",") if h.strip()} - _ALLOWED_LOWER
        if extra:
            return _one_line(
                403, f"request header(s) not allowed: {', '.join(sorted(extra))}", vary
            )
        assert origin is not None
        headers = [
            *vary,
            ("Access-Control-Allow-Origin", origin.lower()),
            ("Access-Control-Allow-Methods", "GET"),
            ("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS)),
            ("Access-Control-Max-Age", str(self.max_age)),
        ]
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        response = Response(status=204)
        for name, value in headers:
            response.headers.add(name, value)
        return response

    def __repr__(self) -> str:
        return f"CORSPolicy({sorted(self.origins)!r}, credentials={self.credentials})"
