"""Benchmark (not a timed test): the predictor beside the bare minimum on the same broker in the same run.

- backlog: the July 2015 1-minute month (44,285 usable readings) stored and published before the predictor
  starts (a backlog, as after an outage, or a replay the predictor has not read yet); readings a second from the
  predictor's first batch to its last reading, beside a bare aiokafka consume -> json -> produce loop over the
  same records of the same topic and beside a bare faust agent. A replay through the ingestor, timed from the
  start of the ingest, is the pipeline benchmark's figure (`bench_pipeline.py`);
- REST: `POST /predict/survival` at 1, 20 and 100 concurrent clients, the same number of requests at each level
  (each request a different instant, so no level is served from an earlier one's work), p50/p99 and the errors
  (non-2xx answers and client timeouts), beside a bare FastAPI route served by uvicorn in its own process;
- live: readings published one at a time at a live-like pace; latency from publishing the reading that makes
  an issue time due to the forecast arriving on the forecasts topic (p50/p99), beside a bare aiokafka produce ->
  consume round trip of the same readings at the same pace on a topic of their own, and beside the echo worker
  (`tests/support/echo_worker.py`, a faust worker built the way the services once built theirs, accepting a flux
  message and sending it on). Every reader of these latencies fetches with the services' live fetch wait.

The predictor runs with one API key and its rate limit raised far above what the benchmark asks, so the
request path includes the key check but no request is refused for the rate (the default, 120 a minute per
key, would refuse all but the first 120).

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_predictor.py`).
"""

from __future__ import annotations

import asyncio
import bisect
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.ingestor.readers import read_path
from shared import infra
from shared import messages as m
from shared.kafka import LIVE_FETCH_WAIT_MS, Publisher, decode, ensure_topics
from shared.topics import topic_registry
from tests.bench.baselines import bare_consume_seconds, faust_floor_seconds, record_latencies, scratch_topic
from tests.conftest import PROJECT_ROOT, service_env
from tests.support.predictor_models import JULY_2015, register_model
from tests.support.predictor_service import ingest, predictor_running

CONCURRENCY = (1, 20, 100)
REQUESTS_PER_LEVEL = 300
CLIENT_TIMEOUT_SECONDS = 30.0  # the predictor's own deadline is 10 s (504): a client timeout means it hung
API_KEY = "bench-key"
RATE_LIMIT_PER_MINUTE = 1_000_000
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


def flux_readings(path) -> list[m.FluxObserved]:
    return [m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag,
                           satellite=r.satellite, cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era,
                           xrsa_flux=r.xrsa_flux, xrsb_flux=r.xrsb_flux, source="bench")
            for r in read_path(path).flux if r.usable]


def shifted(readings: list[m.FluxObserved], days: int) -> list[m.FluxObserved]:
    """The same flux `days` later: new time tags the predictor has not forecast yet, with real values."""
    return [r.model_copy(update={"event_time": r.event_time + timedelta(days=days),
                                 "message_id": m.stable_id("bench", r.message_id, days)}) for r in readings]


async def paced_latencies(bootstrap: str, topic: str, readings: list[m.FluxObserved], out_spec) -> dict:
    """Readings published to `topic` one at a time at the live pace; per message arriving on `out_spec`'s topic, by
    its event time, seconds from publishing the reading that made it due (the first at or past its event time) to
    its arrival."""
    # the services' own fetch wait: with the client's default the embedded broker holds each fetch 500 ms
    consumer = AIOKafkaConsumer(out_spec.name, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                fetch_max_wait_ms=LIVE_FETCH_WAIT_MS)
    await consumer.start()
    arrived: dict = {}

    async def collect() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    arrived[decode(out_spec, record.value).event_time] = time.perf_counter()

    collector = asyncio.create_task(collect())
    sent: dict = {}
    async with Publisher(bootstrap, linger_ms=0) as publisher:
        for reading in readings:
            await publisher.publish(topic, reading)
            sent[reading.event_time] = time.perf_counter()
            await asyncio.sleep(LIVE_PACE_SECONDS)
    await asyncio.sleep(3)
    collector.cancel()
    await consumer.stop()
    times = sorted(sent)
    # only what these readings made due: the embedded broker's "latest" offset is the start of the topic's last
    # record batch, so the consumer also gets the tail of what was published before
    return {issued_at: at - sent[times[bisect.bisect_left(times, issued_at)]] for issued_at, at in arrived.items()
            if times[0] <= issued_at <= times[-1]}


