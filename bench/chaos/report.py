"""The chaos soak's summary: one markdown table set, printed and written to a file."""

from __future__ import annotations

import os
import platform
from collections import Counter

from bench.chaos.scenario import RECOVERY_BOUND, Plan, Result


def render(results: list[Result], plan: Plan, minutes: float | None) -> str:
    """The summary of every scenario, as markdown."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    what = "smoke" if minutes is None else f"{minutes:g} minutes"
    lines = [
        f"# Chaos soak ({what})",
        "",
        f"{plan.streams} streams per scenario (5% slow readers, {plan.mute} that never read),"
        f" bursts of {plan.burst} connects; {os.cpu_count()} CPUs, {platform.python_version()},"
        f" load average {load} at the end.",
        "",
    ]
    for result in results:
        lines += [f"## {result.name} ({result.seconds:.0f} s)", "",
                  "| publisher | published | failed | highest seq received |",
                  "|---|---:|---:|---:|"]
        for name, (ok, failed) in sorted(result.published.items()):
            lines.append(f"| {name} | {ok} | {failed} | {result.seen_max.get(name, 0)} |")
        for name, seq in sorted(result.seen_max.items()):
            if name not in result.published:
                lines.append(f"| {name} (in the app) | - | - | {seq} |")
        resets = ", ".join(f"{r}: {n}" for r, n in sorted(result.resets.items())) or "none"
        refused = ", ".join(f"{s}: {n}" for s, n in sorted(result.refused.items())) or "none"
        lines += [
            "",
            f"- events delivered and verified: {result.delivered}",
            f"- resets by reason: {resets}",
            f"- reconnects: {result.reconnects} ({result.resumes} with Last-Event-ID,"
            f" {result.server_closes} streams ended by the server); refused: {refused}",
            f"- load generator errors: {dict(result.load_errors) or 'none'}",
            f"- publish failures by kind: {result.publish_errors}",
            "",
            f"| fault | times | max recovery (s, bound {RECOVERY_BOUND:g}) |", "|---|---:|---:|",
        ]
        for fault, times in result.recoveries.items():
            lines.append(f"| {fault} | {len(times)} | {max(times):.1f} |")
        lines += ["", *[f"note: {n}" for n in result.notes]]
        kinds = Counter(v.kind for v in result.violations)
        lines += ["", f"violations: {len(result.violations)} {dict(kinds) if kinds else ''}"]
        lines += [f"- {v.kind} on {v.stream}: {v.detail}" for v in result.violations[:50]]
        lines.append("")
    return "\n".join(lines)
