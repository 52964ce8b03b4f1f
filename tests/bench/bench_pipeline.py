"""Benchmark (not a timed test): the whole pipeline as `flare demo` runs it, every service its own process.

- throughput: the July 2015 1-minute month replayed by `flare ingest` (the demo's replay command) while the
  predictor (with a small champion model) and the evaluator run. The figure is flux readings a second, from
  the moment the first timed reading is published (its Kafka timestamp) until the evaluator has scored every
  forecast whose 24 h window and resolution grace closed before the last reading, i.e. until every forecast
  the replay can settle is settled in the prediction log. The first two days are replayed before the
  clock starts, so the faust workers have joined their groups and hold their models. Beside it: a bare aiokafka
  loop reading the same flux topic (every record the ingestor published) and producing each record to another
  topic on the same broker in the same run;
- memory: the GOES-15 hourly record (2010-09 to 2015-12) and the SWPC flare catalogue replayed at full speed
  while the predictor, evaluator, gatekeeper and trainer run (the trainer training small models, as
  `flare demo --short` does, whenever the gatekeeper's event-time triggers ask); the resident memory of each
  process and its children is sampled every 0.5 s and its peak recorded beside its RSS idle after start-up.
  The ingest run's baseline is the peak of the same command ingesting the flare catalogue alone. The services
  need far longer than the ingest to work through five years (a forecast for every hour), so by default the
  sampling stops SHORT_WINDOW_SECONDS after the record is published and the figures say how far the predictor
  and the evaluator got, with the predictor's readings a second; with `--full` it lasts until every due
  forecast of the five years is scored.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_pipeline.py`; add `--full` for the whole
5-year replay).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from flare_cli.commands.demo import SHORT
from services.evaluator.resolution import VERIFICATION_HOURS
from shared.settings import Settings
from tests.bench.baselines import bare_consume_seconds
from tests.support.gatekeeper_process import gatekeeper_running
from tests.support.predictor_models import FLARE_LIST, HOURLY, JULY_2015, register_model
from tests.support.predictor_service import predictor_running
from tests.support.service_process import ServiceProcess, running

SAMPLE_SECONDS = 0.5
IDLE_SECONDS = 3.0
SHORT_WINDOW_SECONDS = 300  # memory sampled this long after the 5-year record is published, without `--full`
FULL_REPLAY_TIMEOUT = 4 * 3600
WARM_UP_UNTIL = datetime(2015, 7, 3, tzinfo=timezone.utc)  # two days: forecasts of the first get scored
MB = 2**20


# ---- the processes -------------------------------------------------------------------------------------------


async def flare_ingest(settings: Settings, log: Path, *args: str, timeout: float, memory: PeakMemory | None = None,
                      watched_as: str = "") -> None:
    """`flare ingest ARGS` in its own process against the test stack, as `flare demo` replays files, run to its
    end (stopped if it outlives `timeout` or the test); its memory sampled by `memory` under `watched_as`."""
    command = ServiceProcess("ingestor", settings, log, command=["-m", "flare_cli.main", "ingest", *args])
    async with running(command):
        if memory is not None:
            memory.watch(watched_as, command.rss)
        code = await command.exited(timeout)
    assert code == 0, f"`flare ingest {' '.join(args)}` failed ({code}); its log:\n{command.log_tail()}"


async def started_together(stack: AsyncExitStack, *services: AbstractAsyncContextManager) -> list:
    """Enter the services' contexts at once (each waits for its own readiness, so the start-ups overlap); the
    stack stops them. If one fails to start, the others are cancelled and stopped."""
    async with asyncio.TaskGroup() as group:
        entering = [group.create_task(stack.enter_async_context(service)) for service in services]
    return [task.result() for task in entering]


def evaluator_process(settings: Settings, log: Path) -> ServiceProcess:
    return ServiceProcess("evaluator", settings, log, EVALUATOR__APP_NAME=f"evaluator-{uuid.uuid4().hex[:8]}")


async def trainer_ready(trainer: ServiceProcess) -> None:
    """The trainer has no API: it is ready once it says so in its log."""
    async def started() -> bool:
        return "trainer.started" in trainer.log_tail()

    await trainer.until(started, "trainer.started in its log")


class PeakMemory:
    """The peak resident memory of each watched process (with its children), sampled every SAMPLE_SECONDS by a
    thread, so the test's own event loop being busy never delays a sample; an exited process is not sampled."""

    def __init__(self):
        self.measures: dict[str, Callable[[], int]] = {}
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def watch(self, name: str, measure: Callable[[], int]) -> None:
        self.measures[name] = measure

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            for name, measure in list(self.measures.items()):
                try:
                    self.peaks[name] = max(self.peaks.get(name, 0), measure())
                except psutil.NoSuchProcess:
                    continue
            self.samples += 1

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


