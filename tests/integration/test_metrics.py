"""An operator's Prometheus scrapes every service at /metrics after real traffic, and reads what happened:
records consumed and dead-lettered per topic, consumer lag, forecasts issued per model version and status, the
latest Brier score per version and window, REST latency, retrain requests and gate verdicts."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from services.trainer import store as trainer_store
from shared import messages as m
from shared.kafka import Publisher
from tests.support.swpc_server import FEED
from tests.support.evaluator_data import at, forecast, hourly_flux
from tests.support.gatekeeper_process import gatekeeper_running
from tests.support.predictor_models import register_model
from tests.support.predictor_service import predictor_running, read_forecasts
from tests.support.service_process import ServiceProcess, running
from tests.support.topic_reader import read_all
from tests.support.ports import free_test_port

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(url: str) -> Samples:
    """Every sample of the service's /metrics, parsed as Prometheus parses it."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for have, value in samples.get(name, []) if all(have.get(k) == v for k, v in labels.items()))


async def scraped(service: ServiceProcess, url: str, condition, what: str, timeout: float = 120.0) -> Samples:
    """The first scrape for which `condition(samples)` holds (the service counts as it goes)."""
    async def attempt():
        try:
            samples = await scrape(url)
        except httpx.TransportError:
            return None
        return samples if condition(samples) else None
    return await service.until(attempt, what, timeout=timeout)


