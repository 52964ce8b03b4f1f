"""The dashboard as a user meets it: started as a service against the real broker, fed by the topics.

The browser test drives Debian's chromium (`apt-get install chromium`) with Playwright and saves a
screenshot to tests/artifacts/dashboard.png; without /usr/bin/chromium it skips.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared import messages as m
from shared.forecast_model import bucket_labels
from shared.kafka import Publisher, ensure_topics
from shared.settings import ModelSettings
from shared.topics import topic_registry
from tests.conftest import PROJECT_ROOT
from tests.support.service_process import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
START = datetime(2015, 3, 11, 0, 0, tzinfo=timezone.utc)
HOURS_OF_FLUX = 12


# ---- what the topics say --------------------------------------------------------------------------------

def flare_profile(minute: int, peak_minute: int, peak_flux: float) -> float:
    """A flare's XRS-B: a fast rise to the peak, then an exponential decay."""
    if minute < peak_minute - 12:
        return 0.0
    if minute <= peak_minute:
        return peak_flux * (1 - (peak_minute - minute) / 12)
    return peak_flux * math.exp(-(minute - peak_minute) / 25)


# (minute of the peak, class, peak flux): B flares, and a C flare four minutes after a bigger one, whose labels
# would only be noise
FLARES = [(190, "M2.4", 2.4e-5), (330, "B6.3", 6.3e-7), (420, "B8.0", 8.0e-7), (520, "C6.1", 6.1e-6),
          (524, "C5.8", 5.8e-6)]


def flux_history() -> list[m.FluxObserved]:
    observations = []
    for minute in range(HOURS_OF_FLUX * 60):
        background = 3e-7 * (1 + 0.3 * math.sin(minute / 90))
        xrsb = background + sum(flare_profile(minute, peak, flux) for peak, _, flux in FLARES)
        at = START + timedelta(minutes=minute)
        observations.append(m.FluxObserved(
            message_id=m.stable_id("GOES-15", 60, at), event_time=at, satellite="GOES-15", cadence_seconds=60,
            scaling_era="swpc_scaled", xrsa_flux=xrsb / 30, xrsb_flux=xrsb, source="test",
        ))
    return observations


def flares() -> list[m.FlareObserved]:
    return [
        m.FlareObserved(
            message_id=m.stable_id("flare", peak), event_time=START + timedelta(minutes=peak),
            start_time=START + timedelta(minutes=peak - 12), peak_time=START + timedelta(minutes=peak),
            goes_class=goes_class, class_letter=goes_class[0], peak_flux=flux, source="test", noaa_region="12297",
        )
        for peak, goes_class, flux in FLARES
    ]


def forecast(version: str) -> m.ForecastIssued:
    at = START + timedelta(hours=HOURS_OF_FLUX)
    buckets = bucket_labels(ModelSettings().time_bucket_edges_hours)  # the model's own bucket names
    survival = {
        target: m.SurvivalForecast(
            target_class=target, probability_distribution=dict(zip(buckets, shares)),
            time_points_hours=[6, 12, 24], survival_probabilities=[0.8, 0.7, 0.5], hazard_score=1.0,
            probability_within_24h=sum(shares[:3]),
        )
        for target, shares in (("C", [0.30, 0.15, 0.15, 0.15, 0.08, 0.03, 0.02, 0.02, 0.10]),
                               ("M", [0.08, 0.05, 0.07, 0.10, 0.07, 0.05, 0.04, 0.04, 0.50]),
                               ("X", [0.01, 0.01, 0.02, 0.02, 0.02, 0.01, 0.01, 0.02, 0.88]))
    }
    return m.ForecastIssued(
        message_id=m.stable_id("forecast", version, at), event_time=at, model_version=version, survival=survival,
        class_probabilities={"none": 0.4, "C": 0.43, "M": 0.15, "X": 0.02}, predicted_class="C",
    )


