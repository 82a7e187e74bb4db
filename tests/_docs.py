"""The code blocks of README.md and docs/*.md, for the tests that run them.

A block is a fenced block with a language (```` ```python ````). One that is not
meant to run alone (a piece of a larger file, an elided argument list) is marked
by the line ``<!-- fragment -->`` right above its fence; every other Python block
must run as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FRAGMENT = "<!-- fragment -->"
_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)
# "# app.py: run with  gunicorn ... app:app": a file to write and the command to serve it.
_RUN_WITH = re.compile(r"^# (?P<file>[\w.]+\.py): run with\s+(?P<command>gunicorn .+)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int
    language: str
    text: str
    fragment: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"

    @property
    def served(self) -> tuple[str, str] | None:
        """``(file name, gunicorn command)`` for an app block that says how to run it."""
        match = _RUN_WITH.match(self.text.split("\n", 1)[0])
        return None if match is None else (match["file"], match["command"])


def blocks(language: str) -> list[Block]:
    """Every *language* block of the docs, in order."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in _FENCE.finditer(text):
            if match[1] != language:
                continue
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found.append(Block(path, text.count("\n", 0, match.start()) + 1, language,
                               match[2], before.strip() == FRAGMENT))
    return found
