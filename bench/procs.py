"""Process-tree accounting from /proc: CPU time, resident memory, threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
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


def usage(roots: list[int]) -> Usage:
    """CPU seconds (live processes plus their reaped children), RSS and threads."""
    cpu = 0.0
    rss = threads = most = 0
    for pid in tree(roots):
        fields = _stat(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based) of the whole line.
        cpu += sum(int(f) for f in fields[11:15]) / _TICKS
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
                    most = max(most, int(line.split()[1]))
        except OSError:
            continue
    return Usage(cpu, rss, threads, most)
