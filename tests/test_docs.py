"""The docs' Python runs as written: every block not marked as a fragment is
executed, and every app block that says how to serve it is served by gunicorn
as it says and answered over a socket."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sse_kit._hub_options import HubOptions
from tests._docs import REPO_ROOT, Block, blocks
from tests._live import GunicornServer, RawStream

PYTHON = [b for b in blocks("python") if not b.fragment]
SERVED = [b for b in PYTHON if b.served is not None]
RUN = [b for b in PYTHON if b.served is None]


def test_the_docs_have_blocks_to_run() -> None:
    assert len(RUN) >= 10 and len(SERVED) >= 3  # the parser found them


def test_the_go_mapping_names_every_hub_option_and_the_newer_go_calls() -> None:
    text = (REPO_ROOT / "docs" / "go-mapping.md").read_text()
    options = [f.name for f in dataclasses.fields(HubOptions)]
    assert [o for o in options if f"| `{o}` |" not in text] == []
    go_names = ["hub.Broadcast(", "hub.BroadcastFrame(", "c.SendFrame(", "`sse.Frame{Event, Data}`"]
    assert [name for name in go_names if name not in text] == []


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_a_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.text)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
                         "SECRET_KEY": "docs-test", "REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert result.returncode == 0, f"{block.name}:\n{result.stderr[-3000:]}"


def _serve(block: Block, tmp_path: Path, gunicorn_server_log: Path) -> GunicornServer:
    assert block.served is not None
    file_name, command = block.served
    (tmp_path / file_name).write_text(block.text)
    argv = shlex.split(command)
    app = argv[-1]
    worker_class = argv[argv.index("-k") + 1] if "-k" in argv else "sync"
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1
    server = GunicornServer(app, log_path=gunicorn_server_log, threads=threads,
                            worker_class=worker_class, health_path=None,
                            env={"PYTHONPATH": f"{tmp_path}:{REPO_ROOT}",
                                 "SECRET_KEY": "docs-test"})
    server.start(timeout=30)
    return server


@pytest.mark.live
@pytest.mark.parametrize("block", SERVED, ids=[b.name for b in SERVED])
def test_an_app_block_serves_streams_as_its_comment_says(block: Block, tmp_path: Path) -> None:
    server = _serve(block, tmp_path, tmp_path / "gunicorn.log")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            if "abort(401)" in block.text:  # before logging in: one line, cut at a word
                refused = client.get("/events/")
                assert refused.status_code == 401 and refused.text.endswith("...\n")
                assert refused.text.count("\n") == 1 and len(refused.text) <= 201
            login = client.post("/login/42")  # the apps with a session have one
            path = "/events" if 'environ["PATH_INFO"] == "/events"' in block.text else "/events/"
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}
            if login.status_code == 404:
                headers = {}
            with RawStream(server.host, server.port, path, headers=headers) as raw:
                assert raw.status == 200, (block.name, raw.status)
                raw.read_until(b"event: connected")
                if "/notify/" in block.text:
                    assert client.post("/notify/42").status_code == 204
                    raw.read_until(b'data: {"text":"hello"}')
        log = server.log_text()
        assert "Traceback" not in log and "[ERROR]" not in log, log
    finally:
        server.close()
