"""Load on the real predictor process: many API clients at once, and a backlog of flux waiting at its start.

- API: concurrent clients, each its own httpx client and its own API key, ask `/predict/survival`,
  `/predict/classification`, `/predict/all` and `/health` in turn for the whole run, with a champion loaded
  and the stream idle. Keys and rate limits are on, with a limit far above what one client can ask at
  its sequential pace, so a 429 is a failure too. Instants: nine in ten on the hour (what dashboards and the cadence
  ask), one in ten on an arbitrary minute (a question nobody asked before), over the stored flux. Every answer must
  be 2xx: no 5xx, no 429, no timeout, no connection error.
- Backlog: the real July 2015 1-minute month, repeated over shifted times (copy k is k x 31 days later, so
  the copies tile into one continuous stream), is on the flux topic before the predictor starts. The
  predictor must drain it: every reading seen, the consumer caught up, and the last forecast issued for the
  hour of the last reading; its RSS, sampled every second, must stay bounded.

Both run under `make reliability` only, at full size: 100 clients x 60 s, and 1,000,000 readings (about 700
days). Neither has a meaningful short size: `make bench` times 1, 20 and 100 clients, and a leak shows only over
a long backlog (`pytest -m slow tests/reliability/test_load.py` runs 20 clients x 10 s and 20,000 readings).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

import httpx
import numpy as np
import psutil
import pytest

from services.ingestor.pipeline import Ingestor
from services.ingestor.readers import read_path
from shared import messages as m
from shared.kafka import Publisher, ensure_topics
from shared.topics import topic_registry
from tests.support.predictor_models import JULY_2015, register_model
from tests.support.predictor_service import predictor_running

MONTH = timedelta(days=31)
# The features look back 72 h; instants from then on have the whole lookback stored.
FIRST_FULL_INSTANT = datetime(2015, 7, 4, tzinfo=timezone.utc)
MB = 1 << 20


def readings_of_july() -> list[m.FluxObserved]:
    return [m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag,
                           satellite=r.satellite, cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era,
                           xrsa_flux=r.xrsa_flux, xrsb_flux=r.xrsb_flux, source="backlog")
            for r in read_path(JULY_2015).flux if r.usable and r.xrsb_flux is not None]


def backlog(month: list[m.FluxObserved], count: int) -> Iterator[m.FluxObserved]:
    """`count` readings: the month, then the month 31 days later, and so on (generated as published)."""
    copies = (r.model_copy(update={"event_time": r.event_time + copy * MONTH,
                                   "message_id": m.stable_id("backlog", r.message_id, copy)})
              for copy in itertools.count() for r in month)
    return itertools.islice(copies, count)


# ---- API clients ------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # timeouts, connection errors, non-2xx answers

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(1 for f in self.failures if not f.startswith("HTTP"))

    def summary(self, clients: int, seconds: float) -> str:
        p50, p99 = np.percentile(np.asarray(self.latencies) * 1000, [50, 99])
        return (f"{clients} clients x {seconds:.0f} s: {self.requests} requests ({self.requests / seconds:.0f}/s), "
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, errors {len(self.failures)}, statuses {self.statuses}")


def requests_of_one_client(rng: random.Random, start: datetime, end: datetime) -> Iterator[tuple[str, dict | None]]:
    """What one client asks, in turn: survival, classification, all, health; at instants in [start, end)."""
    hours = int((end - start) / timedelta(hours=1))

    def instant() -> str:
        hour = start + timedelta(hours=rng.randrange(hours))
        return (hour if rng.random() < 0.9 else hour + timedelta(minutes=rng.randrange(1, 60))).isoformat()

    while True:
        yield "/predict/survival", {"timestamp": instant(), "target_class": rng.choice("CMX"),
                                    **({"time_buckets": [0, 6, 24, 72]} if rng.random() < 0.3 else {})}
        yield "/predict/classification", {"timestamp": instant(), "window": rng.choice([24, 48])}
        yield "/predict/all", {"timestamp": instant()}
        yield "/health", None


async def one_client(url: str, key: str, asks: Iterator[tuple[str, dict | None]], stop_at: float,
                     result: LoadResult) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=30.0) as client:
        for path, body in asks:
            if time.perf_counter() >= stop_at:
                return
            began = time.perf_counter()
            try:
                answer = await (client.get(path) if body is None else client.post(path, json=body))
            except httpx.HTTPError as exc:  # timeouts and connection errors
                result.failures.append(f"{path}: {type(exc).__name__} {exc}")
                continue
            result.latencies.append(time.perf_counter() - began)
            result.statuses[answer.status_code] = result.statuses.get(answer.status_code, 0) + 1
            if not answer.is_success:
                result.failures.append(f"HTTP {answer.status_code} {path} {body}: {answer.text[:200]}")


@pytest.mark.slow
async def test_concurrent_api_clients_all_get_answers(full_run, settings, clean_db, tmp_path):
    clients, seconds = (100, 60.0) if full_run else (20, 10.0)
    # the short run stores five days (three of lookback, two asked about); the full run the whole month
    stored_until = datetime(2015, 8, 1, tzinfo=timezone.utc) if full_run else datetime(2015, 7, 6, tzinfo=timezone.utc)
    async with clean_db.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    keys = [f"load-client-{i}" for i in range(clients)]
    # keys on, each client its own; the limit is far above a client's sequential pace, so no 429 is expected
    env = {"API_KEYS": str(keys).replace("'", '"'), "PREDICTOR__RATE_LIMIT_PER_MINUTE": "100000"}
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        # stored as history (a backfill publishes nothing): the stream is idle, the figures are the API's
        await Ingestor(settings, clean_db, publisher).ingest_file(JULY_2015, end=stored_until, backfill=True)
    async with predictor_running(settings, tmp_path / "predictor.log", **env) as predictor:
        result = LoadResult()
        # CPU seconds the predictor spends: the cost per request, which a shared machine does not blur
        cpu_before = sum(psutil.Process(predictor.process.pid).cpu_times()[:2])
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(
            one_client(predictor.url, key, requests_of_one_client(random.Random(i), FIRST_FULL_INSTANT, stored_until),
                       stop_at, result)
            for i, key in enumerate(keys)))
        cpu_seconds = sum(psutil.Process(predictor.process.pid).cpu_times()[:2]) - cpu_before
        health = await predictor.health()

    print(f"\nAPI load: {result.summary(clients, seconds)}; "
          f"predictor CPU {cpu_seconds / result.requests * 1000:.1f} ms per request; "
          f"REST forecasts computed {health['since_start']['rest_forecasts_computed']}, "
          f"from cache {health['since_start']['rest_forecasts_from_cache']}")
    assert result.failures == [], f"{len(result.failures)} failed requests, e.g. {result.failures[:5]}"
    assert result.requests >= clients * 2, result.summary(clients, seconds)  # every client was served, repeatedly


# ---- backlog ----------------------------------------------------------------------------------------------


async def rss_samples(pid: int, into: list[tuple[float, int, int, float]], progress: list[int]) -> None:
    """Every second: (seconds since start, RSS in bytes, readings the predictor had seen by then, its CPU
    seconds so far: readings per CPU second is the throughput a shared machine does not blur)."""
    process, began = psutil.Process(pid), time.perf_counter()
    while True:
        into.append((time.perf_counter() - began, process.memory_info().rss, progress[0], sum(process.cpu_times()[:2])))
        await asyncio.sleep(1.0)


@pytest.mark.slow
async def test_a_flux_backlog_is_drained_with_bounded_memory(full_run, settings, clean_db, tmp_path):
    count = 1_000_000 if full_run else 20_000
    # The predictor keeps 74 h of readings and 30 days of flares whatever the backlog, so after warming up
    # its memory must not follow the backlog. Keeping each reading seen, even as a 200-byte tuple, would add
    # 180 MB over the last 90% of the full run; the bound allows a third of that for allocator noise and
    # buffers. (The short run cannot tell a leak that small from noise: it checks the same path, smaller.)
    bound_mb = 64
    async with clean_db.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    month = readings_of_july()
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    began = time.perf_counter()
    async with Publisher(settings.kafka_bootstrap_servers, linger_ms=50) as publisher:
        readings = backlog(month, count)
        while chunk := list(itertools.islice(readings, 10_000)):
            await publisher.publish_many(settings.topics.flux, chunk)
            last = chunk[-1]
    publish_seconds = time.perf_counter() - began
    last_hour = last.event_time.replace(minute=0, second=0, microsecond=0)

    samples: list[tuple[float, int, int, float]] = []
    seen = [0]
    async with predictor_running(settings, tmp_path / "predictor.log") as predictor:
        sampling = asyncio.create_task(rss_samples(predictor.process.pid, samples, seen))

        async def drained() -> dict | None:
            health = await predictor.health()
            if health is None:
                return None
            seen[0] = health["since_start"]["flux_seen"]
            latest = health["latest_forecast"]
            done = seen[0] >= count and health["consumer_lag"] == 0 and latest is not None \
                and datetime.fromisoformat(latest["issued_at"]) == last_hour
            return health if done else None

        try:
            health = await predictor.until(drained, f"the backlog of {count} readings drained",
                                           timeout=3600 if full_run else 300, interval=1.0)
        finally:
            sampling.cancel()

    first = next(s for s in samples if s[2] > 0)
    warm = next(s for s in samples if s[2] >= count // 10)
    drain_seconds = samples[-1][0] - first[0]
    peak = max(sample[1] for sample in samples)
    cpu_seconds = samples[-1][3] - first[3]
    print(f"\nbacklog: {count} readings ({(last.event_time - month[0].event_time).days} days) published in "
          f"{publish_seconds:.0f} s; drained in {drain_seconds:.0f} s ({count / drain_seconds:,.0f} readings/s; "
          f"{(count - first[2]) / cpu_seconds:,.0f} per predictor CPU second), "
          f"{health['since_start']['forecasts_published']} forecasts; RSS MB: at start {samples[0][1] / MB:.0f}, "
          f"after 10% {warm[1] / MB:.0f}, peak {peak / MB:.0f}, end {samples[-1][1] / MB:.0f} (bound: +{bound_mb})")
    assert health["since_start"]["forecasts_published"] >= (last_hour - month[0].event_time) / timedelta(hours=1) - 1
    assert peak - warm[1] <= bound_mb * MB, f"RSS grew {(peak - warm[1]) / MB:.0f} MB after the first 10%"
