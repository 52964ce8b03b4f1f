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
            "model_versions", "model_status", "model_decisions", "model_training_history", "flux_observations",
            "flare_events"} <= tables
    # each joins the tables of two owners, with the columns it had as a table
    assert views == {"flare_prediction_log", "model_registry", "model_history"}


async def migrated_up_to(conn, migration: str) -> int:
    """Apply the migrations before the one whose name ends with `migration`, as a database of that time had
    them; return its version."""
    split = next(version for version, name, _ in migrations() if name.endswith(migration))
    async with conn.transaction():
        for version, _, sql in migrations():
            if version < split:
                await conn.execute(sql)
    await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now())")
    await conn.executemany("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                           [(v, n) for v, n, _ in migrations() if v < split])
    return split


async def test_a_database_logged_before_the_split_keeps_every_forecast_and_outcome_in_the_plans_view(empty_database):
    """Upgrading a database where the evaluator wrote outcomes on the predictor's rows: the plan's query over
    `flare_prediction_log` reads the same rows after the split into forecast_log and forecast_outcomes."""
    conn = await connect(empty_database)
    split = await migrated_up_to(conn, "forecast_outcomes.sql")
    try:
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


async def test_a_registry_written_by_two_services_reads_the_same_after_the_split_and_keeps_one_champion(
        empty_database):
    """Upgrading a database where the trainer and the gatekeeper both wrote model_registry and model_history:
    both read the same after the split into each service's tables, and the database still refuses a second
    champion of a kind."""
    conn = await connect(empty_database)
    split = await migrated_up_to(conn, "model_status.sql")
    try:
        trained = datetime(2015, 7, 1, tzinfo=timezone.utc)
        await conn.executemany(
            "INSERT INTO model_registry (version, kind, artifacts, digests, status, backtest, created_at, updated_at)"
            " VALUES ($1, 'forecast', $2, '{}', $3, $4, $5::timestamptz, $5::timestamptz + interval '1 hour')", [
                ("v1", {"model": "/models/archive/v1.joblib"}, "archived", {}, trained),
                ("v2", {"model": "/models/v2.joblib"}, "retired", {"bss": 0.2}, trained + timedelta(days=1)),
                ("v3", {"model": "/models/v3.joblib"}, "champion", {}, trained + timedelta(days=2)),
                ("v4", {"model": "/models/v4.joblib"}, "candidate", {"bss": 0.3}, trained + timedelta(days=3)),
            ])
        await conn.executemany(
            "INSERT INTO model_history (event_id, action, version, actor, reason) VALUES ($1, $2, $3, $4, 'test')",
            [(f"e{i}", action, version, actor) for i, (action, version, actor) in enumerate([
                ("registered", "v2", "trainer"), ("promoted", "v2", "alice"), ("registered", "v3", "trainer"),
                ("backtested", "v3", "cli"), ("promoted", "v3", "gatekeeper"), ("archived", "v1", "retention"),
                ("registered", "v4", "trainer"), ("validated", "v4", "cli"),
            ])])
        registry_query = "SELECT * FROM model_registry ORDER BY version"
        history_query = "SELECT * FROM model_history ORDER BY id"
        before = ([dict(row) for row in await conn.fetch(registry_query)],
                  [dict(row) for row in await conn.fetch(history_query)])

        assert await migrate(conn) == [name for version, name, _ in migrations() if version >= split]
        after = ([dict(row) for row in await conn.fetch(registry_query)],
                 [dict(row) for row in await conn.fetch(history_query)])
        trainers = await conn.fetch("SELECT action FROM model_training_history ORDER BY id")
        decisions = await conn.fetch("SELECT action FROM model_decisions ORDER BY id")
        statuses = await conn.fetch("SELECT version, status FROM model_status ORDER BY version")
        with pytest.raises(asyncpg.UniqueViolationError, match="one_champion"):
            await conn.execute("UPDATE model_status SET status = 'champion' WHERE version = 'v2'")
    finally:
        await conn.close()
    assert after == before
    assert [row["action"] for row in trainers] == ["registered", "registered", "backtested", "registered", "validated"]
    assert [row["action"] for row in decisions] == ["promoted", "promoted", "archived"]
    # a candidate has no status row: the gatekeeper has not acted on it
    assert [tuple(row) for row in statuses] == [("v1", "archived"), ("v2", "retired"), ("v3", "champion")]


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


@pytest.mark.parametrize("table", ["model_decisions", "model_training_history"])
async def test_the_model_history_cannot_be_rewritten(db_pool, table):
    async with db_pool.acquire() as conn:
        event_id = uuid.uuid4().hex
        await conn.execute(
            f"INSERT INTO {table} (event_id, action, version, actor, reason)"
            " VALUES ($1, 'promote', 'v1', 'alice', 'test')",
            event_id,
        )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(f"UPDATE {table} SET actor = 'mallory' WHERE event_id = $1", event_id)
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(f"DELETE FROM {table} WHERE event_id = $1", event_id)
        assert await conn.fetchval("SELECT actor FROM model_history WHERE event_id = $1", event_id) == "alice"
