"""Component: lifecycle, describe(), health()."""

from __future__ import annotations

import pytest

from sse_kit import Component, Description, Hub


def test_describe() -> None:
    assert Component().describe() == Description("SSE Hub", "sse", "Path: /events")
    assert Component(path="/sse").describe().details == "Path: /sse"


def test_health_follows_the_hub_thread() -> None:
    component = Component(Hub())
    assert not component.health().healthy
    component.start()
    health = component.health()
    assert health.healthy and health.details["clients"] == 0
    assert health.message == "0 client(s) connected"
    component.stop()
    assert component.health().status == "unhealthy"


def test_bad_path() -> None:
    with pytest.raises(ValueError, match="path"):
        Component(path="events")