async def echo_worker_latencies(settings, readings: list[m.FluxObserved], log) -> dict:
    """The same measurement through the echo worker on a flux topic of its own: every reading it sends on,
    timed from its publication, with readings flowing at the same pace."""
    echo_settings = settings.model_copy(update={"topics": settings.topics.model_copy(
        update={"flux": f"bench.echo-flux.{uuid.uuid4().hex[:8]}"})})
    flux = topic_registry(echo_settings)["flux"]
    echoed = replace(flux, name=f"{flux.name}.echo")
    bootstrap = settings.kafka_bootstrap_servers
    await ensure_topics(bootstrap, [*topic_registry(echo_settings).values(), echoed])
    with log.open("ab") as out:
        worker = subprocess.Popen([sys.executable, "tests/support/echo_worker.py"], cwd=PROJECT_ROOT,
                                  env=service_env(echo_settings), stdout=out, stderr=subprocess.STDOUT)
    try:
        # warm-up: the worker has joined its group (about 30 s for a new faust worker) and echoed once
        first = AIOKafkaConsumer(echoed.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await first.start()
        try:
            async with Publisher(bootstrap) as publisher:
                await publisher.publish(flux.name, readings[0])
            async with asyncio.timeout(180):
                while not any((await first.getmany(timeout_ms=500)).values()):
                    pass
        finally:
            await first.stop()
        return await paced_latencies(bootstrap, flux.name, readings[1:], echoed)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


async def concurrent_posts(url: str, bodies: list[dict], clients: int,
                           headers: dict[str, str] | None = None) -> tuple[list[float], list[str]]:
    """`clients` clients posting `bodies` between them; every request's seconds (a timeout counts at the
    client timeout) and a description of each error (non-2xx status or timeout)."""
    latencies, errors = [], []
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_SECONDS, headers=headers,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        async def one_client(mine: list[dict]) -> None:
            for body in mine:
                began = time.perf_counter()
                try:
                    answer = await client.post(url, json=body)
                    if not answer.is_success:
                        errors.append(f"{answer.status_code} {answer.text[:200]}")
                except httpx.TimeoutException as exc:
                    errors.append(f"timeout: {type(exc).__name__}")
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(one_client(bodies[i::clients]) for i in range(clients)))
    return latencies, errors


async def rest_levels(predictor_url: str, bodies_per_level: list[list[dict]], bench_figures) -> None:
    """Each concurrency level against the predictor, then against the bare route with the same bodies."""
    measured = {}
    for clients, bodies in zip(CONCURRENCY, bodies_per_level):
        measured[clients] = await concurrent_posts(f"{predictor_url}/predict/survival", bodies, clients,
                                                   headers={"X-API-Key": API_KEY})
    bare_port = infra.free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_API, str(bare_port)])
    try:
        infra.wait_for_port("127.0.0.1", bare_port, 30, "bare FastAPI app")
        for clients, bodies in zip(CONCURRENCY, bodies_per_level):
            bare_latencies, bare_errors = await concurrent_posts(f"http://127.0.0.1:{bare_port}/bare", bodies, clients)
            latencies, errors = measured[clients]
            note = (f"{len(bodies)} requests; API key checked, rate limit raised to {RATE_LIMIT_PER_MINUTE:,}/min "
                    f"for the benchmark")
            record_latencies(bench_figures, "predictor", f"POST /predict/survival, {clients} concurrent", latencies,
                             "bare FastAPI route", bare_latencies, note=note)
            kinds = sorted({e.split(" ")[0] for e in errors})
            bench_figures("predictor", f"POST /predict/survival errors, {clients} concurrent", len(errors), "requests",
                          baseline=("bare FastAPI route errors", len(bare_errors)),
                          note=f"non-2xx or client timeout ({CLIENT_TIMEOUT_SECONDS:.0f} s) of {len(bodies)}"
                               + (f"; kinds: {', '.join(kinds)}; first: {errors[0]}" if errors else ""))
    finally:
        bare.terminate()
        bare.wait(timeout=30)


