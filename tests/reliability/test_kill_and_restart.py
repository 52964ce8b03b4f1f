"""A service killed with SIGKILL in the middle of a replay and restarted loses nothing and scores nothing twice:
the forecasts, their outcomes and the skill figures in PostgreSQL are those of the same replay uninterrupted.

Each replay has its own topics and its own database (two databases on the test server), so the uninterrupted
reference and the interrupted run go side by side. A kill lands at a random point of the victim's progress
(after a random number of its forecasts or outcomes are in the log), and the service is restarted after a
random pause. The random numbers come from one seed, printed with the test output and named in the failure
message; `KILL_SEED=<seed>` runs the same kills again.

Short version (`make test`): three days of the July 2015 GOES-15 1-minute file and the flares detected in them,
the predictor and the evaluator killed once each. Full version (`make reliability`): a week, and the ingestor
killed mid-ingest and run again as an operator would.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from services.evaluator.resolution import VERIFICATION_HOURS
from services.ingestor.pipeline import Ingestor
from shared.db import create_pool, migrate_dsn
from shared.kafka import Publisher, ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry
from tests.conftest import unique_topics
from tests.support.predictor_models import JULY_2015, register_model
from tests.support.service_process import ServiceProcess

JULY_1 = datetime(2015, 7, 1, tzinfo=timezone.utc)
REPLAY_SECONDS = 20.0  # the ingest is paced to last about this long, so kills land while the data flows
# faust's settings: a killed worker's session expires after 10 s (not a minute) and its partitions go to the
# restarted one
SHORT_SESSION = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_REBALANCE_TIMEOUT": "10"}
SETTLE_TIMEOUT = 300.0


# ---- what a replay leaves in PostgreSQL --------------------------------------------------------------------

FORECASTS = """
    SELECT forecast_id, prediction_timestamp, model_version, shadow, status, predicted_class, class_probabilities,
           probability_distribution, p_ge_c_24h, p_ge_m_24h, p_ge_x_24h, actual_flare_class, outcome_scorable,
           hours_to_first, resolved_at IS NOT NULL AS resolved
    FROM flare_prediction_log
"""
# the newest cumulative figures of each model version; their as_of is the evaluator's clock when the last
# forecasts resolved, which depends on how far behind the flux the predictor ran (timing, not data), and the 7 and
# 30 day windows end there, so only the cumulative window is compared
METRICS = """
    SELECT DISTINCT ON (model_version, shadow) model_version, shadow, scored_count, metrics
    FROM model_metrics WHERE window_name = 'all' ORDER BY model_version, shadow, as_of DESC
