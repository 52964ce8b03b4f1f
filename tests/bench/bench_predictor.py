"""Benchmark (not a timed test): the predictor beside the bare minimum on the same machine in the same run.

- replay: the July 2015 1-minute month (44,285 usable readings) ingested while the predictor runs; readings a
  second through the predictor, beside a bare aiokafka consume -> json -> produce loop over the same topic;
- live: readings published one at a time at a live-like pace; latency from publishing the reading that makes
  an issue time due to the forecast arriving on the forecasts topic (p50/p99), beside the same latency
  through a bare aiokafka consume -> produce loop;
- REST: `POST /predict/survival` under 20 concurrent clients (p50/p99), beside a bare FastAPI route served by
  uvicorn in its own process.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_predictor.py`).
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import infra
from shared import messages as m
from shared.kafka import Publisher, decode, encode
from shared.topics import topic_registry
from tests.support.predictor_models import JULY_2015, register_model
from tests.support.predictor_service import ingest, predictor_running

CLIENTS = 20
REQUESTS_PER_CLIENT = 15
LIVE_PACE_SECONDS = 0.02  # 50 readings a second: far below capacity, so latency is not queueing
LIVE_HOURS = 60
BARE_API = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.post("/bare")
async def bare(body: dict) -> dict:
    return {"timestamp": body.get("timestamp"), "probability": 0.5}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def percentiles(values) -> str:
    p50, p99 = np.percentile(np.asarray(values) * 1000, [50, 99])
    return f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"


async def bare_loop(bootstrap: str, source: str, target: str, count: int) -> float:
    """Seconds a bare aiokafka consume -> json -> produce loop takes for `count` records of `source`."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        began, seen = time.perf_counter(), 0
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=500, max_records=2000)).values():
                for record in records:
                    await producer.send(target, json.dumps(json.loads(record.value)).encode())
                    seen += 1
        await producer.flush()
        return time.perf_counter() - began
    finally:
        await consumer.stop()
        await producer.stop()


def shifted(readings: list[m.FluxObserved], days: int) -> list[m.FluxObserved]:
    """The same flux `days` later: new time tags the predictor has not forecast yet, with real values."""
    return [r.model_copy(update={"event_time": r.event_time + timedelta(days=days),
                                 "message_id": m.stable_id("bench", r.message_id, days)}) for r in readings]


async def live_latencies(settings, readings: list[m.FluxObserved]) -> list[float]:
    """Per forecast: seconds from publishing the reading that made it due to its arrival on the topic."""
    spec = topic_registry(settings)["forecasts"]
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="latest")
    await consumer.start()
    arrived: dict = {}

    async def collect() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    arrived[decode(spec, record.value).event_time] = time.perf_counter()

    collector = asyncio.create_task(collect())
    sent: dict = {}
    async with Publisher(settings.kafka_bootstrap_servers, linger_ms=0) as publisher:
        for reading in readings:
            await publisher.publish(settings.topics.flux, reading)
            sent[reading.event_time] = time.perf_counter()
            await asyncio.sleep(LIVE_PACE_SECONDS)
    await asyncio.sleep(3)
    collector.cancel()
    await consumer.stop()
    times = sorted(sent)
    latencies = []
    for issued_at, at in arrived.items():
        trigger = next(t for t in times if t >= issued_at)  # the first reading at or past the issue time
        latencies.append(at - sent[trigger])
    return latencies


