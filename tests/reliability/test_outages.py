"""The database stops for a while: the running services wait, reconnect and lose nothing, without anyone
restarting them.

The check runs on a private stack (its own embedded PostgreSQL and Tansu broker in a temporary state folder),
because it stops the database; the session's shared stack is never touched. PostgreSQL is stopped with a fast
shutdown (open sessions are ended) and started again on the same port.

Before this was made right: the evaluator crashed its faust worker on the first failed write and the process
exited; the gatekeeper and the trainer raised out of their consume loops and exited; the live ingestor's poll
loop ended on a refused connection. Nothing was lost (offsets are committed only after the writes), but each
needed a manual restart. Now every database read and write of a running service waits with backoff (at most
5 s apart) and tries again, holding the message in hand uncommitted (`shared.db.outlasting_outages`).

The broker restarts (issue #9): the embedded Tansu broker keeps everything in memory, so a restart loses every
topic, record and committed offset. Before this was made right: the clients reconnected and faust rejoined its
groups, but the first client that named a lost topic had Tansu re-create it with its default of 4 partitions,
and a predictor running across the restart forecast nothing of the day ingested after it (faust keeps the
offsets it last saw and skips the records below them, and the new log counts from 0 again). Now our clients
never ask the broker to create a topic `ensure_topics` looks after, and every long-running service watches for
the marker record it left on the broker at start (`shared.broker_watch`): once it is gone, the service logs
`broker.restarted` and starts again in the same process, creating the topics, reading the new log from its
start and rebuilding from PostgreSQL. Recovered: what PostgreSQL holds (stored flux and flares, forecasts,
outcomes, metrics, drift episodes, the registry, the gatekeeper's outbox); the evaluator refills its pending
forecasts, flux bins and flares from it, so forecasts published before the restart are still scored. Not
recovered: records on the broker not yet consumed when it stopped (re-ingest the period), what was published
before the restart for other readers, the dashboard's history (it reads no database), a retrain request in
flight (asked again after the gatekeeper's in-flight timeout). Checked here for the predictor and the evaluator;
the gatekeeper, trainer and live ingestor run the same watch but are not run across a restart here.

Short versions (`make test`): the predictor alone on five days of July 2015, the database stopped for 10 s while it
works through them; the predictor and evaluator across a broker restart between two days; the watch's evidence
on a broker alone (a marker gone, a log that ends before it, another record in its place; nothing while the
broker is merely away). Full versions
(`make reliability`): a week, the database stopped for 30 s; eight days after the broker restart, until every
forecast issued before it is scored.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import pytest

from shared import infra
from shared.broker_watch import BrokerWatch
from shared.db import DATABASE_OUTAGES, create_pool, migrate_dsn
from services.ingestor.pipeline import Ingestor
from shared.kafka import Publisher, ensure_topics
from shared.settings import Settings, load_settings
from shared.topics import topic_registry
from tests.conftest import DATA_DIR, unique_topics
from tests.integration.test_predictor_stream import july_days
from tests.support.predictor_models import JULY_2015, register_model
from tests.support.predictor_service import read_forecasts
from tests.support.service_process import ServiceProcess, running

JULY_1 = datetime(2015, 7, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# ---- a private stack, stopped and started at will ------------------------------------------------------------


class PrivateStack:
    """An embedded PostgreSQL and Tansu broker of this test alone, in `state_dir`."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.postgres = infra.start_embedded_postgres(state_dir)
        self.broker = infra.start_embedded_broker(state_dir)

    def stop_database(self) -> None:
        """A fast shutdown (open sessions are ended); the port stays recorded, so the restart takes it again."""
        infra.stop_embedded_postgres(self.state_dir)
        infra.update_runtime(self.state_dir, "postgres", self.postgres)

    def start_database(self) -> None:
        assert infra.start_embedded_postgres(self.state_dir)["port"] == self.postgres["port"]

    def restart_broker(self) -> None:
        """Stop the broker (it loses everything it held in memory) and start it again on the same port."""
        infra.stop_embedded_broker(self.state_dir)
        infra.update_runtime(self.state_dir, "broker", self.broker)
        assert infra.start_embedded_broker(self.state_dir)["port"] == self.broker["port"]

    def close(self) -> None:
        infra.stop_embedded_broker(self.state_dir)
        infra.stop_embedded_postgres(self.state_dir)


async def private_settings(stack: PrivateStack, tmp_path: Path) -> Settings:
    settings = load_settings(
        kafka_bootstrap_servers=stack.broker["bootstrap"], database_url=stack.postgres["dsn"],
        state_dir=stack.state_dir, model_path=tmp_path / "models", data_dir=DATA_DIR, topics=unique_topics(),
    )
    await migrate_dsn(settings.database_dsn)
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    return settings


async def ingest(settings: Settings, pool, start: datetime, end: datetime) -> None:
    """The July 2015 GOES-15 minutes in [start, end), stored and published as the ingestor does."""
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        stats = await Ingestor(settings, pool, publisher).ingest_file(JULY_2015, start=start, end=end)
    assert stats.status == "ok", stats.error


