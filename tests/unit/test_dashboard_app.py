"""The dashboard's web side without a broker: pages get a snapshot, then paced deltas, and never NaN."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from fastapi.testclient import TestClient

from services.dashboard.app import Hub, create_app, event_stream, sse_event, to_json
from services.dashboard.view import DashboardView
from shared.kafka import Received
from tests.unit.test_dashboard_view import flux, metrics, promoted


def parse_event(raw: str) -> tuple[str, dict]:
    fields = dict(line.split(": ", 1) for line in raw.strip().splitlines())
    return fields["event"], json.loads(fields["data"])


async def test_a_page_gets_the_snapshot_first_then_the_changes():
    hub = Hub(DashboardView(flux_bucket=timedelta(minutes=1)), push_interval=0)
    hub.apply([flux(0, 1e-7)])
    hub.push_changes()  # before anyone watches
    stream = event_stream(hub)
    assert (await anext(stream)).startswith("retry:")
    name, snapshot = parse_event(await anext(stream))
    assert name == "snapshot" and snapshot["reset"] and len(snapshot["flux"]) == 1

    recorded_ms = 1_764_000_000_000
    hub.apply([flux(1, 2e-7), Received(promoted(1), "lifecycle", 0, 7, recorded_ms)])  # as consumed from the broker
    assert hub.push_changes()

    name, delta = parse_event(await asyncio.wait_for(anext(stream), 5))
    assert name == "delta"
    assert [row[3] for row in delta["flux"]] == [2e-7]
    assert delta["history"][0]["version"] == "v2" and delta["history"][0]["recorded_ms"] == recorded_ms
    await stream.aclose()
    assert not hub.subscribers


async def test_an_idle_stream_sends_keepalive_comments():
    hub = Hub(DashboardView())
    stream = event_stream(hub, keepalive_seconds=0.01)
    await anext(stream), await anext(stream)
    assert await anext(stream) == ": keepalive\n\n"
    await stream.aclose()


def test_changes_are_pushed_at_most_once_per_interval_unless_forced():
    hub = Hub(DashboardView(), push_interval=3600)
    _, page = hub.subscribe()
    hub.apply([flux(0, 1e-7)])
    assert hub.push_changes()
    hub.apply([flux(1, 1e-7)])
    assert not hub.push_changes()
    assert hub.push_changes(force=True)
    assert page.queue.qsize() == 2


def test_a_page_that_falls_behind_is_disconnected_to_start_again_from_a_snapshot():
    hub = Hub(DashboardView(), push_interval=0, backlog=2)
    _, page = hub.subscribe()
    for minute in range(3):
        hub.apply([flux(minute * 10, 1e-7)])
        hub.push_changes()

    assert page not in hub.subscribers
    assert page.queue.get_nowait() is None  # the end of its stream, nothing stale before it


def test_json_for_the_browser_has_no_nan():
    payload = {"brier": float("nan"), "rows": [{"x": float("inf")}, 1.5]}
    assert json.loads(to_json(payload)) == {"brier": None, "rows": [{"x": None}, 1.5]}
    assert "NaN" not in sse_event("delta", payload)


def test_the_page_its_script_and_the_snapshot_are_served():
    hub = Hub(DashboardView())
    hub.apply([metrics(0), promoted(0)])
    client = TestClient(create_app(hub))

    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/dashboard.js"' in page.text
    assert "EventSource" in client.get("/static/dashboard.js").text
    snapshot = client.get("/api/snapshot").json()
    assert snapshot["champion"] == "v2" and snapshot["metrics"][0]["model_version"] == "v1"
    assert client.get("/health").json()["consumed"] == 2
