"""The docs' shell and JavaScript run as written: the quickstart's commands in a
shell against the quickstart's app, and every JavaScript block in headless
Chromium against the README's app (its own functions stubbed, as an app defines
them)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests._browser import Browser
from tests._docs import REPO_ROOT, Block, blocks
from tests._live import GunicornServer, free_port, wait_for

pytestmark = pytest.mark.live

# A block marked <!-- fragment --> needs what the README's app does not have (e.g.
# browser.md's ticket callback, which tests/live/test_tickets_live.py runs).
JS = [b for b in blocks("js") if not b.fragment]
# The functions the snippets call that an app would define; each records its call.
_STUBS = ["show", "render", "showProgress", "showBanner", "refetchEverything", "refetchState"]


def block(name: str) -> Block:
    [found] = [b for b in blocks("python") + blocks("sh") if b.name == name]
    return found


def quickstart_block(language: str, starts: str) -> Block:
    [found] = [b for b in blocks(language)
               if b.path.name == "quickstart.md" and b.text.startswith(starts)]
    return found


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty project directory with the repository's venv at ``.venv``, as a
    user has after the quickstart's install step."""
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")
    return tmp_path


def _shell(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_the_quickstart_runs_in_a_shell_as_written(workdir: Path) -> None:
    app = quickstart_block("python", "# app.py")
    (workdir / "app.py").write_text(app.text)
    port = str(free_port())
    serve = quickstart_block("sh", ".venv/bin/gunicorn").text.strip().replace("8000", port)
    log = (workdir / "gunicorn.log").open("wb")
    server = subprocess.Popen(["bash", "-c", f"exec {serve}"], cwd=workdir,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(int(port)), timeout=30, message="the quickstart's gunicorn")
        # The curl block: log in, then read the stream (it never ends: a few seconds).
        login, stream = quickstart_block("sh", "curl").text.strip().replace("8000", port) \
            .split("\n")
        assert _shell(login, workdir, 10).returncode == 0
        try:
            _shell(stream, workdir, 3)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else str(exc.stdout)
        else:
            pytest.fail("the stream ended")
        assert "event: connected" in out and 'data: {"client_id":"user:42"}' in out, out
    finally:
        server.terminate()
        server.wait(20)
        log.close()
    assert "Traceback" not in (workdir / "gunicorn.log").read_text()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return False
    return True


@pytest.fixture
def readme_app(workdir: Path) -> Iterator[GunicornServer]:
    """The README's app, served by the command its first line gives."""
    app = block("README.md:33")
    assert app.served is not None
    file_name, command = app.served
    (workdir / file_name).write_text(app.text)
    argv = shlex.split(command)
    server = GunicornServer(argv[-1], log_path=workdir / "gunicorn.log",
                            threads=int(argv[argv.index("--threads") + 1]),
                            worker_class=argv[argv.index("-k") + 1], health_path=None,
                            env={"PYTHONPATH": f"{workdir}:{REPO_ROOT}"})
    server.start(timeout=30)
    yield server
    server.close()


@pytest.mark.browser
@pytest.mark.parametrize("snippet", JS, ids=[b.name for b in JS])
def test_a_javascript_block_runs_in_the_browser(
    snippet: Block, readme_app: GunicornServer, browser: Callable[..., Browser]
) -> None:
    page = browser()
    page.open(f"{readme_app.url}/events/sse_kit.js")  # any page of the app's origin
    stubs = "".join(f"window.{name} = (x) => window.logged.push('{name}');" for name in _STUBS)
    page.js("window.logged = []; window.errors = [];"
            "console.log = (...a) => window.logged.push(a.map(String).join(' '));"
            "window.addEventListener('error', (e) => window.errors.push(String(e.message)));"
            + stubs)
    page.js("return fetch('/login/42', {method: 'POST'}).then((r) => r.status)")
    if "SSEKit" in snippet.text:
        page.js("const s = document.createElement('script'); s.src = '/events/sse_kit.js';"
                "document.head.appendChild(s);")
        page.wait_js("typeof SSEKit !== 'undefined'", what="sse_kit.js to load")
    before = readme_app.log_text().count("sse_kit: client 'user:42' connected")
    page.js("{" + snippet.text + "}")  # as written, in a block of its own
    wait_for(lambda: readme_app.log_text().count("sse_kit: client 'user:42' connected") > before,
             message="the snippet's stream to open")
    if "console.log(\"I am\"" in snippet.text:
        page.wait_js("window.logged.includes('I am user:42')", what="the connected log")
    if "notice" in snippet.text:
        assert httpx.post(f"{readme_app.url}/notify/42").status_code == 204
        expected = "show" if re.search(r"\bshow\(", snippet.text) else (
            "showBanner" if "showBanner" in snippet.text else "hello")
        page.wait_js(f"window.logged.includes('{expected}')", what=f"{expected} on the notice")
    assert page.js("return window.errors") == []


def test_make_demo_serves_the_demo(tmp_path: Path) -> None:
    """The README's first command (its second, `make test`, is what CI runs)."""
    port = free_port()
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(["make", "demo", f"PORT={port}"], cwd=REPO_ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _answers(port), timeout=60, message="make demo's server")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
        log.close()
    assert "Traceback" not in (tmp_path / "demo.log").read_text()


# Run by the tests above, or by CI itself (`make test` is what .ci/run runs).
RUN_ELSEWHERE = {"README.md:1"}


def _command(text: str) -> list[str]:
    """A gunicorn command line without its bind address or venv prefix."""
    argv = shlex.split(text.strip().removeprefix(".venv/bin/"))
    if "-b" in argv:
        del argv[argv.index("-b"):argv.index("-b") + 2]
    return argv


def test_every_shell_and_javascript_block_runs_or_is_a_fragment() -> None:
    served = [_command(b.served[1]) for b in blocks("python") if b.served is not None]
    run = {b.name for b in JS} | RUN_ELSEWHERE | {
        quickstart_block("sh", ".venv/bin/gunicorn").name, quickstart_block("sh", "curl").name}
    # A gunicorn command that an app block's first line gives is served by tests/test_docs.py.
    run |= {b.name for b in blocks("sh") if b.text.count("\n") == 1
            and b.text.startswith(("gunicorn", ".venv/bin/gunicorn"))
            and _command(b.text) in served}
    left = [b.name for b in blocks("sh") + JS if b.name not in run and not b.fragment]
    assert left == [], f"run these in a test, or mark them <!-- fragment -->: {left}"
