"""The public surface: __all__ sorted, complete, and documented; the error tree."""

from __future__ import annotations

import inspect

import sse_kit
from sse_kit import SSEKitError


def _isort_key(name: str) -> tuple[int, str]:
    """ruff RUF022's order: CONSTANTS, then Classes, then everything else."""
    if name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(sse_kit) if not n.startswith("_") and n != "annotations"
              and not inspect.ismodule(
        getattr(sse_kit, n))} | {"__version__"}
    assert sorted(sse_kit.__all__, key=_isort_key) == sse_kit.__all__
    assert set(sse_kit.__all__) == public


def test_everything_public_has_a_docstring() -> None:
    for name in sse_kit.__all__:
        obj = getattr(sse_kit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name
            for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                if not attr.startswith("_") and (inspect.isfunction(member)
                                                 or isinstance(member, property)):
                    assert member.__doc__, f"{name}.{attr}"


def test_every_exception_is_an_sse_kit_error() -> None:
    errors = [getattr(sse_kit, n) for n in sse_kit.__all__
              if inspect.isclass(getattr(sse_kit, n))
              and issubclass(getattr(sse_kit, n), BaseException)]
    assert len(errors) >= 6
    for exc in errors:
        assert issubclass(exc, SSEKitError)
    assert issubclass(sse_kit.InvalidPattern, ValueError)
    assert issubclass(sse_kit.EventTooLarge, ValueError)
    assert issubclass(sse_kit.BackplaneUnavailable, ConnectionError)