async def logged_hours(pool) -> list[datetime]:
    rows = await pool.fetch("SELECT prediction_timestamp FROM flare_prediction_log ORDER BY prediction_timestamp")
    return [row["prediction_timestamp"] for row in rows]


def hours(start: datetime, end: datetime) -> list[datetime]:
    return [start + i * HOUR for i in range(int((end - start) / HOUR))]


@pytest.fixture
async def private(tmp_path_factory, tmp_path) -> AsyncIterator[tuple[PrivateStack, Settings, asyncpg.Pool]]:
    """A private stack with this test's topics created, a pool on its database and a champion model."""
    stack = PrivateStack(tmp_path_factory.mktemp("private-stack"))
    try:
        settings = await private_settings(stack, tmp_path)
        pool = await create_pool(settings.database_dsn)
        try:
            async with pool.acquire() as conn:
                await register_model(conn, settings.model_path, status="champion")
            yield stack, settings, pool
        finally:
            await pool.close()
    finally:
        stack.close()


# ---- the story ----------------------------------------------------------------------------------------------------


async def test_the_predictor_waits_out_a_database_outage_and_forecasts_every_hour_once(private, tmp_path, full_run):
    stack, settings, pool = private
    async with AsyncExitStack() as cleanup:
        # the first day is on the topic and in the database before the predictor starts
        days, outage_seconds = (7, 30.0) if full_run else (5, 10.0)
        await ingest(settings, pool, JULY_1, JULY_1 + DAY)
        app_name = f"predictor-{uuid.uuid4().hex[:8]}"
        predictor = await cleanup.enter_async_context(running(ServiceProcess(
            "predictor", settings, tmp_path / "predictor.log", PREDICTOR__APP_NAME=app_name)))
        await predictor.until(lambda: _count_at_least(pool, 1), "the first forecast logged", timeout=120)

        # the other days' flux comes while the database is away, so their forecasts must wait for it (published
        # before the outage, a backlog of days is through the predictor in a second, before the outage begins)
        stack.stop_database()
        async with Publisher(settings.kafka_bootstrap_servers) as publisher:
            await publisher.publish_many(settings.topics.flux, july_days(2, days))
        await asyncio.sleep(outage_seconds)
        stack.start_database()
        expected = hours(JULY_1, JULY_1 + days * DAY)
        await predictor.until(lambda: _logged_equal(pool, expected), "a forecast for every hour of the days",
                              timeout=300)
        assert predictor.alive
        assert "database.retrying" in predictor.log.read_text(), "the outage did not reach the predictor"
        published = await read_forecasts(settings, len(expected))
        logged = {row["forecast_id"] for row in await pool.fetch("SELECT forecast_id FROM flare_prediction_log")}
        assert {f.message_id for f in published} == logged, "published and logged forecasts differ"
        assert len(published) == len(expected), "a forecast was published twice"