async def bare_live_latencies(bootstrap: str, count: int) -> list[float]:
    """The same measurement through a bare consume -> produce loop: publish one record, time its echo."""
    source, target = f"bench.bare-live.{random.randrange(1 << 30)}", f"bench.bare-echo.{random.randrange(1 << 30)}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    await producer.send_and_wait(source, b"{}")
    await producer.send_and_wait(target, b"{}")
    echo_in = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    echo_out = AIOKafkaConsumer(target, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    await echo_in.start()
    await echo_out.start()

    async def echo() -> None:
        while True:
            for records in (await echo_in.getmany(timeout_ms=200)).values():
                for record in records:
                    await producer.send(target, json.dumps(json.loads(record.value)).encode())

    echoing = asyncio.create_task(echo())
    await asyncio.sleep(2)
    latencies = []
    try:
        for i in range(count):
            sent = time.perf_counter()
            await producer.send_and_wait(source, json.dumps({"i": i}).encode())
            async with asyncio.timeout(30):
                while not any((await echo_out.getmany(timeout_ms=100)).values()):
                    pass
            latencies.append(time.perf_counter() - sent)
            await asyncio.sleep(LIVE_PACE_SECONDS)
    finally:
        echoing.cancel()
        await echo_in.stop()
        await echo_out.stop()
        await producer.stop()
    return latencies


async def concurrent_posts(url: str, bodies: list[dict]) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    async with httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_connections=CLIENTS)) as client:
        async def one_client(mine: list[dict]) -> None:
            for body in mine:
                began = time.perf_counter()
                answer = await client.post(url, json=body)
                latencies.append(time.perf_counter() - began)
                statuses.append(answer.status_code)

        await asyncio.gather(*(one_client(bodies[i::CLIENTS]) for i in range(CLIENTS)))
    return latencies, statuses


@pytest.mark.slow
async def test_predictor_replay_live_and_rest_beside_the_bare_minimum(settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    from services.ingestor.readers import read_path

    july = [m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag,
                           satellite=r.satellite, cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era,
                           xrsa_flux=r.xrsa_flux, xrsb_flux=r.xrsb_flux, source="bench")
            for r in read_path(JULY_2015).flux if r.usable]
    report = []

    async with predictor_running(settings, tmp_path / "predictor.log") as predictor:
        # replay: the month through the ingestor, timed until the predictor has taken every reading
        began = time.perf_counter()
        await ingest(settings, clean_db, JULY_2015)

        async def taken() -> dict | None:
            health = await predictor.health()
            return health if health and health["since_start"]["flux_seen"] >= len(july) else None

        health = await predictor.until(taken, "the month through the predictor", timeout=1200)
        replay_seconds = time.perf_counter() - began
        bare_seconds = await bare_loop(settings.kafka_bootstrap_servers, settings.topics.flux,
                                       f"bench.bare-replay.{random.randrange(1 << 30)}", len(july))
        report.append(f"replay  predictor {len(july) / replay_seconds:9,.0f} readings/s "
                      f"({len(july)} readings, {health['since_start']['forecasts_published']} forecasts, {replay_seconds:.1f} s)")
        report.append(f"        bare aiokafka consume->json->produce {len(july) / bare_seconds:9,.0f} records/s")

        # REST under 20 concurrent clients, the stream idle
        instants = [(july[0].event_time + timedelta(hours=30 + (7 * i) % 700)).isoformat() for i in range(CLIENTS * REQUESTS_PER_CLIENT)]
        bodies = [{"timestamp": t, "target_class": "MCX"[i % 3]} for i, t in enumerate(instants)]
        rest, statuses = await concurrent_posts(f"{predictor.url}/predict/survival", bodies)
        assert set(statuses) == {200}, statuses
        bare_port = infra.free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_API, str(bare_port)])
        try:
            infra.wait_for_port("127.0.0.1", bare_port, 30, "bare FastAPI app")
            bare_rest, _ = await concurrent_posts(f"http://127.0.0.1:{bare_port}/bare", bodies)
        finally:
            bare.terminate()
            bare.wait(timeout=30)
        report.append(f"REST    POST /predict/survival, {CLIENTS} clients  {percentiles(rest)}  ({len(rest)} requests)")
        report.append(f"        bare FastAPI route, {CLIENTS} clients      {percentiles(bare_rest)}")

        # live: an hour of flux at a time, later than anything forecast so far
        live = [r for r in shifted(july, 31) if r.event_time < july[0].event_time + timedelta(days=31, hours=LIVE_HOURS)]
        latencies = await live_latencies(settings, live)
        bare_latencies = await bare_live_latencies(settings.kafka_bootstrap_servers, len(latencies))
        report.append(f"live    flux published -> forecast published  {percentiles(latencies)}  ({len(latencies)} forecasts)")
        report.append(f"        bare aiokafka consume->produce echo   {percentiles(bare_latencies)}")

    print("\n" + "\n".join(report))
    assert len(latencies) >= LIVE_HOURS - 1
