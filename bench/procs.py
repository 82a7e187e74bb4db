"""Process-tree accounting from /proc: CPU time, resident memory, threads."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    return _stat_file(Path(f"/proc/{pid}/stat"))


def _stat_file(path: Path) -> list[str] | None:
    """The fields after the command name of a /proc stat file, or None if it is gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def tree(roots: list[int]) -> list[int]:
    """*roots* and all their live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class Usage:
    cpu_s: float  # user + system seconds, summed over the tree
    rss_kib: int
    threads: int
    max_threads: int  # threads of the process in the tree that has the most (the worker)
    # user + system seconds of each thread of the tree, by (pid, tid)
    thread_cpu: dict[tuple[int, int], float]

    def busiest_thread_since(self, before: Usage) -> float:
        """CPU seconds the busiest thread used between *before* and this reading:
        in an sse_kit worker, the hub thread that writes every fan-out."""
        return max((cpu - before.thread_cpu.get(key, 0.0) for key, cpu in self.thread_cpu.items()),
                   default=0.0)


def usage(roots: list[int]) -> Usage:
    """CPU seconds (live processes plus their reaped children), RSS and threads."""
    cpu = 0.0
    rss = threads = most = 0
    per_thread: dict[tuple[int, int], float] = {}
    for pid in tree(roots):
        fields = _stat(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of the whole line.
        cpu += sum(int(f) for f in fields[11:15]) / _TICKS
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                t = _stat_file(task / "stat")
                if t is not None:
                    per_thread[(pid, int(task.name))] = (int(t[11]) + int(t[12])) / _TICKS
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
                    most = max(most, int(line.split()[1]))
        except OSError:
            continue
    return Usage(cpu, rss, threads, most, per_thread)