# ---- what the pipeline has done ------------------------------------------------------------------------------


async def ingested(pool) -> tuple[int, datetime]:
    """Flux readings published so far (a first ingest publishes every stored reading with XRS-B flux) and the
    last of them, the event time the consumers' clocks reach."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT count(*) AS published, max(time_tag) AS last FROM flux_observations"
                                  " WHERE xrsb_flux IS NOT NULL")
    return row["published"], row["last"]


async def settled(pool, settings: Settings, last_reading: datetime) -> tuple[int, int]:
    """(forecasts resolved, forecasts the last reading makes due): the evaluator scores a forecast issued at t
    once its clock reaches t + 24 h + the resolution grace."""
    due_before = last_reading - timedelta(hours=VERIFICATION_HOURS, minutes=settings.evaluator.resolution_grace_minutes)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE resolved_at IS NOT NULL) AS resolved,"
            " count(*) FILTER (WHERE prediction_timestamp <= $1) AS due FROM flare_prediction_log WHERE NOT shadow",
            due_before)
    return row["resolved"], row["due"]


async def pipeline_done(predictor: ServiceProcess, pool, settings: Settings, timeout: float) -> tuple[dict, float]:
    """Wait until the predictor has taken every published reading and the evaluator has scored every forecast
    those readings make due; the predictor's counters then, and when (epoch seconds) the predictor was done."""
    published, last_reading = await ingested(pool)

    async def predictor_caught_up() -> dict | None:
        health = await predictor.health()
        return health if health and health["since_start"]["flux_seen"] >= published else None

    async def evaluator_caught_up() -> bool:
        resolved, due = await settled(pool, settings, last_reading)
        return due > 0 and resolved >= due

    health = await predictor.until(predictor_caught_up, f"all {published:,} readings through the predictor", timeout)
    predictor_done = time.time()
    await predictor.until(evaluator_caught_up, "every due forecast scored by the evaluator", timeout)
    return health["since_start"], predictor_done


@dataclass(frozen=True)
class Progress:
    readings: int  # flux readings the predictor has taken
    forecasts: int  # forecasts it has published
    predicted_to: datetime | None  # the newest forecast's issue time
    scored: int  # forecasts the evaluator has scored
    scored_to: datetime | None  # the newest scored forecast's issue time


def day(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d}" if moment else "none yet"


async def replay_progress(predictor: ServiceProcess, pool) -> Progress:
    counters = (await predictor.health())["since_start"]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT max(prediction_timestamp) AS predicted_to,"
            " count(*) FILTER (WHERE resolved_at IS NOT NULL) AS scored,"
            " max(prediction_timestamp) FILTER (WHERE resolved_at IS NOT NULL) AS scored_to"
            " FROM flare_prediction_log WHERE NOT shadow")
    return Progress(counters["flux_seen"], counters["forecasts_published"], row["predicted_to"], row["scored"],
                    row["scored_to"])


async def published_at(settings: Settings, offset: int) -> float:
    """When the flux record at `offset` was produced (its Kafka timestamp, epoch seconds)."""
    partition = TopicPartition(settings.topics.flux, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        consumer.assign([partition])
        consumer.seek(partition, offset)
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        return record.timestamp / 1000
    finally:
        await consumer.stop()


# ---- the benchmarks ------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_replay_throughput_through_ingestor_predictor_evaluator_beside_a_bare_loop(
        settings, clean_db, tmp_path, bench_figures):
    async with clean_db.acquire() as conn:
        await register_model(conn, settings.model_path, status="champion")
    async with AsyncExitStack() as stack:
        predictor, evaluator = await started_together(
            stack, predictor_running(settings, tmp_path / "predictor.log"),
            running(evaluator_process(settings, tmp_path / "evaluator.log")))
        log = tmp_path / "ingest.log"
        await flare_ingest(settings, log, str(FLARE_LIST), str(JULY_2015), "--until", WARM_UP_UNTIL.isoformat(),
                           timeout=300)
        await pipeline_done(predictor, clean_db, settings, timeout=300)
        warm_up_readings, _ = await ingested(clean_db)

        launched = time.time()
        await flare_ingest(settings, log, str(JULY_2015), "--from", WARM_UP_UNTIL.isoformat(), timeout=600)
        ingest_seconds = time.time() - launched
        counters, predicted = await pipeline_done(predictor, clean_db, settings, timeout=900)
        done = time.time()
        first_published = await published_at(settings, warm_up_readings)
        assert launched <= first_published <= done, "the broker's record timestamp is not the producer's clock"
        readings = (await ingested(clean_db))[0] - warm_up_readings
        resolved, _ = await settled(clean_db, settings, (await ingested(clean_db))[1])
        assert evaluator.alive

    pipeline_seconds = done - first_published
    total = readings + warm_up_readings
    bare_seconds = await bare_consume_seconds(settings.kafka_bootstrap_servers, [settings.topics.flux], total,
                                              echo=True)
    bench_figures(
        "pipeline", "July 2015 1-min replay, ingest->predict->score", readings / pipeline_seconds, "readings/s",
        baseline=("bare aiokafka consume+produce, same topic", total / bare_seconds),
        note=(f"{readings:,} readings from the first published to every due forecast scored: {pipeline_seconds:.1f} s "
              f"(`flare ingest` process {ingest_seconds:.1f} s, predictor done after "
              f"{predicted - first_published:.1f} s); {counters['forecasts_published']:,} forecasts issued, "
              f"{resolved:,} scored; bare loop {total:,} records in {bare_seconds:.1f} s"))


