"""Benchmark (not a timed test): the running gatekeeper's throughput and latency.

- clock: the GOES-15 hourly record (2010-09 to 2015-12) and the July 2015 1-minute month published to the flux
  topic, timed until the gatekeeper's event-time clock reaches the last reading; the monthly ticks it crossed
  and the requests they opened are counted (no trainer runs, so a request stays in flight and later ticks fold);
- alerts: 1,000 drift alerts, timed until every one is recorded as a trigger;
- writes: promote and rollback through the REST API, alternating, 100 of each: p50 and p99 latency.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_gatekeeper.py`).
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from services.ingestor.readers import read_path
from shared import messages as m
from shared import registry
from shared.kafka import Publisher
from tests.conftest import DATA_DIR
from tests.integration.test_gatekeeper_service import OPERATORS, count, gatekeeper_running

HOURLY = DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz"
JULY_2015 = DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz"


def flux_messages(path) -> list[m.FluxObserved]:
    return [
        m.FluxObserved(message_id=m.stable_id(r.satellite, r.cadence_seconds, r.time_tag), event_time=r.time_tag,
                       satellite=r.satellite, cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era,
                       xrsa_flux=r.xrsa_flux, xrsb_flux=r.xrsb_flux, source="bench")
        for r in read_path(path).flux if r.usable
    ]


@pytest.mark.slow
async def test_gatekeeper_throughput_and_write_latency(settings, clean_db, tmp_path):
    readings = sorted(flux_messages(HOURLY), key=lambda x: x.event_time)
    readings = [r for r in readings if r.event_time < datetime(2015, 7, 1, tzinfo=timezone.utc)] + flux_messages(JULY_2015)
    last = readings[-1].event_time
    storm = [m.MetricDrift(message_id=m.stable_id("bench-storm", uuid.uuid4().hex), event_time=last + timedelta(minutes=i),
                           model_version="v-bench", metric="C.brier", value=0.2, baseline=0.1, threshold=0.11,
                           window="30d") for i in range(1000)]

    async with gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log") as gatekeeper, \
            Publisher(settings.kafka_bootstrap_servers) as publisher:
        began = time.perf_counter()
        await publisher.publish_many(settings.topics.flux, readings)
        published = time.perf_counter() - began

        async def clock_at_end() -> bool:
            async with clean_db.acquire() as conn:
                return await conn.fetchval("SELECT last_event_time FROM gatekeeper_clock WHERE stream = 'flux'") == last
        await gatekeeper.until(clock_at_end, "the clock at the last reading", timeout=900)
        clock_seconds = time.perf_counter() - began
        monthly = await count(clean_db, "SELECT count(*) FROM retrain_triggers WHERE source = 'schedule'")
        opened = await count(clean_db, "SELECT count(*) FROM retrain_requests")

        began = time.perf_counter()
        await publisher.publish_many(settings.topics.alerts, storm)

        async def storm_recorded() -> bool:
            return await count(clean_db, "SELECT count(*) FROM retrain_triggers WHERE source = 'drift'") == len(storm)
        await gatekeeper.until(storm_recorded, "all drift alerts recorded", timeout=600)
        storm_seconds = time.perf_counter() - began

        kind = f"bench-{uuid.uuid4().hex[:6]}"
        async with clean_db.acquire() as conn:
            for name in ("a", "b"):
                await registry.register(
                    conn, version=f"{kind}-{name}", kind=kind, artifacts={}, digests={},
                    data_window=(last - timedelta(days=365), last), hyperparameters={}, validation={}, backtest={},
                    actor="bench", reason="bench")
        latencies: dict[str, list[float]] = {"promote": [], "rollback": []}
        headers = {"Authorization": f"Bearer {OPERATORS[0]}"}
        async with httpx.AsyncClient(base_url=gatekeeper.url, headers=headers, timeout=30) as api:
            await api.post(f"/models/{kind}-a/promote", json={"expected_current": None, "reason": "bench"})
            for _ in range(100):
                started = time.perf_counter()
                answer = await api.post(f"/models/{kind}-b/promote", json={"expected_current": f"{kind}-a", "reason": "bench"})
                latencies["promote"].append(time.perf_counter() - started)
                assert answer.status_code == 200
                started = time.perf_counter()
                answer = await api.post("/rollback", json={"from_version": f"{kind}-b", "reason": "bench"})
                latencies["rollback"].append(time.perf_counter() - started)
                assert answer.status_code == 200 and answer.json()["champion"] == f"{kind}-a"

    print(f"\nflux to the gatekeeper's clock: {len(readings):,} readings published in {published:.1f} s; clock at the "
          f"end after {clock_seconds:.1f} s ({len(readings) / clock_seconds:,.0f} readings/s); {monthly} monthly "
          f"ticks crossed with enough history, {opened} request(s) opened (the rest folded: no trainer answers)")
    print(f"drift alerts: {len(storm):,} recorded in {storm_seconds:.1f} s ({len(storm) / storm_seconds:,.0f} alerts/s)")
    for name, values in latencies.items():
        ordered = sorted(values)
        print(f"{name} via REST: p50 {statistics.median(ordered) * 1000:.1f} ms, "
              f"p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1000:.1f} ms over {len(ordered)} calls")
