"""Migrations build the schema on an empty database once; writes keyed by message id are idempotent."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from shared.db import connect, migrate, migrations


@pytest.fixture
async def empty_database(stack):
    name = f"empty_{uuid.uuid4().hex[:8]}"
    admin = await connect(stack.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = stack.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_migrations_apply_to_an_empty_database_and_then_do_nothing(empty_database):
    conn = await connect(empty_database)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        tables = {r["tablename"]
                  for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        views = {r["viewname"] for r in await conn.fetch("SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
    finally:
        await conn.close()
    assert first == [name for _, name, _ in migrations()]
    assert second == []
    assert {"forecast_log", "forecast_outcomes", "flare_ingestion_log", "flare_system_validation_log",
            "model_registry", "model_history", "flux_observations", "flare_events"} <= tables
    assert views == {"flare_prediction_log"}  # the deployment plan's queries read it


async def test_a_database_logged_before_the_split_keeps_every_forecast_and_outcome_in_the_plans_view(empty_database):
    """Upgrading a database where the evaluator wrote outcomes on the predictor's rows: the plan's query over
    `flare_prediction_log` reads the same rows after the split into forecast_log and forecast_outcomes."""
    conn = await connect(empty_database)
    split = next(version for version, name, _ in migrations() if name.endswith("forecast_outcomes.sql"))
    try:
        async with conn.transaction():
            for version, _, sql in migrations():
                if version < split:
                    await conn.execute(sql)
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")
        await conn.executemany("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               [(v, n) for v, n, _ in migrations() if v < split])
        issued = datetime(2015, 7, 1, 12, tzinfo=timezone.utc)
        await conn.executemany(
            "INSERT INTO flare_prediction_log (forecast_id, prediction_timestamp, model_version, status, p_ge_c_24h,"
            " p_ge_m_24h, p_ge_x_24h, degraded, reason, actual_flare_class, outcome_scorable, hours_to_first,"
            " resolved_at) VALUES ($1, $2, 'v1', 'ok', 0.5, 0.1, 0.01, $3, $4, $5, $6, $7, $8)", [
                ("resolved", issued, False, None, "M", True, {"C": 3.0, "M": 3.0}, issued + timedelta(hours=25)),
                ("degraded", issued + timedelta(hours=1), True, "no flux", None, False, None,
                 issued + timedelta(hours=26)),
                ("waiting", issued + timedelta(hours=2), False, None, None, None, None, None),
            ])
        plans_query = "SELECT * FROM flare_prediction_log ORDER BY prediction_timestamp"
        before = [dict(row) for row in await conn.fetch(plans_query)]

        assert await migrate(conn) == [name for version, name, _ in migrations() if version >= split]
        after = [dict(row) for row in await conn.fetch(plans_query)]
        outcomes = await conn.fetch("SELECT forecast_id, degraded FROM forecast_outcomes ORDER BY forecast_id")
    finally:
        await conn.close()
    assert after == before
    assert [tuple(row) for row in outcomes] == [("degraded", True), ("resolved", False)]


async def test_a_repeated_forecast_write_leaves_one_row(clean_db):
    upsert = """
        INSERT INTO forecast_log (forecast_id, prediction_timestamp, model_version, status, class_probabilities)
        VALUES ($1, $2, $3, 'ok', $4)
        ON CONFLICT (forecast_id) DO UPDATE SET class_probabilities = EXCLUDED.class_probabilities
    """
    issued = datetime(2015, 7, 1, 12, tzinfo=timezone.utc)
    probabilities = {"none": 0.7, "C": 0.2, "M": 0.09, "X": 0.01}
    async with clean_db.acquire() as conn:
        for _ in range(3):
            await conn.execute(upsert, "forecast-1", issued, "v1", probabilities)
        rows = await conn.fetch("SELECT * FROM flare_prediction_log")
    assert len(rows) == 1
    assert rows[0]["class_probabilities"] == probabilities


async def test_the_model_history_cannot_be_rewritten(db_pool):
    async with db_pool.acquire() as conn:
        event_id = uuid.uuid4().hex
        await conn.execute(
            "INSERT INTO model_history (event_id, action, version, actor, reason)"
            " VALUES ($1, 'promote', 'v1', 'alice', 'test')",
            event_id,
        )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE model_history SET actor = 'mallory' WHERE event_id = $1", event_id)
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM model_history WHERE event_id = $1", event_id)
        assert await conn.fetchval("SELECT actor FROM model_history WHERE event_id = $1", event_id) == "alice"
