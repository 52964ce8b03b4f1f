"""What the metrics say, without a broker: the consumer lag at each scrape, and the REST latency by route."""

from __future__ import annotations

import math
import socket
import urllib.request
import uuid

import httpx
from aiokafka.structs import TopicPartition
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from shared.http import serve_metrics
from shared.telemetry import ConsumerLag, start_metrics_server


def lag_of(topic: str) -> float | None:
    return REGISTRY.get_sample_value("flare_consumer_lag_messages", {"topic": topic, "partition": "0"})


def test_the_lag_is_what_the_partition_holds_past_the_last_record_read_whenever_it_is_scraped():
    topic = f"lag-{uuid.uuid4().hex[:6]}"
    tp = TopicPartition(topic, 0)
    ends: dict = {}

    def highwater(partition):
        if ends.get(partition) == "revoked":
            raise AssertionError("partition not assigned")
        return ends.get(partition)

    lag = ConsumerLag(highwater)
    assert lag_of(topic) is None and lag.lag(tp) is None  # nothing read: no series, and /health says unknown
    lag.read(tp, 9)
    assert math.isnan(lag_of(topic)) and lag.lag(tp) is None  # the client has not fetched the partition's end yet
    ends[tp] = 10
    assert lag_of(topic) == 0 and lag.lag(tp) == 0
    ends[tp] = 25  # the consumer stopped reading: its lag grows without another record
    assert lag_of(topic) == 15 and lag.lag(tp) == 15
    lag.read(tp, 24)
    assert lag_of(topic) == 0 and lag.lag(tp) == 0
    ends[tp] = "revoked"
    assert math.isnan(lag_of(topic)) and lag.lag(tp) is None


async def test_each_request_is_timed_under_its_route_template_and_metrics_are_served():
    app = FastAPI()
    serve_metrics(app)
    marker = uuid.uuid4().hex[:8]

    @app.get(f"/{marker}/{{item}}")
    async def item(item: int) -> dict:
        return {"item": item}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get(f"/{marker}/1")).status_code == 200
        assert (await client.get(f"/{marker}/2")).status_code == 200
        assert (await client.get(f"/{marker}/not-a-number")).status_code == 422
        scrape = await client.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    counts = {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(scrape.text) for s in family.samples
        if s.name == "flare_http_request_duration_seconds_count" and s.labels["route"].startswith(f"/{marker}")
    }
    assert counts == {(f"/{marker}/{{item}}", "200"): 2, (f"/{marker}/{{item}}", "422"): 1}
    assert "/metrics" not in app.openapi()["paths"]


def test_a_service_whose_metrics_port_is_taken_runs_on_without_metrics_and_a_free_one_serves_them():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        with capture_logs() as logged:
            stop = start_metrics_server(taken_port, "127.0.0.1")
        stop()
    assert [entry["port"] for entry in logged if entry["event"] == "metrics.unavailable"] == [taken_port]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = start_metrics_server(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"flare_messages_consumed_total" in answer.read()
    finally:
        stop()
