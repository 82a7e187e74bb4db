"""Argument checks: one home, one rule.

Every argument sse_kit checks (configuration, and the arguments of its calls) is
checked here, so that every refusal reads the same way: a wrong *type* raises
``TypeError``, a wrong *value* ``ValueError``; both name the argument, say what was
expected and what was received (``max_clients must be an int >= 1, got 0``;
``fast_path must be a bool, not str``). A ``bool`` is never taken for a number.
These are plain builtins, not :class:`~sse_kit.SSEKitError`: a wrong argument is a
mistake in the calling code, found the first time it runs, not a condition to
handle (``sse_kit._exceptions`` says which errors are).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Literal, overload

__all__ = [
    "check_callable",
    "check_choice",
    "check_int",
    "check_number",
    "check_seconds",
    "check_str",
    "check_type",
    "type_error",
    "value_error",
]


def type_error(name: str, expected: str, value: object) -> TypeError:
    """``TypeError``: *name* must be *expected*, not what *value* is."""
    return TypeError(f"{name} must be {expected}, not {type(value).__name__}")


def value_error(name: str, expected: str, value: object) -> ValueError:
    """``ValueError``: *name* must be *expected*, got *value*."""
    return ValueError(f"{name} must be {expected}, got {value!r}")


def _label(expected: type[Any]) -> str:
    """``a str``, ``a sse_kit.Hub``: how a message names a class."""
    module = expected.__module__
    name = expected.__name__ if module == "builtins" else f"sse_kit.{expected.__name__}"
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def check_type(name: str, value: object, expected: type[Any], *, optional: bool = False,
               what: str | None = None) -> None:
    """*value* is an instance of *expected* (or ``None`` if *optional*); *what*
    describes it in the message (default: the class's name)."""
    if (optional and value is None) or isinstance(value, expected):
        return
    described = what or _label(expected)
    raise type_error(name, f"{described} or None" if optional else described, value)


def check_callable(name: str, value: object, *, optional: bool = False,
                   what: str = "callable") -> None:
    """*value* is callable (or ``None`` if *optional*)."""
    if (optional and value is None) or callable(value):
        return
    raise type_error(name, f"{what} or None" if optional else what, value)


def check_str(name: str, value: object, *, empty: bool = False) -> str:
    """*value* is a ``str``, not empty unless *empty*; returns it."""
    if not isinstance(value, str):
        raise type_error(name, "a str", value)
    if not value and not empty:
        raise value_error(name, "a non-empty str", value)
    return value


@overload
def check_int(name: str, value: object, minimum: int, *, optional: Literal[False] = False,
              unit: str = "") -> int: ...
@overload
def check_int(name: str, value: object, minimum: int, *, optional: bool,
              unit: str = "") -> int | None: ...
def check_int(name: str, value: object, minimum: int, *, optional: bool = False,
              unit: str = "") -> int | None:
    """*value* is an ``int`` (not a ``bool``) >= *minimum* (or ``None`` if
    *optional*); *unit* (``"bytes"``) is named in the message. Returns it."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, f"an int{' or None' if optional else ''}", value)
    if value < minimum:
        raise value_error(name, f"an int >= {minimum}{f' {unit}' if unit else ''}", value)
    return value


def check_number(name: str, value: object, minimum: float, *, optional: bool = False,
                 unit: str = "") -> None:
    """*value* is a finite ``int`` or ``float`` (not a ``bool``) >= *minimum* (or
    ``None`` if *optional*); *unit* (``"seconds"``) is named in the message."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(name, f"a number{' or None' if optional else ''}", value)
    if not value >= minimum or math.isinf(value):  # NaN fails the comparison
        raise value_error(name, f"a finite number >= {minimum:g}{f' {unit}' if unit else ''}",
                          value)


def check_seconds(name: str, value: object, *, optional: bool = False) -> None:
    """*value* is a finite number of seconds > 0 (or ``None`` if *optional*, which
    is how an argument says "no limit")."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(name, f"a number of seconds{' or None' if optional else ''}", value)
    if value == math.inf:
        raise value_error(name, "finite; use None for no limit" if optional else "finite", value)
    if not value > 0:  # NaN fails the comparison
        raise value_error(name, "a number of seconds > 0", value)


def check_choice(name: str, value: object, choices: Collection[str]) -> None:
    """*value* is one of the strings *choices*."""
    check_type(name, value, str)
    if value not in choices:
        raise value_error(name, " or ".join(repr(c) for c in choices), value)