async def _count_at_least(pool, count: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM flare_prediction_log") >= count


async def _logged_equal(pool, expected: list[datetime]) -> bool:
    """Whether the log holds exactly the expected hours; otherwise what it holds instead is printed (once per
    change), so a failure's captured output tells a forecast lost from the log from one never issued."""
    try:
        logged = await logged_hours(pool)
    except DATABASE_OUTAGES as exc:  # the test's own pool while the database is restarting
        state = f"the test's query failed: {exc!r}"
    else:
        if logged == expected:
            return True
        missing, extra = sorted(set(expected) - set(logged)), sorted(set(logged) - set(expected))
        state = (f"logged {len(logged)} of {len(expected)} hours, {len(logged) - len(set(logged))} twice;"
                 f" missing {[t.isoformat() for t in missing[:5]]}, extra {[t.isoformat() for t in extra[:5]]}")
    if _last_printed.get(id(expected)) != state:
        _last_printed[id(expected)] = state
        print(state, flush=True)
    return False


_last_printed: dict[int, str] = {}


async def test_the_predictor_and_evaluator_start_again_by_themselves_after_the_broker_restarts_empty(
        private, tmp_path, full_run):
    stack, settings, pool = private
    async with AsyncExitStack() as cleanup:
        # faust's own settings: a member that vanished with its process is given up after 10 s, not 60
        quick_groups = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_REBALANCE_TIMEOUT": "10"}
        # both start together: each takes about 30 s to join its group
        predictor, evaluator = await asyncio.gather(*(cleanup.enter_async_context(running(ServiceProcess(
            name, settings, tmp_path / f"{name}.log", **{f"{name.upper()}__APP_NAME": f"{name}-{uuid.uuid4().hex[:8]}"},
            **quick_groups))) for name in ("predictor", "evaluator")))
        pids = {predictor.process.pid, evaluator.process.pid}

        # a day is forecast, then the broker restarts and loses every topic, record and offset
        await ingest(settings, pool, JULY_1, JULY_1 + DAY)
        await predictor.until(lambda: _logged_equal(pool, hours(JULY_1, JULY_1 + DAY)), "the first day's forecasts",
                              timeout=120)
        before = {row["forecast_id"] for row in await pool.fetch("SELECT forecast_id FROM flare_prediction_log")}
        stack.restart_broker()
        for service in (predictor, evaluator):
            await service.until(lambda service=service: _logged(service, "broker.restarted"),
                                "notice of the lost log", timeout=60)

        # nobody touches the services: the next days are ingested (8 days under --full, so that the first
        # day's forecasts reach the end of their 168 h window and are scored) and forecast
        days_after = 8 if full_run else 1
        end = JULY_1 + (1 + days_after) * DAY
        await ingest(settings, pool, JULY_1 + DAY, end)
        expected = hours(JULY_1, end)
        await predictor.until(lambda: _logged_equal(pool, expected), "a forecast for every hour, once",
                              timeout=240)
        logged = {row["forecast_id"] for row in await pool.fetch("SELECT forecast_id FROM flare_prediction_log")}
        published = await read_forecasts(settings, len(logged - before))
        assert {f.message_id for f in published} == logged - before, (
            "the forecasts on the new log are not the ones logged after the restart")
        assert len(published) == len(logged - before), "a forecast was published twice"
        assert {predictor.process.pid, evaluator.process.pid} == pids and predictor.alive and evaluator.alive

        # the evaluator took the first day's forecasts, gone from the broker, back from PostgreSQL (with those of
        # the new day the predictor had logged by then, which it reads again from the new log under the same ids)
        # the predictor can be done before the evaluator's new process has rebuilt: wait for it
        await evaluator.until(lambda: _rebuilt_after_restart(evaluator), "the evaluator to rebuild from PostgreSQL",
                              timeout=180)
        after_restart = evaluator.log.read_text().split('"broker.restarted"', 1)[1]
        assert _event(after_restart, "evaluator.tables_from_database")["pending"] >= len(before)
        if full_run:
            await evaluator.until(lambda: _resolved_include(pool, before), "every forecast of the first day scored",
                                  timeout=240)


async def _rebuilt_after_restart(evaluator: ServiceProcess) -> bool:
    _, restarted, after = evaluator.log.read_text(errors="replace").partition('"broker.restarted"')
    return bool(restarted) and '"evaluator.tables_from_database"' in after


async def _logged(service: ServiceProcess, event: str) -> bool:
    return event in service.log.read_text(errors="replace")


def _event(log_text: str, event: str) -> dict:
    """The first JSON log line of `event` in `log_text`."""
    lines = [line for line in log_text.splitlines() if f'"event": "{event}"' in line]
    assert lines, f"no {event} in the log"
    return json.loads(lines[0])


async def _resolved_include(pool, forecast_ids: set[str]) -> bool:
    return await pool.fetchval(
        "SELECT count(*) FROM flare_prediction_log WHERE forecast_id = ANY($1) AND resolved_at IS NOT NULL",
        list(forecast_ids)) == len(forecast_ids)


async def test_a_service_tells_a_lost_log_by_its_marker_and_a_broker_that_is_merely_away_by_nothing(
        tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("broker-only")
    broker = infra.start_embedded_broker(state_dir)

    def restart() -> None:
        infra.stop_embedded_broker(state_dir)
        infra.update_runtime(state_dir, "broker", broker)
        infra.start_embedded_broker(state_dir)

    async def marker_of(service: str) -> BrokerWatch:
        watch = BrokerWatch(broker["bootstrap"], service)
        await watch.leave_marker()
        return watch

    try:
        await marker_of("earlier")
        ours = await marker_of("ours")  # at offset 1
        async with ours.marker_reader() as reader:
            assert await ours.check(reader) is None, "the marker is there: nothing is lost"
            infra.stop_embedded_broker(state_dir)
            assert await ours.check(reader) is None, "a broker that is away proves nothing"
            infra.update_runtime(state_dir, "broker", broker)
            infra.start_embedded_broker(state_dir)
            assert "is gone" in await _evidence(ours, reader)

            await marker_of("another")  # the topic again, its log shorter than our marker's offset
            assert "ends at 1, with no record" in await _evidence(ours, reader)
            await marker_of("yet another")  # something else at our marker's offset
            assert "holds another record" in await _evidence(ours, reader)

            restart()  # a restart after which someone else was quicker still shows
            await marker_of("quick")
            await marker_of("quicker")
            assert await _evidence(ours, reader)
    finally:
        infra.stop_embedded_broker(state_dir)


async def _evidence(watch: BrokerWatch, reader, timeout: float = 30.0) -> str:
    """The watch's evidence once the broker answers again."""
    async with asyncio.timeout(timeout):
        while not (evidence := await watch.check(reader)):
            await asyncio.sleep(0.5)
    return evidence