async def publish_raw(settings, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def publish(settings, topic: str, messages: list[m.Message]) -> None:
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        await publisher.publish_many(topic, messages)


def assert_latency_recorded(samples: Samples, route: str, status: str) -> None:
    count = total(samples, "flare_http_request_duration_seconds_count", route=route, status=status)
    assert count >= 1, (route, status)
    assert 0 < total(samples, "flare_http_request_duration_seconds_sum", route=route, status=status) < 30 * count
    assert total(samples, "flare_http_request_duration_seconds_bucket", route=route, status=status, le="+Inf") == count


async def test_the_predictor_counts_what_it_read_rejected_and_issued(settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        champion = await register_model(conn, tmp_path / "models", status="champion")
    flux = hourly_flux(at(1), at(1, 6))
    async with predictor_running(settings, tmp_path / "predictor.log") as predictor:
        await publish_raw(settings, settings.topics.flux, b"not json")
        await publish(settings, settings.topics.flux, flux)
        issued = await read_forecasts(settings, 5)
        assert (await predictor.post("/predict/survival", json={"timestamp": "soon"})).status_code == 422
        samples = await scraped(predictor, predictor.url, lambda s: total(
            s, "flare_messages_consumed_total", topic=settings.topics.flux) == len(flux) + 1, "every flux record read")

    assert total(samples, "flare_messages_dead_lettered_total", topic=settings.topics.flux) == 1
    assert total(samples, "flare_forecasts_issued_total", model_version=champion, shadow="false") == len(issued)
    assert {labels["status"] for labels, _ in samples["flare_forecasts_issued_total"]} <= {"ok", "insufficient_data"}
    assert total(samples, "flare_messages_published_total", topic=settings.topics.forecasts) == len(issued)
    assert samples["flare_consumer_lag_messages"] and total(
        samples, "flare_consumer_lag_messages", topic=settings.topics.flux, partition="0") == 0
    assert_latency_recorded(samples, "/health", "200")
    assert_latency_recorded(samples, "/predict/survival", "422")


async def test_the_evaluator_exports_the_latest_brier_score_per_version_and_window(settings, clean_db, tmp_path):
    version = f"v-{uuid.uuid4().hex[:6]}"
    env = {"EVALUATOR__APP_NAME": f"evaluator-{uuid.uuid4().hex[:8]}"}
    async with running(ServiceProcess("evaluator", settings, tmp_path / "evaluator.log", **env)) as evaluator:
        forecasts = [forecast(at(1, hour), 0.2, version=version) for hour in range(6)]
        await publish(settings, settings.topics.forecasts, forecasts)
        await publish_raw(settings, settings.topics.forecasts, b'{"type": "ForecastIssued"}')
        await publish(settings, settings.topics.flux, hourly_flux(at(1), at(3)))  # quiet: no flare follows
        samples = await scraped(evaluator, evaluator.url, lambda s: total(
            s, "flare_forecast_brier_score", model_version=version, window="all", target="C"), "a Brier score")
        assert (await evaluator.get("/metrics/performance", params={"model_version": version})).status_code == 200
        samples = await scrape(evaluator.url)

    assert total(samples, "flare_forecast_brier_score", model_version=version, shadow="false", window="all",
                 target="C") == pytest.approx(0.2 ** 2)
    assert {labels["window"] for labels, _ in samples["flare_forecast_brier_score"]} >= {"7d", "all"}
    assert total(samples, "flare_messages_consumed_total", topic=settings.topics.forecasts) == len(forecasts) + 1
    assert total(samples, "flare_messages_dead_lettered_total", topic=settings.topics.forecasts) == 1
    assert total(samples, "flare_messages_published_total", topic=settings.topics.outcomes) == len(forecasts)
    assert total(samples, "flare_messages_published_total", topic=settings.topics.metrics) >= 1
    assert_latency_recorded(samples, "/metrics/performance", "200")


async def test_the_gatekeeper_counts_retrain_requests_and_gate_verdicts(settings, clean_db, tmp_path):
    kind = f"bundle-{uuid.uuid4().hex[:8]}"
    candidate = f"{kind}-weak"
    async with clean_db.acquire() as conn:
        await trainer_store.register(
            conn, version=candidate, kind=kind, artifacts={}, digests={},
            data_window=(datetime(2014, 1, 1, tzinfo=timezone.utc), datetime(2015, 1, 1, tzinfo=timezone.utc)),
            hyperparameters={}, validation={"checks": {"no_nan": True}, "c_index": {"C": 0.72}},
            backtest={"f1": 0.35, "precision": 0.5, "brier": 0.1}, actor="trainer", reason="test candidate")
    now = datetime.now(timezone.utc)
    drift = m.MetricDrift(message_id=str(uuid.uuid4()), event_time=now, model_version="v1", metric="C.brier",
                          value=0.4, baseline=0.1, threshold=0.3, window="7d")
    trained = m.ModelTrained(message_id=m.stable_id("trained", candidate), event_time=now, version=candidate,
                             artifacts={}, evidence={})
    async with gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log") as gatekeeper:
        await publish(settings, settings.topics.alerts, [drift])
        await publish_raw(settings, settings.topics.alerts, b"[1, 2]")
        await publish(settings, settings.topics.lifecycle, [trained])
        samples = await scraped(gatekeeper, gatekeeper.url, lambda s: total(s, "flare_gate_verdicts_total") >= 1
                                and total(s, "flare_retrain_requests_total") >= 1, "a verdict and a retrain request")

    assert total(samples, "flare_retrain_requests_total", trigger="drift", decision="requested") == 1
    assert total(samples, "flare_gate_verdicts_total", decision="reject") == 1
    assert total(samples, "flare_messages_dead_lettered_total", topic=settings.topics.alerts) == 1
    assert total(samples, "flare_messages_published_total", topic=settings.topics.retrain_requests) == 1
    assert_latency_recorded(samples, "/health", "200")


async def test_the_dashboard_counts_the_topics_it_reads(settings, tmp_path):
    async with running(ServiceProcess("dashboard", settings, tmp_path / "dashboard.log")) as dashboard:
        await publish(settings, settings.topics.forecasts, [forecast(at(1), 0.3, version="v1")])
        await publish_raw(settings, settings.topics.forecasts, b"\xff\xfe")
        assert (await dashboard.get("/nowhere")).status_code == 404
        samples = await scraped(dashboard, dashboard.url, lambda s: total(
            s, "flare_messages_consumed_total", topic=settings.topics.forecasts) == 2, "both forecast records read")

    assert total(samples, "flare_messages_dead_lettered_total", topic=settings.topics.forecasts) == 1
    assert total(samples, "flare_consumer_lag_messages", topic=settings.topics.forecasts, partition="0") == 0
    assert_latency_recorded(samples, "/health", "200")
    assert_latency_recorded(samples, "unmatched", "404")  # a path never becomes a label of its own


async def test_the_trainer_serves_its_counts_on_its_metrics_port(settings, clean_db, tmp_path):
    port = free_test_port()
    url = f"http://127.0.0.1:{port}"
    year_1971 = datetime(1971, 1, 1, tzinfo=timezone.utc)  # nothing to train on before it: refused at once
    too_early = m.RetrainRequested(message_id=str(uuid.uuid4()), event_time=year_1971, reason="test",
                                   requested_by="test", train_until=year_1971)
    trainer = ServiceProcess("trainer", settings, tmp_path / "trainer.log", TRAINER_METRICS_PORT=str(port))
    async with running(trainer):
        await publish_raw(settings, settings.topics.retrain_requests, b'{"type": "RetrainRequested", "reason": 3}')
        await publish(settings, settings.topics.retrain_requests, [too_early])
        samples = await scraped(trainer, url, lambda s: total(
            s, "flare_messages_published_total", topic=settings.topics.lifecycle) == 1, "the request answered")

    assert total(samples, "flare_messages_consumed_total", topic=settings.topics.retrain_requests) == 2
    assert total(samples, "flare_messages_dead_lettered_total", topic=settings.topics.retrain_requests) == 1
    assert total(samples, "flare_messages_published_total", topic=settings.topics.dead_letters) == 1


async def test_the_live_ingestor_serves_what_it_published_on_its_metrics_port(
        settings, clean_db, swpc, tmp_path):
    port = free_test_port()
    url = f"http://127.0.0.1:{port}"
    ingestor = ServiceProcess("ingestor", settings, tmp_path / "ingestor.log", INGESTOR_METRICS_PORT=str(port),
                              INGESTION__SWPC_BASE_URL=swpc.base_url, INGESTION__SWPC_FEEDS=f'["{FEED}"]',
                              INGESTION__POLL_INTERVAL_SECONDS="3600")
    async with running(ingestor):
        samples = await scraped(ingestor, url, lambda s: total(
            s, "flare_messages_published_total", topic=settings.topics.flux) > 0, "the feed published")
        on_topic = await read_all(settings, "flux", 1000, at_least=1)
    assert total(samples, "flare_messages_published_total", topic=settings.topics.flux) == len(on_topic) > 100
