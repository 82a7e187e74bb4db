"""How each system under test is started: command line, environment, helpers."""

from __future__ import annotations

import http.client
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = "0"  # taskset CPU list for the system under test (and its Redis)
HOST = "127.0.0.1"
# main before issue 11 (streams that hold no thread): its fast path (a parked
# thread per stream, the hub writing to the socket) is what the worker class
# must not be slower than, so `make bench` runs it from this commit, same run.
BASELINE = "3ec4710"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _gunicorn(worker: str, app: str, port: int, streams: int, conf: str | None,
              threads: int) -> list[str]:
    """One gunicorn worker; *threads* is its pool (gthread and its subclasses)."""
    argv = [
        sys.executable, "-m", "gunicorn", "-w", "1", "-k", worker,
        "-b", f"{HOST}:{port}", "--backlog", "4096", "--log-level", "warning",
        "--worker-connections", str(max(1000, 2 * streams)), "--timeout", "120",
        "--graceful-timeout", "3", "--keep-alive", "30",
    ]  # fmt: skip
    if worker != "gevent":
        argv += ["--threads", str(threads)]
    if conf:
        argv += ["-c", conf]
    return [*argv, app]


def certificate() -> tuple[Path, Path]:
    """A self-signed certificate for HOST and its key (made once, under bench/out)."""
    out = ROOT / "bench" / "out"
    cert, key = out / "cert.pem", out / "key.pem"
    if not cert.exists() or not key.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "30", "-subj", f"/CN={HOST}", "-addext",
             f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True)
    return cert, key