"""
# drift episodes without their start and end: those are the evaluator's clock when the breaching outcome came,
# which depends on how far behind the flux the predictor ran, as the figures' as_of does
DRIFT = ("SELECT model_version, ordinal, window_name, metric, value, threshold, cleared_at IS NULL AS open"
         " FROM metric_drift_episodes")


@dataclass(frozen=True)
class Snapshot:
    """The deterministic columns of what a replay left: no wall-clock times, no ingestion run ids."""

    forecasts: dict[str, tuple]
    metrics: dict[tuple, tuple]
    drift: frozenset[tuple]
    flares: frozenset[str]
    flux_rows: int

    @classmethod
    async def of(cls, pool) -> Snapshot:
        async with pool.acquire() as conn:
            forecasts = {r["forecast_id"]: tuple(r.values()) for r in await conn.fetch(FORECASTS)}
            metrics = {tuple(r.values())[:2]: tuple(r.values())[2:] for r in await conn.fetch(METRICS)}
            drift = frozenset(tuple(r.values()) for r in await conn.fetch(DRIFT))
            flares = frozenset(r["event_id"] for r in await conn.fetch("SELECT event_id FROM flare_events"))
            flux_rows = await conn.fetchval("SELECT count(*) FROM flux_observations")
        return cls(forecasts, metrics, drift, flares, flux_rows)

    @property
    def resolved(self) -> int:
        return sum(1 for row in self.forecasts.values() if row[-1])

    def differences(self, reference: Snapshot) -> list[str]:
        """What this snapshot has that the reference has not, and the other way round."""
        found = []
        for name in ("forecasts", "metrics"):
            mine, theirs = getattr(self, name), getattr(reference, name)
            missing, extra = theirs.keys() - mine.keys(), mine.keys() - theirs.keys()
            changed = [key for key in theirs.keys() & mine.keys() if theirs[key] != mine[key]]
            if missing:
                found.append(f"{len(missing)} {name} missing, e.g. {sorted(missing)[:3]}")
            if extra:
                found.append(f"{len(extra)} {name} not in the reference, e.g. {sorted(extra)[:3]}")
            for key in sorted(changed)[:3]:
                found.append(f"{name} {key}: {mine[key]} instead of {theirs[key]}")
            if len(changed) > 3:
                found.append(f"... {len(changed)} {name} differ in all")
        for name in ("drift", "flares", "flux_rows"):
            if getattr(self, name) != getattr(reference, name):
                found.append(f"{name}: {getattr(self, name)} instead of {getattr(reference, name)}")
        return found


# ---- one replay: its own database, topics and services -----------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


@asynccontextmanager
async def own_database(admin_pool, dsn: str) -> AsyncIterator[str]:
    """A new, migrated database on the test server; dropped afterwards."""
    name = f"flare_replay_{uuid.uuid4().hex[:8]}"
    await admin_pool.execute(f'CREATE DATABASE "{name}"')
    try:
        own = with_database(dsn, name)
        await migrate_dsn(own)
        yield own
    finally:
        await admin_pool.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Replay:
    name: str
    settings: Settings
    pool: object
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def start_services(self, stack: AsyncExitStack, log_dir: Path) -> None:
        """The predictor and the evaluator on this replay's database and topics, each its own consumer group;
        stopped when `stack` closes."""
        for service, app_name in (("predictor", "PREDICTOR__APP_NAME"), ("evaluator", "EVALUATOR__APP_NAME")):
            process = ServiceProcess(service, self.settings, log_dir / f"{self.name}-{service}.log",
                                     **{app_name: f"{service}-{uuid.uuid4().hex[:8]}"}, **SHORT_SESSION)
            process.start()
            stack.callback(process.stop)
            self.services[service] = process

    async def ingest(self, start: datetime, end: datetime, speed: float) -> None:
        """The replay through the ingestor's Python API."""
        async with Publisher(self.settings.kafka_bootstrap_servers) as publisher:
            stats = await Ingestor(self.settings, self.pool, publisher).ingest_file(JULY_2015, speed=speed, start=start,
                                                                                   end=end)
        assert stats.status == "ok", f"{self.name}: the ingest failed: {stats.error}"

    async def ingest_killed_and_run_again(self, start: datetime, end: datetime, speed: float, kill: Kill,
                                          log_dir: Path, say: Callable[[str], None]) -> None:
        """The replay by `flare ingest`, killed part-way and run again from the start, as an operator would."""
        command = ServiceProcess("ingestor", self.settings, log_dir / f"{self.name}-ingest.log", command=[
            "-m", "flare_cli.main", "ingest", str(JULY_2015), "--speed", str(speed),
            "--from", start.isoformat(), "--until", end.isoformat()])
        self.services[kill.service] = command
        command.start()
        await carry_out(self, kill, say)
        assert await command.exited(timeout=SETTLE_TIMEOUT) == 0, (
            f"{self.name}: the ingest failed:\n{command.log_tail()}")

    def log_tails(self) -> str:
        return "\n".join(f"--- {name}:\n{service.log_tail()}" for name, service in self.services.items())

    async def count(self, sql: str) -> int:
        return await self.pool.fetchval(sql)


@asynccontextmanager
async def replay(name: str, base: Settings, admin_pool) -> AsyncIterator[Replay]:
    """A replay's own database and topics."""
    async with own_database(admin_pool, base.database_dsn) as dsn:
        settings = base.model_copy(update={"database_url": SecretStr(dsn), "topics": unique_topics()})
        await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
        pool = await create_pool(dsn)
        try:
            yield Replay(name, settings, pool)
        finally:
            await pool.close()


async def register_champion(runs: list[Replay]) -> str:
    """One model version, saved once and registered alike in every replay's database."""
    first, *others = runs
    async with first.pool.acquire() as conn:
        version = await register_model(conn, first.settings.model_path, status="champion")
        rows = {table: dict(await conn.fetchrow(f"SELECT * FROM {table} WHERE version = $1", version))
                for table in ("model_versions", "model_status")}
    for run in others:
        for table, row in rows.items():
            await run.pool.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES"
                                   f" ({', '.join(f'${i + 1}' for i in range(len(row)))})", *row.values())
    return version


# ---- kills -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """Kill `service` once `progress` (a count in its replay's database) reaches `after`; restart after `pause` s."""

    service: str
    progress: str
    after: int
    pause: float

    def __str__(self) -> str:
        return f"{self.service} killed after {self.after} {self.progress}, restarted {self.pause:.1f} s later"


PROGRESS_SQL = {
    "flux readings stored": "SELECT count(*) FROM flux_observations",
    "forecasts logged": "SELECT count(*) FROM flare_prediction_log",
    "outcomes resolved": "SELECT count(*) FROM flare_prediction_log WHERE resolved_at IS NOT NULL",
}


