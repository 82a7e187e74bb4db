"""Component: lifecycle, describe(), health()."""

from __future__ import annotations

from sse_kit import Component, Description, Hub


def test_describe() -> None:
    assert Component().describe() == Description("SSE Hub", "sse", "Path: /events")
    assert Component(path="/sse").describe().details == "Path: /sse"


def test_named_sse_as_gokit_names_it() -> None:
    component = Component(Hub())
    assert component.name == "sse"
    assert component.health().name == "sse"  # unhealthy: the hub is not started
    with component.hub:
        health = component.health()
        assert health.healthy and health.name == "sse"


def test_health_follows_the_hub_thread() -> None:
    component = Component(Hub())
    assert not component.health().healthy
    component.start()
    health = component.health()
    assert health.healthy and health.details["clients"] == 0
    assert health.message.startswith("0 client(s) connected; 0 published")
    component.stop()
    assert component.health().status == "unhealthy"


def test_component_describe_and_health_report_the_same_numbers() -> None:
    hub = Hub()
    component = Component(hub, path="/events")
    assert not component.health().healthy
    component.start()
    try:
        hub.broadcast_to_pattern("*", "x")
        hub.flush()
        described, health = component.describe(), component.health()
        assert (described.name, described.type, described.details) == (
            "SSE Hub", "sse", "Path: /events")
        assert described.metrics == health.details == hub.stats()
        assert health.healthy and health.details["published"] == 1
        assert health.message.startswith("0 client(s) connected; 1 published")
    finally:
        component.stop()
    assert component.health().status == "unhealthy"
