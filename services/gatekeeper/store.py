"""The gatekeeper's reads and writes: the status of each registered version (`model_status`), its decisions in the
model history (`model_decisions`), the validation log and its own tables (`shared.registry` has the lookups).

Functions take an open connection so that a caller composes them inside one transaction: a decision, its
history entries, its validation-log rows and the message announcing it commit together or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from shared import messages as m
from shared import registry

# History actions that make a version the champion of its kind; "champion at time T" reads these.
CHAMPION_ACTIONS = ("promoted", "rolled_back")


@dataclass(frozen=True)
class HistoryEntry:
    event_id: str
    action: str
    version: str | None
    actor: str
    reason: str
    event_time: datetime | None
    evidence: dict[str, Any] = field(default_factory=dict)


def wall_now() -> datetime:
    return datetime.now(timezone.utc)


# ---- registry -----------------------------------------------------------------------------------------------


async def lock_kind(conn: asyncpg.Connection, kind: str) -> list[dict[str, Any]]:
    """Lock every version of `kind` until the transaction ends: two promotions of one kind run one after the
    other, and the second sees what the first did."""
    # an advisory lock, not FOR UPDATE: the registry is a view over the trainer's versions and the statuses here,
    # and a version the trainer registers meanwhile is a candidate no act of this transaction has read
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('model-kind'), hashtext($1))", kind)
    rows = await conn.fetch("SELECT * FROM model_registry WHERE kind = $1 ORDER BY created_at", kind)
    return [dict(r) for r in rows]


async def with_status(conn: asyncpg.Connection, status: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [row for row in await registry.list_models(conn, kind) if row["status"] == status]


async def challenger(conn: asyncpg.Connection, kind: str) -> dict[str, Any] | None:
    found = await with_status(conn, "challenger", kind)
    return found[0] if found else None


async def set_status(
    conn: asyncpg.Connection, version: str, status: str, *, artifacts: dict[str, str] | None = None,
) -> None:
    """Give `version` its new status; `artifacts`: where retention moved its files (kept until moved again)."""
    await conn.execute(
        "INSERT INTO model_status (version, kind, status, artifacts) SELECT version, kind, $2, $3"
        " FROM model_versions WHERE version = $1 ON CONFLICT (version) DO UPDATE"
        " SET status = $2, artifacts = COALESCE($3, model_status.artifacts), updated_at = now()",
        version, status, artifacts,
    )


# ---- history and validation log -----------------------------------------------------------------------------


async def record(conn: asyncpg.Connection, entry: HistoryEntry) -> None:
    """Append a decision to the history; an entry with the same event id is not written twice."""
    await conn.execute(
        "INSERT INTO model_decisions (event_id, event_time, action, version, actor, reason, evidence)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        entry.event_id, entry.event_time or wall_now(), entry.action, entry.version, entry.actor, entry.reason,
        entry.evidence,
    )


async def log_check(
    conn: asyncpg.Connection, run_id: str, check_name: str, passed: bool, detail: Any, actor: str,
) -> bool:
    """Log one check of a run; a check already logged under the run's id is not logged again. True if logged."""
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str, sort_keys=True)
    status = await conn.execute(
        "INSERT INTO flare_system_validation_log (run_id, check_name, passed, detail, actor)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (run_id, check_name) DO NOTHING",
        run_id, check_name, passed, text, actor,
    )
    return status.endswith(" 1")


async def history(
    conn: asyncpg.Connection, *, version: str | None = None, action: str | None = None, actor: str | None = None,
    kind: str | None = None, since: datetime | None = None, until: datetime | None = None, limit: int = 100,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT h.* FROM model_history h LEFT JOIN model_registry r ON r.version = h.version"
        " WHERE ($1::text IS NULL OR h.version = $1) AND ($2::text IS NULL OR h.action = $2)"
        " AND ($3::text IS NULL OR h.actor = $3)"
        " AND ($4::text IS NULL OR coalesce(h.evidence->>'kind', r.kind) = $4)"
        " AND ($5::timestamptz IS NULL OR h.recorded_at >= $5) AND ($6::timestamptz IS NULL OR h.recorded_at <= $6)"
        " ORDER BY h.id DESC LIMIT $7",
        version, action, actor, kind, since, until, limit,
    )
    return [dict(r) for r in rows]


async def champion_at(conn: asyncpg.Connection, kind: str, at: datetime, *, clock: str) -> dict[str, Any] | None:
    """The history entry that made the champion of `kind` current at `at`; `clock` is 'recorded' (wall clock of
    the decision) or 'event' (the system's event time when it was taken)."""
    column = {"recorded": "recorded_at", "event": "event_time"}[clock]
    row = await conn.fetchrow(
        f"SELECT * FROM model_history WHERE action = ANY($1::text[]) AND evidence->>'kind' = $2 AND {column} <= $3"
        f" ORDER BY {column} DESC, id DESC LIMIT 1",
        list(CHAMPION_ACTIONS), kind, at,
    )
    return dict(row) if row else None


async def last_champion_entry(conn: asyncpg.Connection, version: str) -> dict[str, Any] | None:
    """The entry by which `version` last became champion (its evidence names the champion it replaced)."""
    row = await conn.fetchrow(
        "SELECT * FROM model_history WHERE action = ANY($1::text[]) AND version = $2 ORDER BY id DESC LIMIT 1",
        list(CHAMPION_ACTIONS), version,
    )
    return dict(row) if row else None


async def last_entry(conn: asyncpg.Connection, version: str, action: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM model_history WHERE version = $1 AND action = $2 ORDER BY id DESC LIMIT 1", version, action
    )
    return dict(row) if row else None


# ---- outbox -------------------------------------------------------------------------------------------------


