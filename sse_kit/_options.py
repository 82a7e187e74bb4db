"""Checks for configuration arguments: one home for the number checks.

A wrong value raises ``ValueError`` naming the argument, what was expected and
what was received (the ``STYLE.md`` rule for keyword-only configuration).
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_callable", "check_int", "check_seconds", "check_type"]


def check_type(name: str, value: object, expected: type[Any]) -> None:
    """*value* is an instance of *expected*; ``TypeError`` naming *name* if not."""
    if not isinstance(value, expected):
        module = expected.__module__
        label = expected.__name__ if module == "builtins" else f"sse_kit.{expected.__name__}"
        raise TypeError(f"{name} must be a {label}, not {type(value).__name__}")


def check_callable(name: str, value: object) -> None:
    """*value* is callable; ``TypeError`` naming *name* if not."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


def check_int(name: str, value: object, minimum: int, *, optional: bool = False) -> None:
    """*value* is an ``int`` (not a ``bool``) >= *minimum* (or ``None`` if *optional*)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_seconds(name: str, value: object, *, optional: bool = False) -> None:
    """*value* is a finite number of seconds > 0 (or ``None`` if *optional*)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite; use None for no limit, got {value!r}")
