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

The broker restarting (issue #9 part b) is not proven here yet. What was found: the embedded broker keeps
everything in memory, so a restart loses every topic, message and committed offset; aiokafka and faust clients
reconnect by themselves and rejoin their groups; but the first client that asks for a lost topic has Tansu
re-create it with its default of 4 partitions, and a predictor running across such a restart did not forecast
the day ingested after it within 3 minutes. Recoverable from PostgreSQL: stored flux and flares, forecasts,
outcomes, metrics, drift episodes, the registry and the gatekeeper's outbox; the evaluator refills its pending
forecasts, flux bins and flares from it when its tables come back empty. Not recoverable: messages not yet
consumed when the broker stopped, the dashboard's history (it reads no database), a retrain request in flight
(asked again after the gatekeeper's in-flight timeout).

Short version (`make test`): the predictor alone on two days of July 2015, the database stopped for 10 s while it
works through them. Full version (`make reliability`): a week, the database stopped for 30 s.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared import infra
from shared.db import create_pool, migrate_dsn
from services.ingestor.pipeline import Ingestor
from shared.kafka import Publisher, ensure_topics
from shared.settings import Settings, load_settings
from shared.topics import topic_registry
from tests.conftest import DATA_DIR, unique_topics
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


async def outage(stack: PrivateStack, seconds: float) -> None:
    stack.stop_database()
    await asyncio.sleep(seconds)
    stack.start_database()


# ---- the story ----------------------------------------------------------------------------------------------------


async def test_the_predictor_waits_out_a_database_outage_and_forecasts_every_hour_once(
        tmp_path_factory, tmp_path, full_run):
    stack = PrivateStack(tmp_path_factory.mktemp("outage-stack"))
    try:
        settings = await private_settings(stack, tmp_path)
        pool = await create_pool(settings.database_dsn)
        async with AsyncExitStack() as cleanup:
            cleanup.push_async_callback(pool.close)
            async with pool.acquire() as conn:
                await register_model(conn, settings.model_path, status="champion")
            # the days are on the topic and in the database before the predictor starts: it works through them
            days, outage_seconds = (7, 30.0) if full_run else (2, 10.0)
            await ingest(settings, pool, JULY_1, JULY_1 + days * DAY)
            app_name = f"predictor-{uuid.uuid4().hex[:8]}"
            predictor = await cleanup.enter_async_context(running(ServiceProcess(
                "predictor", settings, tmp_path / "predictor.log", PREDICTOR__APP_NAME=app_name)))

            # the database stops while the predictor is part way through
            await predictor.until(lambda: _count_at_least(pool, 3), "the first forecasts logged", timeout=120)
            await outage(stack, outage_seconds)
            expected = hours(JULY_1, JULY_1 + days * DAY)
            await predictor.until(lambda: _logged_equal(pool, expected), "a forecast for every hour of the days",
                                  timeout=300)
            assert predictor.alive
            assert "database.retrying" in predictor.log.read_text(), "the outage did not reach the predictor"
            published = await read_forecasts(settings, len(expected))
            logged = {row["forecast_id"] for row in await pool.fetch("SELECT forecast_id FROM flare_prediction_log")}
            assert {f.message_id for f in published} == logged, "published and logged forecasts differ"
            assert len(published) == len(expected), "a forecast was published twice"

    finally:
        stack.close()


async def _count_at_least(pool, count: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM flare_prediction_log") >= count


async def _logged_equal(pool, expected: list[datetime]) -> bool:
    try:
        return await logged_hours(pool) == expected
    except (OSError, ConnectionError):  # the test's own pool while the database is restarting
        return False