@pytest.mark.slow
async def test_peak_memory_of_every_service_over_a_five_year_replay(
        settings, clean_db, tmp_path, bench_figures, full_run):
    async with clean_db.acquire() as conn:
        champion = await register_model(conn, settings.model_path, status="champion")
    async with AsyncExitStack() as stack:
        gatekeeper, trainer, evaluator, predictor = await started_together(
            stack, gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log"),
            running(ServiceProcess("trainer", settings, tmp_path / "trainer.log", **SHORT.model_env)),
            running(evaluator_process(settings, tmp_path / "evaluator.log")),
            predictor_running(settings, tmp_path / "predictor.log"))
        await trainer_ready(trainer)
        services = {"gatekeeper": gatekeeper, "trainer": trainer, "evaluator": evaluator, "predictor": predictor}
        await asyncio.sleep(IDLE_SECONDS)
        idle = {name: service.rss() for name, service in services.items()}

        log = tmp_path / "ingest.log"
        with PeakMemory() as memory:
            for name, service in services.items():
                memory.watch(name, service.rss)
            await flare_ingest(settings, log, str(FLARE_LIST), timeout=300, memory=memory,
                               watched_as="ingest run: flare catalogue")
            began = time.time()
            await flare_ingest(settings, log, str(HOURLY), timeout=600, memory=memory,
                               watched_as="ingest run: 5-year hourly record")
            ingest_seconds = time.time() - began
            if full_run:
                await pipeline_done(predictor, clean_db, settings, timeout=FULL_REPLAY_TIMEOUT)
            else:
                await asyncio.sleep(max(0.0, began + SHORT_WINDOW_SECONDS - time.time()))
            sampled_seconds = time.time() - began
            progress = await replay_progress(predictor, clean_db)
        async with clean_db.acquire() as conn:
            trained = await conn.fetchval("SELECT count(*) FROM model_registry WHERE version <> $1", champion)
        assert all(service.alive for service in services.values())

    published, last_reading = await ingested(clean_db)
    covered = (f"the predictor took {progress.readings:,} of {published:,} readings (forecasts up to "
               f"{day(progress.predicted_to)}; the record ends {day(last_reading)}) and the evaluator scored "
               f"{progress.scored:,} forecasts (issued up to {day(progress.scored_to)}) in {sampled_seconds:.0f} s")
    if not full_run:
        covered += f"; sampling stops after {SHORT_WINDOW_SECONDS} s, `--full` waits for the whole replay"
    bench_figures("pipeline", "5-year hourly replay: readings through predictor", progress.readings / sampled_seconds,
                  "readings/s", note=(f"{covered}; `flare ingest` published the record in {ingest_seconds:.0f} s; "
                                      f"{progress.forecasts:,} forecasts; gatekeeper and trainer running, "
                                      f"{trained} model(s) trained meanwhile"))
    for name in services:
        bench_figures("memory", f"{name}: peak RSS during the 5-year replay", memory.peaks[name] / MB, "MiB",
                      baseline=("idle after start-up", idle[name] / MB),
                      note=f"process and children, sampled every {SAMPLE_SECONDS} s; {covered}")
    bench_figures("memory", "ingest run: peak RSS, 5-year hourly record",
                  memory.peaks["ingest run: 5-year hourly record"] / MB, "MiB",
                  baseline=("same command, flare catalogue alone", memory.peaks["ingest run: flare catalogue"] / MB),
                  note="`flare ingest FILE`, the demo's replay command, run to its end; process and children")