def plan_kills(rng: random.Random, hours: int, full: bool) -> list[Kill]:
    """The predictor after some of the replay's hourly forecasts, the evaluator after some of their outcomes
    (the last day's forecasts stay open: their 24 h windows reach past the replay); in the full version also the
    ingest after some of its readings are stored.

    The evaluator's kill comes at an outcome of a forecast made before the predictor's kill, so it does not wait
    for the restarted predictor: the two restarts (half a minute each to rejoin their groups) overlap."""
    forecasts = rng.randint(hours // 5, 4 * hours // 5)
    outcomes = rng.randint((hours - 24) // 5, min(forecasts, 4 * (hours - 24) // 5))
    kills = [Kill("predictor", "forecasts logged", forecasts, rng.uniform(0.0, 3.0)),
             Kill("evaluator", "outcomes resolved", outcomes, rng.uniform(0.0, 3.0))]
    if full:
        minutes = hours * 60
        kills.append(Kill("ingestor", "flux readings stored", rng.randint(minutes // 5, 4 * minutes // 5),
                          rng.uniform(0.0, 3.0)))
    return kills


async def carry_out(run: Replay, kill: Kill, say: Callable[[str], None]) -> None:
    service = run.services[kill.service]
    await service.until(lambda: _reached(run, kill), f"{kill.after} {kill.progress} before the kill",
                        timeout=SETTLE_TIMEOUT)
    service.kill()
    say(f"killed the {kill.service} at {await run.count(PROGRESS_SQL[kill.progress])} {kill.progress}")
    await asyncio.sleep(kill.pause)
    service.restart()


async def _reached(run: Replay, kill: Kill) -> bool:
    return await run.count(PROGRESS_SQL[kill.progress]) >= kill.after


# ---- settling ----------------------------------------------------------------------------------------------

# A replay has settled when the predictor has forecast the last hour, the evaluator has resolved exactly the
# forecasts whose window and grace the last reading passed, and the newest cumulative figures of each model
# version count every one of them (they come from a timer, after the outcomes). Nothing changes after that.
# Degraded forecasts (from the flare history alone, e.g. the first hours, before the flux covers its lookback)
# are counted apart from the version's own scores, under degraded.resolved_count.
SETTLED = f"""
    WITH resolved AS (
        SELECT model_version, shadow, count(*) AS resolved FROM flare_prediction_log
        WHERE resolved_at IS NOT NULL GROUP BY model_version, shadow
    ), counted AS (
        SELECT model_version, shadow,
               (metrics->>'resolved_count')::numeric
               + coalesce((metrics->>'degraded.resolved_count')::numeric, 0) AS counted
        FROM ({METRICS}) AS newest
    )
    SELECT max(prediction_timestamp) >= $1
       AND bool_and((resolved_at IS NOT NULL)
                    = (prediction_timestamp + $2 <= (SELECT max(time_tag) FROM flux_observations)))
       AND (SELECT bool_and(counted IS NOT DISTINCT FROM resolved)
            FROM resolved LEFT JOIN counted USING (model_version, shadow))
    FROM flare_prediction_log
"""


async def is_settled(run: Replay, end: datetime) -> bool:
    due_after = timedelta(hours=VERIFICATION_HOURS, minutes=run.settings.evaluator.resolution_grace_minutes)
    return bool(await run.pool.fetchval(SETTLED, end - timedelta(hours=1), due_after))


async def settled(run: Replay, end: datetime, timeout: float = SETTLE_TIMEOUT) -> bool:
    """Whether the replay settles within `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await is_settled(run, end):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


# ---- the test ----------------------------------------------------------------------------------------------


@pytest.fixture
def kill_seed() -> int:
    seed = int(os.environ.get("KILL_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\nKILL_SEED={seed}")
    return seed


async def test_killed_and_restarted_services_leave_the_forecasts_and_outcomes_of_an_uninterrupted_replay(
        settings, db_pool, tmp_path, full_run, kill_seed):
    rng = random.Random(kill_seed)
    days = 7 if full_run else 3
    start, end = JULY_1, JULY_1 + timedelta(days=days)
    speed = (end - start).total_seconds() / REPLAY_SECONDS
    kills = plan_kills(rng, days * 24, full_run)
    service_kills = [kill for kill in kills if kill.service != "ingestor"]
    ingest_kill = next((kill for kill in kills if kill.service == "ingestor"), None)
    told = f"KILL_SEED={kill_seed}: " + "; ".join(map(str, kills))
    print(told)

    async with AsyncExitStack() as stack:
        reference = await stack.enter_async_context(replay("uninterrupted", settings, db_pool))
        interrupted = await stack.enter_async_context(replay("interrupted", settings, db_pool))
        await register_champion([reference, interrupted])
        for run in (reference, interrupted):
            run.start_services(stack, tmp_path)
        await asyncio.gather(*(service.ready()
                               for run in (reference, interrupted) for service in run.services.values()))
        interrupted_ingest = (interrupted.ingest_killed_and_run_again(start, end, speed, ingest_kill, tmp_path, print)
                              if ingest_kill else interrupted.ingest(start, end, speed))
        await asyncio.gather(reference.ingest(start, end, speed), interrupted_ingest,
                             *(carry_out(interrupted, kill, print) for kill in service_kills))
        assert await settled(reference, end), f"the uninterrupted replay did not settle:\n{reference.log_tails()}"
        expected = await Snapshot.of(reference.pool)
        interrupted_settled = await settled(interrupted, end)
        got = await Snapshot.of(interrupted.pool)

    assert expected.resolved > 0 and len(expected.forecasts) >= (days - 1) * 24, "the reference replay made too little"
    assert got == expected, (f"{told}\n{'' if interrupted_settled else 'the interrupted replay did not settle; '}"
                             + "\n".join(got.differences(expected)))