def unverified() -> ssl.SSLContext:
    """A TLS client context that accepts the bench's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connection(port: int, tls: bool, timeout: float) -> http.client.HTTPConnection:
    """An HTTP/1.1 connection to the system under test (over TLS if it is served so)."""
    if tls:
        return http.client.HTTPSConnection(HOST, port, timeout=timeout, context=unverified())
    return http.client.HTTPConnection(HOST, port, timeout=timeout)


@dataclass
class System:
    """One system under test."""

    name: str  # key used on the command line and in results
    label: str  # how the report names it
    packages: Sequence[str]  # modules it needs (a missing one skips the system)
    needs_redis: bool = False
    env: dict[str, str] = field(default_factory=dict)
    probe: bool = False  # answers GET probe_path, probed while a step publishes
    probe_path: str = "/ping"
    # A commit of this repository to run instead of this checkout (its own
    # sse_kit and bench apps), extracted with `git archive` under bench/out/.
    commit: str | None = None
    # Served over TLS with HTTP/2 (ALPN h2): the load generator is bench.h2client,
    # its streams spread over h2_connections connections; the publisher and the
    # probe speak HTTP/1.1 over TLS.
    h2_connections: int | None = None

    @property
    def tls(self) -> bool:
        return self.h2_connections is not None

    @property
    def holds_thread_per_stream(self) -> bool:
        """Each open stream holds a worker thread (so threads = streams + 50)."""
        return self.name in ("handrolled", "sse_kit_queue", "sse_kit_before")

    def available(self) -> str | None:
        """None if it can run here, else why not."""
        for module in self.packages:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (make bench installs the peers)"
        if self.needs_redis and shutil.which("redis-server") is None:
            return "redis-server is not on PATH"
        if self.commit is not None and subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{self.commit}^{{commit}}"],
            capture_output=True,
        ).returncode != 0:
            return f"commit {self.commit} is not in this checkout's history (a shallow clone?)"
        return None

    def root(self) -> Path:
        """The tree the system runs from: this checkout, or its commit extracted."""
        if self.commit is None:
            return ROOT
        tree = ROOT / "bench" / "out" / f"tree-{self.commit}"
        if not (tree / "sse_kit").is_dir():
            tree.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", self.commit],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        return tree

    def argv(self, port: int, streams: int) -> list[str]:
        threads = streams + 50 if self.holds_thread_per_stream else 8
        sse_kit_app = "bench.apps.sse_kit_app:create_app()"
        if self.name in ("sse_kit_hooks", "sse_kit_queue", "sse_kit_before"):
            return _gunicorn("gthread", sse_kit_app, port, streams,
                             "bench/apps/sse_kit_gunicorn.py", threads)
        if self.name == "sse_kit_h2":
            cert, key = certificate()
            return [*_gunicorn("sse_kit.gunicorn.ThreadWorker", sse_kit_app, port, streams, None,
                               threads)[:-1],
                    "--certfile", str(cert), "--keyfile", str(key), "--http-protocols", "h2,h1",
                    sse_kit_app]
        if self.name == "starlette_h2":
            cert, key = certificate()
            return [
                sys.executable, "-m", "hypercorn", "bench.apps.starlette_app:app",
                "--bind", f"{HOST}:{port}", "--worker-class", "uvloop", "--backlog", "4096",
                "--certfile", str(cert), "--keyfile", str(key), "--log-level", "warning",
                "--keep-alive", "30",
            ]  # fmt: skip
        if self.name.startswith("sse_kit"):  # the one-flag form: no config file
            return _gunicorn("sse_kit.gunicorn.ThreadWorker", sse_kit_app, port, streams, None,
                             threads)
        if self.name == "floor":
            return [sys.executable, "-m", "bench.apps.floor", str(port)]
        if self.name == "handrolled":
            return _gunicorn("gthread", "bench.apps.handrolled_app:app", port, streams, None,
                             threads)
        if self.name == "flask_sse":
            return _gunicorn("gevent", "bench.apps.flask_sse_app:app", port, streams, None,
                             threads)
        if self.name == "starlette":
            return [
                sys.executable, "-m", "uvicorn", "bench.apps.starlette_app:app",
                "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                "--backlog", "4096", "--log-level", "warning", "--no-access-log",
                "--timeout-keep-alive", "30",
            ]  # fmt: skip
        raise ValueError(self.name)


SYSTEMS = {
    s.name: s
    for s in (
        System("sse_kit", "sse_kit (ThreadWorker, --threads 8)", ["flask", "gunicorn", "sse_kit"],
               probe=True),
        System(
            "sse_kit_hooks",
            "sse_kit (gthread + hooks, --threads 8)",
            ["flask", "gunicorn", "sse_kit"],
            probe=True,
        ),
        System(
            "starlette",
            "sse-starlette + uvicorn",
            ["sse_starlette", "uvicorn", "uvloop", "httptools"],
        ),
        System(
            "flask_sse",
            "flask-sse + Redis (gunicorn gevent)",
            ["flask_sse", "gevent", "redis"],
            needs_redis=True,
        ),
        System("handrolled", "hand-rolled Flask queue.Queue (gthread)", ["flask", "gunicorn"]),
        System("floor", "floor: a bare os.write loop, no server around it", []),
        System(
            "sse_kit_h2",
            "sse_kit (ThreadWorker) over HTTP/2 (TLS), 1,000 streams on 10 connections",
            ["flask", "gunicorn", "sse_kit", "h2"],
            h2_connections=10,
        ),
        System(
            "starlette_h2",
            "sse-starlette + hypercorn over HTTP/2 (TLS), 1,000 streams on 10 connections",
            ["sse_starlette", "hypercorn", "uvloop", "h2"],
            h2_connections=10,
        ),
        System(
            "sse_kit_before",
            f"sse_kit before issue 11 ({BASELINE}: gthread + hooks, fast path, a parked "
            "thread per stream)",
            ["flask", "gunicorn", "sse_kit"],
            probe=True,
            probe_path="/count",  # it has no /ping; /count is as cheap
            commit=BASELINE,
        ),
        System(
            "sse_kit_queue",
            "sse_kit, fast path off (gthread + hooks, a thread per stream)",
            ["flask", "gunicorn", "sse_kit"],
            env={"SSE_FAST_PATH": "0"},
            probe=True,
        ),
        System(
            "sse_kit_slow",
            "sse_kit (ThreadWorker), 1% of clients stop reading, client_buffer_bytes 8 KiB",
            ["flask", "gunicorn", "sse_kit"],
            env={"SSE_CLIENT_BUFFER_BYTES": str(8 * 1024), "SSE_STREAM_SNDBUF": "4096"},
            probe=True,
        ),
        System(
            "sse_kit_redis",
            "sse_kit (ThreadWorker) + Redis backplane",
            ["flask", "gunicorn", "sse_kit", "redis"],
            needs_redis=True,
            probe=True,
        ),
    )
}


class Server:
    """A running system under test, pinned to SERVER_CPU (with its Redis if any)."""

    def __init__(self, system: System, streams: int, log: Path) -> None:
        self.system = system
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self._log = log.open("ab")
        self.root = system.root()
        env = {**os.environ, **system.env, "PYTHONPATH": str(self.root)}
        if system.needs_redis:
            redis_port = free_port()
            self.procs.append(self._spawn([
                "redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--maxclients", str(streams + 1000),
            ], env))  # fmt: skip
            env["REDIS_URL"] = f"redis://{HOST}:{redis_port}/0"
            self._wait(lambda: self._redis_ping(redis_port))
        self.procs.append(self._spawn(system.argv(self.port, streams), env))
        self._wait(lambda: self.get("/count") is not None)

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv], cwd=self.root, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def _wait(self, ready: object, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"{self.system.name} exited; see {self._log.name}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.system.name} not ready; see {self._log.name}")
            time.sleep(0.1)

    @staticmethod
    def _redis_ping(port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def get(self, path: str) -> str | None:
        scheme = "https" if self.system.tls else "http"
        try:
            with urllib.request.urlopen(f"{scheme}://{HOST}:{self.port}{path}", timeout=5,
                                        context=unverified() if self.system.tls else None) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def last_error(self) -> str:
        """The server log's last line that names an error, or ''."""
        self._log.flush()
        try:
            lines = Path(self._log.name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln.strip() for ln in lines if "Error" in ln and not ln.startswith(" ")]
        return errors[-1] if errors else ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    continue
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
        self._log.close()