def metrics(version: str, *, shadow: bool, skill: float) -> list[m.MetricsUpdated]:
    updates = []
    for hour in range(0, HOURS_OF_FLUX + 1, 2):
        at = START + timedelta(hours=hour)
        drift = hour / 100
        scores = {"brier": 0.25 - skill / 2 + drift / 2, "precision": 0.5 + skill - drift, "recall": 0.45 + skill,
                  "tss": 0.2 + skill - drift}
        reliability = [
            {"target": "C", "bin_lower": b / 10, "bin_upper": (b + 1) / 10, "count": 40 - 3 * b,
             "mean_forecast": b / 10 + 0.05, "observed_frequency": min(1.0, (b / 10 + 0.05) * (1 - skill / 2) + 0.03)}
            for b in range(10)
        ]
        updates.append(m.MetricsUpdated(
            message_id=m.stable_id("metrics", version, shadow, at), event_time=at, model_version=version,
            shadow=shadow, window="30d", scored_count=120 + hour, metrics={f"C.{k}": v for k, v in scores.items()},
            reliability=reliability,
        ))
    return updates


def drift_alert(at: datetime) -> m.MetricDrift:
    return m.MetricDrift(message_id=m.stable_id("drift", at), event_time=at, model_version="v2", metric="C.brier",
                         value=0.31, baseline=0.2, threshold=0.3, window="30d")


def promotion(version: str, previous: str) -> m.ModelPromoted:
    at = START + timedelta(hours=HOURS_OF_FLUX, minutes=5)
    return m.ModelPromoted(message_id=m.stable_id("promote", version), event_time=at, version=version,
                           previous_version=previous, actor="operator", reason="beats the champion on Brier and TSS")


async def overlapping_labels(page, selector: str) -> list[list[str]]:
    """Pairs of the texts under `selector` whose drawn boxes intersect."""
    return await page.locator(selector).evaluate_all("""nodes => {
        const boxes = nodes.map(n => [n.textContent, n.getBoundingClientRect()]);
        const pairs = [];
        boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
            if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) pairs.push([a, b]);
        }));
        return pairs;
    }""")


async def publish(settings, *messages_by_topic: tuple[str, list[m.Message]]) -> None:
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        for topic, messages in messages_by_topic:
            await publisher.publish_many(topic, messages)


# ---- the running service --------------------------------------------------------------------------------

@pytest.fixture
def dashboard(settings, tmp_path: Path) -> Iterator[str]:
    """`python -m services.dashboard` on a free port, against this test's topics; yields its URL."""
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values()))
    service = ServiceProcess("dashboard", settings, tmp_path / "dashboard.log")
    service.start()
    try:
        asyncio.run(service.ready(timeout=60))
        yield service.url
    finally:
        exit_code = service.stop(timeout=15)
    assert exit_code == 0, f"the dashboard did not stop cleanly:\n{service.log_tail()}"


async def read_events(response: httpx.Response) -> asyncio.Queue:
    events: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                await events.put((name, json.loads(line[len("data: "):])))

    events.task = asyncio.create_task(pump())  # type: ignore[attr-defined]
    return events


async def test_the_stream_carries_a_snapshot_then_the_messages_published_after_it(settings, dashboard):
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", f"{dashboard}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_events(response)
        name, snapshot = await asyncio.wait_for(events.get(), 30)
        assert name == "snapshot" and snapshot["flux"] == [] and snapshot["history"] == []

        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(settings.topics.lifecycle, b'{"type": "ModelPromoted", "version": 3}')
        await producer.stop()
        await publish(settings, (settings.topics.flux, flux_history()[:30]),
                      (settings.topics.lifecycle, [promotion("v2", "v1")]))

        seen_flux, history = 0, []
        async with asyncio.timeout(60):
            while not (seen_flux and history):
                name, delta = await events.get()
                assert name == "delta"
                seen_flux += len(delta.get("flux", []))
                history += delta.get("history", [])
        events.task.cancel()

    assert history[0]["kind"] == "ModelPromoted" and history[0]["version"] == "v2"
    # two clocks: the flux time the decision is about, and when it was recorded (the broker record's timestamp)
    assert history[0]["event_ms"] == promotion("v2", "v1").event_time.timestamp() * 1000
    assert abs(history[0]["recorded_ms"] / 1000 - datetime.now(timezone.utc).timestamp()) < 120
    view = httpx.get(f"{dashboard}/api/snapshot").json()
    assert view["champion"] == "v2"
    assert max(row[3] for row in view["flux"]) == max(f.xrsb_flux for f in flux_history()[:30])
    health = httpx.get(f"{dashboard}/health").json()
    assert health["rejected"] == 1 and health["consumed"] == 31  # the malformed record was dead-lettered


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="Debian's chromium is not installed (/usr/bin/chromium); "
                           "`apt-get install chromium` to run this")
