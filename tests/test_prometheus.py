"""The Prometheus exposition: every metric, the hub's values, the blueprint route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from sse_kit import Hub
from sse_kit._stats import COUNTERS, GAUGES
from sse_kit.flask import create_blueprint
from sse_kit.prometheus import CONTENT_TYPE, CONVERTED, HubMetrics
from tests._streams import Reader


@pytest.fixture
def hub() -> Iterator[Hub]:
    with Hub(client_buffer=2) as h:
        yield h


def scrape(text: bytes) -> dict[str, float]:
    """``{"<sample name>{hub}": value}`` of a text exposition."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out[f"{sample.name}{{{sample.labels['hub']}}}"] = sample.value
    return out


def test_every_metric_is_exposed_with_the_hubs_value(hub: Hub) -> None:
    hub.broadcast_to_pattern("*", "before the exporter")  # taken over at construction
    hub.flush()
    metrics = HubMetrics(hub, hub_label="main")
    reader = Reader(hub, "user:1")
    reader.take(1, event="connected")
    for i in range(5):  # buffer 2: the stream is cut as a slow client, or keeps up
        hub.broadcast_to_pattern("user:*", str(i))
    hub.flush()
    stats = hub.stats()
    samples = scrape(metrics.render())
    for name in COUNTERS:
        assert samples[f"sse_kit_{name}_total{{main}}"] == stats[name], name
    for name in GAUGES:
        if name not in CONVERTED:
            assert samples[f"sse_kit_{name}{{main}}"] == stats[name], name
    assert samples["sse_kit_published_total{main}"] == 6
    assert samples["sse_kit_connects_total{main}"] == 1
    assert samples["sse_kit_delivered_total{main}"] + stats["slow_disconnects"] >= 1
    reader.close()


def test_help_text_is_the_documented_meaning(hub: Hub) -> None:
    text = HubMetrics(hub).render().decode()
    assert f"# HELP sse_kit_resets_total {COUNTERS['resets']}" in text
    assert f"# HELP sse_kit_clients {GAUGES['clients']}" in text


def test_the_blueprint_serves_metrics_only_when_asked(hub: Hub) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(hub, metrics=True), url_prefix="/events")
    app.register_blueprint(create_blueprint(hub, name="quiet"), url_prefix="/quiet")
    client = app.test_client()
    hub.broadcast_to_pattern("*", "x")
    hub.flush()
    r = client.get("/events/metrics")
    assert r.status_code == 200 and r.content_type == CONTENT_TYPE
    assert scrape(r.data)["sse_kit_published_total{sse}"] == 1
    assert client.get("/quiet/metrics").status_code == 404



def test_the_backplane_lag_is_exposed_in_seconds(hub: Hub) -> None:
    metrics = HubMetrics(hub)
    hub.counters.set("backplane_lag_ms", 1500)
    assert scrape(metrics.render())["sse_kit_backplane_lag_seconds{sse}"] == 1.5
    assert "sse_kit_backplane_lag_ms" not in metrics.render().decode()