@pytest.mark.slow
async def test_predictor_backlog_live_and_rest_beside_the_bare_minimum(settings, clean_db, tmp_path, bench_figures):
    async with clean_db.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    july = flux_readings(JULY_2015)
    await ingest(settings, clean_db, JULY_2015)

    async with predictor_running(settings, tmp_path / "predictor.log", API_KEYS=f'["{API_KEY}"]',
                                 PREDICTOR__RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT_PER_MINUTE)) as predictor:
        # the backlog, timed from the first batch the predictor has taken (its start, model loading and
        # group join excluded, as the bare loop's are) until it has taken every reading
        def taken(at_least: int):
            async def check() -> int | None:
                health = await predictor.health()
                seen = health["since_start"]["flux_seen"] if health else 0
                return seen if seen >= at_least else None
            return check

        first_seen = await predictor.until(taken(1), "the predictor's first batch", timeout=600, interval=0.1)
        began = time.perf_counter()
        await predictor.until(taken(len(july)), "the month through the predictor", timeout=1200, interval=0.1)
        drain_seconds = time.perf_counter() - began
        drained = len(july) - first_seen
        health = await predictor.health()
        bare_seconds = await bare_consume_seconds(settings.kafka_bootstrap_servers, [settings.topics.flux], len(july),
                                                  echo=True)
        bench_figures("predictor", "backlog, July 2015 1-min month", drained / drain_seconds, "readings/s",
                      baseline=("bare aiokafka consume->json->produce", len(july) / bare_seconds),
                      note=f"{drained:,} readings after the first batch in {drain_seconds:.1f} s; "
                           f"{health['since_start']['forecasts_published']} forecasts published and logged")
        floor_seconds = await faust_floor_seconds(settings.kafka_bootstrap_servers, [settings.topics.flux], len(july))
        bench_figures("predictor", "backlog, July 2015 1-min month, against faust", drained / drain_seconds,
                      "readings/s", baseline=("bare faust agent, same records", len(july) / floor_seconds),
                      note="the bare agent takes the same batches and parses each record, nothing more")

        # REST, the stream idle: a different instant for every request, within the replayed month
        instants = [july[0].event_time + timedelta(hours=30, minutes=37 * i)
                    for i in range(len(CONCURRENCY) * REQUESTS_PER_LEVEL)]
        bodies = [{"timestamp": t.isoformat(), "target_class": "MCX"[i % 3]} for i, t in enumerate(instants)]
        await rest_levels(predictor.url, [bodies[i::len(CONCURRENCY)] for i in range(len(CONCURRENCY))], bench_figures)

        # live: flux later than anything forecast so far, one reading at a time
        live_end = july[0].event_time + timedelta(days=31, hours=LIVE_HOURS)
        live = [r for r in shifted(july, 31) if r.event_time < live_end]
        latencies = await paced_latencies(settings.kafka_bootstrap_servers, settings.topics.flux, live,
                                          topic_registry(settings)["forecasts"])
    assert len(latencies) >= LIVE_HOURS - 1

    round_trip = replace(topic_registry(settings)["flux"],
                         name=await scratch_topic(settings.kafka_bootstrap_servers, "bench.round-trip"))
    round_trips = await paced_latencies(settings.kafka_bootstrap_servers, round_trip.name, live, round_trip)
    echo_latencies = await echo_worker_latencies(settings, shifted(july, 62)[:len(live) + 1],
                                                 tmp_path / "echo_worker.log")
    slowest = sorted(latencies, key=latencies.__getitem__)[-3:]
    note = (f"{len(latencies)} forecasts over {len(live):,} readings, one every {LIVE_PACE_SECONDS * 1000:.0f} ms; "
            f"the baseline timed on {len(round_trips):,} readings at that pace; slowest: "
            + ", ".join(f"{t:%d %H:%M} {latencies[t] * 1000:.0f} ms" for t in slowest))
    record_latencies(bench_figures, "predictor", "live: flux published -> forecast published",
                     list(latencies.values()), "bare aiokafka produce -> consume", list(round_trips.values()),
                     note=note)
    record_latencies(bench_figures, "predictor", "live: flux published -> forecast published",
                     list(latencies.values()), "faust echo worker: flux -> sent on", list(echo_latencies.values()),
                     note=note)
