"""Benchmark (not a timed test): how fast the evaluator scores a replay.

- decisions alone (no broker): a year of hourly GOES-15 flux, hourly forecasts and the year's flares through
  `services.evaluator.core`, drift judged after every resolution; then one computation of every window;
- the running service: the July 2015 1-minute month (44,640 readings), its hourly forecasts and its flares
  published to the broker, timed until the last outcome is in the prediction log, beside the same messages
  through the pure decision loop in this process.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_evaluator.py`).
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pandas as pd
import pytest

from services.evaluator.core import Evaluator
from services.evaluator.metrics import MetricBook
from tests.bench.baselines import bare_consume_seconds, faust_floor_seconds
from tests.conftest import DATA_DIR
from tests.integration.test_evaluator_service import persistence_forecasts, publish
from tests.integration.test_evaluator_service import worker_env as worker_env  # fixture, re-exported
from tests.support.service_process import ServiceProcess, running
from tests.support.evaluator_data import at, flux, forecast, reference_flares, reference_flux

JULY_2015_1MIN = DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz"


def minute_flux():
    frame = pd.read_csv(JULY_2015_1MIN, parse_dates=["time_tag"])
    valid = (frame["B_QUAL_FLAG"] == 0) & (frame["B_AVG"] > 0)
    return [flux(t.tz_localize("UTC").to_pydatetime(), float(b) if ok else None)
            for t, b, ok in zip(frame["time_tag"], frame["B_AVG"], valid)]


def decide(evaluator: Evaluator, readings, flares, forecasts) -> dict:
    """Every message through the decisions in event-time order, as the stream delivers them; the last
    as-of time of each (version, shadow) whose figures changed."""
    pending_flares, upcoming = iter(sorted(flares, key=lambda f: f.peak_time)), iter(forecasts)
    next_flare, next_forecast, as_of = next(pending_flares, None), next(upcoming, None), {}
    for reading in readings:
        while next_flare is not None and next_flare.peak_time <= reading.event_time:
            evaluator.take_flare(next_flare)
            next_flare = next(pending_flares, None)
        while next_forecast is not None and next_forecast.event_time <= reading.event_time:
            evaluator.settle(evaluator.take_forecast(next_forecast))
            next_forecast = next(upcoming, None)
        as_of.update(evaluator.settle(evaluator.take_flux(reading)).dirty)
    return as_of


@pytest.mark.slow
def test_decision_throughput_over_a_year(settings, bench_figures):
    start, end = at(1, month=1, year=2014), at(1, month=1, year=2015)
    readings = reference_flux(start, end + timedelta(days=2))
    flares = reference_flares(start - timedelta(days=1), end + timedelta(days=2))
    forecasts = [forecast(t.to_pydatetime(), 0.3) for t in pd.date_range(start, end, freq="h", inclusive="left")]
    evaluator = Evaluator.for_settings(settings, MetricBook())

    began = time.perf_counter()
    as_of = decide(evaluator, readings, flares, forecasts)
    decisions = time.perf_counter() - began
    began = time.perf_counter()
    figures = evaluator.metrics(("v1", False), as_of[("v1", False)])
    metrics_seconds = time.perf_counter() - began

    assert len(evaluator.book) == len(forecasts)
    messages = len(readings) + len(flares) + len(forecasts)
    bench_figures("evaluator", "decisions alone, a year of hourly flux", messages / decisions, "msgs/s",
                  note=f"{messages:,} messages, {len(evaluator.book):,} forecasts resolved, drift judged each time")
    bench_figures("evaluator", "metrics, every window once", metrics_seconds, "s",
                  note=", ".join(f"{u.window}: {u.scored_count} scored" for u in figures))


@pytest.mark.slow
async def test_service_throughput_on_a_month_of_one_minute_flux(
    settings, worker_env, clean_db, tmp_path, bench_figures,
):
    version = f"bench-{uuid.uuid4().hex[:6]}"
    start = at(1, month=7, year=2015)
    readings = minute_flux()
    flares = reference_flares(start - timedelta(days=1), start + timedelta(days=32))
    forecasts = persistence_forecasts(start, start + timedelta(days=29), flares, version)
    messages = len(readings) + len(flares) + len(forecasts)

    # the baseline: the same messages through the pure decisions, judged with the worker's thresholds
    same_rules = settings.model_copy(update={
        "thresholds": settings.thresholds.model_copy(
            update={"min_scored_before_alert": int(worker_env["THRESHOLDS__MIN_SCORED_BEFORE_ALERT"])}),
        "evaluator": settings.evaluator.model_copy(
            update={"drift_window_days": int(worker_env["EVALUATOR__DRIFT_WINDOW_DAYS"])})})
    alone = Evaluator.for_settings(same_rules, MetricBook())
    began = time.perf_counter()
    decide(alone, readings, flares, forecasts)
    decisions = time.perf_counter() - began
    assert len(alone.book) == len(forecasts)

    async with running(ServiceProcess("evaluator", settings, tmp_path / "evaluator.log", **worker_env)) as worker:
        # warm up: the worker has joined its group and resolved a forecast before the clock starts
        warm_up = at(1, month=6, year=2015)
        await publish(settings, "forecasts", [forecast(warm_up, 0.1, version=f"{version}-warm-up")])
        await publish(settings, "flux", [flux(warm_up + timedelta(hours=h)) for h in range(0, 27)])
        await worker.until(lambda: _resolved(clean_db, 1), "the warm-up forecast resolved")
        began = time.perf_counter()
        await publish(settings, "flares", flares)
        await publish(settings, "forecasts", forecasts)
        await publish(settings, "flux", readings)
        published = time.perf_counter() - began
        # polled often: the whole month takes seconds, and the poll's interval would be a large part of it
        await worker.until(lambda: _resolved(clean_db, 1 + len(forecasts)), "every forecast resolved", timeout=600,
                           interval=0.05)
        seconds = time.perf_counter() - began

    # what faust itself manages on the same records, and a bare aiokafka loop: the service's topics read again by
    # a worker that only parses each record
    warm_up_messages = 1 + 27
    inputs = [settings.topics.forecasts, settings.topics.flux, settings.topics.flares]
    floor_seconds = await faust_floor_seconds(settings.kafka_bootstrap_servers, inputs, messages + warm_up_messages)
    bare_seconds = await bare_consume_seconds(settings.kafka_bootstrap_servers, inputs, messages + warm_up_messages)

    note = (f"{len(readings):,} readings, {len(forecasts)} forecasts, {len(flares)} flares published in "
            f"{published:.1f} s, every forecast resolved in the prediction log after {seconds:.1f} s")
    bench_figures("evaluator", "service, July 2015 1-min month", messages / seconds, "msgs/s",
                  baseline=("pure decision loop, same messages", messages / decisions), note=note)
    bench_figures("evaluator", "service, July 2015 1-min month, against faust", messages / seconds, "msgs/s",
                  baseline=("bare faust agent, same records", (messages + warm_up_messages) / floor_seconds),
                  note="the bare agent takes the same batches and parses each record, nothing more")
    bench_figures("evaluator", "service, July 2015 1-min month, against aiokafka", messages / seconds, "msgs/s",
                  baseline=("bare aiokafka consume -> json, same records",
                            (messages + warm_up_messages) / bare_seconds),
                  note="what the broker delivers to one consumer that only parses: the ceiling of any service here")


async def _resolved(pool, count: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM flare_prediction_log WHERE resolved_at IS NOT NULL") >= count
