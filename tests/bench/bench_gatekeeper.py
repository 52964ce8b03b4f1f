"""Benchmark (not a timed test): the running gatekeeper's throughput and latency.

- clock: the GOES-15 hourly record (2010-09 to 2015-12) and the July 2015 1-minute month published to the flux
  topic, timed until the gatekeeper's event-time clock reaches the last reading; the monthly ticks it crossed
  and the requests they opened are counted (no trainer runs, so a request stays in flight and later ticks fold);
- alerts: 1,000 drift alerts, timed until every one is recorded as a trigger;
- writes: promote and rollback through the REST API, alternating, 100 of each: p50 and p99 latency, beside an
  authenticated read (`GET /champion?kind=`) interleaved with them.

The throughput figures stand beside a bare aiokafka loop reading and parsing the same topic on the same broker.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_gatekeeper.py`).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from services.ingestor.readers import read_path
from services.trainer import store as trainer_store
from shared import messages as m
from shared.kafka import Publisher
from tests.bench.baselines import bare_consume_seconds, record_latencies
from tests.conftest import DATA_DIR
from tests.integration.test_gatekeeper_service import count
from tests.support.gatekeeper_process import OPERATORS, gatekeeper_running

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
async def test_gatekeeper_throughput_and_write_latency(settings, clean_db, tmp_path, bench_figures):
    readings = sorted(flux_messages(HOURLY), key=lambda x: x.event_time)
    readings = ([r for r in readings if r.event_time < datetime(2015, 7, 1, tzinfo=timezone.utc)]
                + flux_messages(JULY_2015))
    last = readings[-1].event_time
    storm = [m.MetricDrift(message_id=m.stable_id("bench-storm", uuid.uuid4().hex),
                           event_time=last + timedelta(minutes=i), model_version="v-bench", metric="C.brier",
                           value=0.2, baseline=0.1, threshold=0.11, window="30d") for i in range(1000)]

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
                await trainer_store.register(
                    conn, version=f"{kind}-{name}", kind=kind, artifacts={}, digests={},
                    data_window=(last - timedelta(days=365), last), hyperparameters={}, validation={}, backtest={},
                    actor="bench", reason="bench")
        latencies: dict[str, list[float]] = {"promote": [], "rollback": [], "read": []}
        headers = {"Authorization": f"Bearer {OPERATORS[0]}"}
        async with httpx.AsyncClient(base_url=gatekeeper.url, headers=headers, timeout=30) as api:
            async def timed(what: str, call) -> httpx.Response:
                started = time.perf_counter()
                answer = await call
                latencies[what].append(time.perf_counter() - started)
                return answer

            # never judged by the gates: the first promotions override them
            await api.post(f"/models/{kind}-a/promote",
                           json={"expected_current": None, "reason": "bench", "force": True})
            for _ in range(100):
                answer = await timed("promote", api.post(f"/models/{kind}-b/promote",
                                                         json={"expected_current": f"{kind}-a", "reason": "bench",
                                                               "force": True}))
                assert answer.status_code == 200
                answer = await timed("read", api.get("/champion", params={"kind": kind}))
                assert answer.status_code == 200 and answer.json()[0]["champion"]["version"] == f"{kind}-b"
                answer = await timed("rollback",
                                     api.post("/rollback", json={"from_version": f"{kind}-b", "reason": "bench"}))
                assert answer.status_code == 200 and answer.json()["champion"] == f"{kind}-a"
                answer = await timed("read", api.get("/champion", params={"kind": kind}))
                assert answer.status_code == 200 and answer.json()[0]["champion"]["version"] == f"{kind}-a"

    bare_flux = await bare_consume_seconds(settings.kafka_bootstrap_servers, [settings.topics.flux], len(readings))
    bare_alerts = await bare_consume_seconds(settings.kafka_bootstrap_servers, [settings.topics.alerts], len(storm))
    bench_figures("gatekeeper", "flux to the event-time clock", len(readings) / clock_seconds, "readings/s",
                  baseline=("bare aiokafka read + parse, same topic", len(readings) / bare_flux),
                  note=f"{len(readings):,} readings published in {published:.1f} s, clock at the end after "
                       f"{clock_seconds:.1f} s; {monthly} monthly ticks crossed with enough history, "
                       f"{opened} request(s) opened (the rest folded: no trainer answers)")
    bench_figures("gatekeeper", "drift alerts recorded as triggers", len(storm) / storm_seconds, "alerts/s",
                  baseline=("bare aiokafka read + parse, same topic", len(storm) / bare_alerts),
                  note=f"{len(storm):,} alerts in {storm_seconds:.1f} s")
    for write in ("promote", "rollback"):
        record_latencies(bench_figures, "gatekeeper", f"{write} via REST", latencies[write],
                         "GET /champion, same token", latencies["read"],
                         note=f"{len(latencies[write])} calls, {len(latencies['read'])} reads interleaved")
