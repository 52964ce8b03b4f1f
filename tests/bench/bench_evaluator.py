"""Benchmark (not a timed test): how fast the evaluator scores a replay.

- decisions alone (no broker): a year of hourly GOES-15 flux, hourly forecasts and the year's flares through
  `services.evaluator.core`, drift judged after every resolution; then one computation of every window;
- the running service: the July 2015 1-minute month (44,640 readings), its hourly forecasts and its flares
  published to the broker, timed until the last outcome is in the prediction log.

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
from tests.conftest import DATA_DIR
from tests.integration.test_evaluator_service import evaluator_running, persistence_forecasts, publish, worker_env  # noqa: F401
from tests.support.evaluator_data import at, flux, forecast, reference_flares, reference_flux

JULY_2015_1MIN = DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz"


def minute_flux():
    frame = pd.read_csv(JULY_2015_1MIN, parse_dates=["time_tag"])
    valid = (frame["B_QUAL_FLAG"] == 0) & (frame["B_AVG"] > 0)
    return [flux(t.tz_localize("UTC").to_pydatetime(), float(b) if ok else None)
            for t, b, ok in zip(frame["time_tag"], frame["B_AVG"], valid)]


@pytest.mark.slow
def test_decision_throughput_over_a_year(settings):
    start, end = at(1, month=1, year=2014), at(1, month=1, year=2015)
    readings = reference_flux(start, end + timedelta(days=2))
    flares = reference_flares(start - timedelta(days=1), end + timedelta(days=2))
    forecasts = [forecast(t.to_pydatetime(), 0.3) for t in pd.date_range(start, end, freq="h", inclusive="left")]
    evaluator = Evaluator.for_settings(settings, MetricBook())

    began = time.perf_counter()
    pending_flares, upcoming = iter(sorted(flares, key=lambda f: f.peak_time)), iter(forecasts)
    next_flare, next_forecast, as_of = next(pending_flares, None), next(upcoming, None), 0
    for reading in readings:  # in event-time order, as the stream delivers them
        while next_flare is not None and next_flare.peak_time <= reading.event_time:
            evaluator.take_flare(next_flare)
            next_flare = next(pending_flares, None)
        while next_forecast is not None and next_forecast.event_time <= reading.event_time:
            evaluator.settle(evaluator.take_forecast(next_forecast))
            next_forecast = next(upcoming, None)
        as_of = evaluator.settle(evaluator.take_flux(reading)).dirty.get(("v1", False), as_of)
    decisions = time.perf_counter() - began
    began = time.perf_counter()
    figures = evaluator.metrics(("v1", False), as_of)
    metrics_seconds = time.perf_counter() - began

    messages = len(readings) + len(flares) + len(forecasts)
    print(f"\ndecisions: {messages} messages ({len(evaluator.book)} forecasts resolved) in {decisions:.2f} s "
          f"= {messages / decisions:,.0f} messages/s")
    print(f"metrics: every window ({', '.join(f'{u.window}={u.scored_count}' for u in figures)} scored) in {metrics_seconds:.2f} s")
    assert len(evaluator.book) == len(forecasts)


@pytest.mark.slow
async def test_service_throughput_on_a_month_of_one_minute_flux(settings, worker_env, clean_db, tmp_path):
    version = f"bench-{uuid.uuid4().hex[:6]}"
    start = at(1, month=7, year=2015)
    readings = minute_flux()
    flares = reference_flares(start - timedelta(days=1), start + timedelta(days=32))
    forecasts = persistence_forecasts(start, start + timedelta(days=29), flares, version)

    with evaluator_running(worker_env, tmp_path / "evaluator.log") as worker:
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
        await worker.until(lambda: _resolved(clean_db, 1 + len(forecasts)), "every forecast resolved", timeout=600)
        seconds = time.perf_counter() - began

    messages = len(readings) + len(flares) + len(forecasts)
    print(f"\nservice: {messages} messages ({len(readings)} 1-min readings, {len(forecasts)} forecasts, {len(flares)} flares) "
          f"published in {published:.1f} s, all {len(forecasts)} forecasts resolved after {seconds:.1f} s "
          f"= {messages / seconds:,.0f} messages/s")


async def _resolved(pool, count: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM flare_prediction_log WHERE resolved_at IS NOT NULL") >= count