async def enqueue(conn: asyncpg.Connection, topic: str, message: m.Message) -> None:
    await conn.execute(
        "INSERT INTO gatekeeper_outbox (message_id, topic, payload) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        message.message_id, topic, message.model_dump(mode="json"),
    )


async def unpublished(
    conn: asyncpg.Connection, *, older_than_seconds: float = 0.0, limit: int = 100,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM gatekeeper_outbox WHERE published_at IS NULL"
        " AND created_at <= now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        older_than_seconds, limit,
    )
    return [dict(r) for r in rows]


async def mark_published(conn: asyncpg.Connection, message_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE gatekeeper_outbox SET published_at = now() WHERE message_id = ANY($1::text[])", message_ids
    )


# ---- retrain requests ---------------------------------------------------------------------------------------


async def lock_retraining(conn: asyncpg.Connection) -> None:
    """One retrain decision at a time (stream and API alike), so two triggers cannot both open a request."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('flare-gatekeeper-retraining'))")


async def trigger_seen(conn: asyncpg.Connection, trigger_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM retrain_triggers WHERE trigger_id = $1", trigger_id)
    return dict(row) if row else None


async def retrain_requests(
    conn: asyncpg.Connection, *, status: str | None = None, limit: int = 200,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT r.*, (SELECT count(*) FROM retrain_triggers t WHERE t.request_id = r.request_id AND t.folded)"
        " AS folded_triggers FROM retrain_requests r WHERE ($1::text IS NULL OR r.status = $1)"
        " ORDER BY r.created_at DESC LIMIT $2",
        status, limit,
    )
    return [dict(r) for r in rows]


async def competing_requests(
    conn: asyncpg.Connection, event_time: datetime, cooldown_hours: float,
) -> list[dict[str, Any]]:
    """Requests a new trigger may fold into: those in flight and those within the cooldown of its event time."""
    rows = await conn.fetch(
        "SELECT request_id, target_class, status, event_time, created_at FROM retrain_requests"
        " WHERE status = 'requested' OR event_time BETWEEN $1::timestamptz - make_interval(secs => $2::float8)"
        " AND $1::timestamptz + make_interval(secs => $2::float8)",
        event_time, cooldown_hours * 3600.0,
    )
    return [dict(r) for r in rows]


async def insert_request(conn: asyncpg.Connection, message: m.RetrainRequested) -> None:
    await conn.execute(
        "INSERT INTO retrain_requests (request_id, target_class, reason, requested_by, evidence, event_time)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id) DO NOTHING",
        message.message_id, message.target_class, message.reason, message.requested_by, message.evidence,
        message.event_time,
    )


async def insert_trigger(
    conn: asyncpg.Connection, *, trigger_id: str, request_id: str, source: str, target_class: str, reason: str,
    requested_by: str, evidence: dict[str, Any], event_time: datetime, folded: bool, decision: str,
) -> None:
    await conn.execute(
        "INSERT INTO retrain_triggers (trigger_id, request_id, source, target_class, reason, requested_by, evidence,"
        " event_time, folded, decision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (trigger_id) DO NOTHING",
        trigger_id, request_id, source, target_class, reason, requested_by, evidence, event_time, folded, decision,
    )


async def finish_request(conn: asyncpg.Connection, request_id: str, status: str) -> str | None:
    """Mark a request answered; returns who asked for it (None if unknown)."""
    return await conn.fetchval(
        "UPDATE retrain_requests SET status = $2, updated_at = now() WHERE request_id = $1 RETURNING requested_by",
        request_id, status,
    )


# ---- clock and metrics --------------------------------------------------------------------------------------


async def advance_clock(
    conn: asyncpg.Connection, stream: str, event_time: datetime,
) -> tuple[datetime | None, datetime]:
    """Move the stream's clock to `event_time`; return (where it was, the earliest time it has seen)."""
    row = await conn.fetchrow(
        "SELECT last_event_time, first_event_time FROM gatekeeper_clock WHERE stream = $1 FOR UPDATE", stream
    )
    if row is None:
        await conn.execute(
            "INSERT INTO gatekeeper_clock (stream, first_event_time, last_event_time) VALUES ($1, $2, $2)",
            stream, event_time,
        )
        return None, event_time
    first = min(row["first_event_time"], event_time)
    await conn.execute(
        "UPDATE gatekeeper_clock SET last_event_time = $2, first_event_time = $3, updated_at = now() WHERE stream = $1",
        stream, event_time, first,
    )
    return row["last_event_time"], first


async def stored_flux_start(conn: asyncpg.Connection) -> datetime | None:
    """The earliest stored flux reading: the history a retraining would learn from."""
    return await conn.fetchval("SELECT min(time_tag) FROM flux_observations WHERE xrsb_flux IS NOT NULL")


async def clock_time(conn: asyncpg.Connection, stream: str) -> datetime | None:
    return await conn.fetchval("SELECT last_event_time FROM gatekeeper_clock WHERE stream = $1", stream)


async def record_metrics(conn: asyncpg.Connection, update: m.MetricsUpdated) -> None:
    await conn.execute(
        "INSERT INTO gatekeeper_metrics (message_id, model_version, shadow, window_name, as_of, scored_count, metrics)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        update.message_id, update.model_version, update.shadow, update.window, update.event_time, update.scored_count,
        update.metrics,
    )


async def latest_metrics(
    conn: asyncpg.Connection, version: str, window: str, *, not_after: datetime | None = None,
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM gatekeeper_metrics WHERE model_version = $1 AND window_name = $2 AND NOT shadow"
        " AND ($3::timestamptz IS NULL OR as_of <= $3) ORDER BY as_of DESC LIMIT 1",
        version, window, not_after,
    )
    return dict(row) if row else None