async def test_the_page_draws_every_chart_and_shows_a_promotion_live(settings, dashboard):
    from playwright.async_api import async_playwright

    await publish(
        settings,
        (settings.topics.flux, flux_history()),
        (settings.topics.flares, flares()),
        (settings.topics.forecasts, [forecast("v1")]),
        (settings.topics.metrics, metrics("v1", shadow=False, skill=0.05) + metrics("v2", shadow=True, skill=0.15)),
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 1300})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        # what the Content-Security-Policy blocks is only reported on the console
        page.on("console",
                lambda message: "Content Security Policy" in message.text and errors.append(message.text))
        answer = await page.goto(dashboard)
        assert "script-src 'self'" in answer.headers["content-security-policy"]

        await page.wait_for_function(
            "() => +document.querySelector('#flux-chart').dataset.points >= 144"
            f" && +document.querySelector('#flux-chart').dataset.flares === {len(FLARES)}"
            " && +document.querySelector('#reliability-chart').dataset.points > 0", timeout=60_000)
        assert await page.get_attribute("#class-probabilities", "data-bars") == "4"
        assert await page.get_attribute("#time-to-flare", "data-bars") == "27"
        assert await page.get_attribute("#metrics-charts", "data-series") == "2"
        assert await page.locator(".flare-marker[data-class='M2.4']").count() == 1
        # every flare has a marker; labels from C up only, none overlapping another
        assert await page.locator(".flare-marker").count() == len(FLARES)
        labels = await page.locator(".flare-label").evaluate_all("nodes => nodes.map(n => n.textContent)")
        assert sorted(labels) == ["C6.1", "M2.4"]
        assert await overlapping_labels(page, "#flux-chart .flare-label") == []
        # the time-to-flare buckets in hours after issue, each label clear of its neighbours
        bucket_names = await page.locator("#time-to-flare .bar").evaluate_all("bars => bars.map(b => b.dataset.label)")
        assert bucket_names[:9] == ["0–6", "6–12", "12–24", "24–48", "48–72", "72–96", "96–120", "120–168", ">168"]
        assert await overlapping_labels(page, "#time-to-flare text") == []
        assert await page.inner_text("#champion") == "v1"
        assert await page.locator("#history tr[data-kind]").count() == 0

        await publish(settings, (settings.topics.lifecycle, [promotion("v2", "v1")]))
        promoted = page.locator("#history tr[data-kind='ModelPromoted'][data-version='v2']")
        await promoted.wait_for(timeout=30_000)
        assert "beats the champion" in await promoted.inner_text()
        # a drift alert about earlier flux, recorded after the promotion: it heads the history (newest recorded
        # first) and shows the flux time it is about beside the time it was recorded
        await publish(settings, (settings.topics.alerts, [drift_alert(START + timedelta(hours=6))]))
        drift = page.locator("#history tbody tr").first
        await page.locator("#history tr[data-kind='MetricDrift']").wait_for(timeout=30_000)
        assert await drift.get_attribute("data-kind") == "MetricDrift"
        recorded, event_time = (await drift.locator("td").all_inner_texts())[:2]
        assert event_time == "2015-03-11 06:00"
        assert recorded.startswith(f"{datetime.now(timezone.utc):%Y-%m-%d} ")
        assert await page.locator("#history th").all_inner_texts() == [
            "recorded (UTC)", "event time (UTC)", "event", "version", "by", "details"]
        await page.wait_for_function("() => document.querySelector('#champion').textContent === 'v2'")
        assert await page.get_attribute("#connection", "data-state") == "live"

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        await browser.close()
    assert errors == []
