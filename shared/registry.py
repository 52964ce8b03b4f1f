"""The model registry in PostgreSQL: what versions exist, their files and digests, evidence and status, and
an append-only history of everything done to them.

A version is registered once with the sha256 of every artifact; `load_model` verifies every digest before
unpickling anything. Retention is the gatekeeper's (`services.gatekeeper.retention`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg

from shared import messages as m
from shared.forecast_model import DigestMismatch, ForecastModel, ModelFileError, read_verified

FORECAST_KIND = "forecast"


def survival_kind(target_class: str) -> str:
    """The kind of a single survival model registered by `flare train-survival`."""
    return f"survival-{target_class}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def record(
    conn: asyncpg.Connection, *, action: str, version: str | None, actor: str, reason: str,
    evidence: dict[str, Any] | None = None, event_id: str | None = None, event_time: datetime | None = None,
) -> bool:
    """Append one history entry; an entry with the same event id is not written twice. True if written."""
    event_time = event_time or _now()
    event_id = event_id or m.stable_id("model-history", action, version, actor, event_time.isoformat())
    status = await conn.execute(
        "INSERT INTO model_history (event_id, event_time, action, version, actor, reason, evidence)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        event_id, event_time, action, version, actor, reason, evidence or {},
    )
    return status.endswith(" 1")


async def register(
    conn: asyncpg.Connection, *, version: str, kind: str, artifacts: dict[str, str], digests: dict[str, str],
    data_window: tuple[datetime, datetime], hyperparameters: dict[str, Any], validation: dict[str, Any],
    backtest: dict[str, Any], actor: str, reason: str, request_id: str | None = None,
) -> None:
    """Register a candidate and record it. Registering the same version again changes nothing."""
    async with conn.transaction():
        status = await conn.execute(
            "INSERT INTO model_registry (version, kind, artifacts, digests, data_window_start, data_window_end,"
            " hyperparameters, validation, backtest, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'candidate')"
            " ON CONFLICT (version) DO NOTHING",
            version, kind, artifacts, digests, data_window[0], data_window[1], hyperparameters, validation, backtest,
        )
        if status.endswith(" 1"):
            await record(
                conn, action="registered", version=version, actor=actor, reason=reason,
                evidence={"kind": kind, "request_id": request_id, "digests": digests,
                          "data_window": [data_window[0].isoformat(), data_window[1].isoformat()]},
                event_id=m.stable_id("model-history", "registered", version),
            )


async def update_evidence(
    conn: asyncpg.Connection, version: str, *, validation: dict[str, Any] | None = None,
    backtest: dict[str, Any] | None = None, actor: str, reason: str,
) -> None:
    """Store new validation or backtest results on a version, and record them in the history."""
    async with conn.transaction():
        if validation is not None:
            await conn.execute(
                "UPDATE model_registry SET validation = $2, updated_at = now() WHERE version = $1", version, validation
            )
        if backtest is not None:
            await conn.execute(
                "UPDATE model_registry SET backtest = $2, updated_at = now() WHERE version = $1", version, backtest
            )
        action = "validated" if validation is not None else "backtested"
        await record(conn, action=action, version=version, actor=actor, reason=reason,
                     evidence=validation if validation is not None else backtest)


async def get(conn: asyncpg.Connection, version: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM model_registry WHERE version = $1", version)
    return dict(row) if row else None


async def list_models(conn: asyncpg.Connection, kind: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM model_registry WHERE ($1::text IS NULL OR kind = $1)"
        " ORDER BY created_at DESC, version DESC", kind
    )
    return [dict(row) for row in rows]


async def champion(conn: asyncpg.Connection, kind: str = FORECAST_KIND) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM model_registry WHERE kind = $1 AND status = 'champion'", kind)
    return dict(row) if row else None


async def find(conn: asyncpg.Connection, reference: str) -> dict[str, Any] | None:
    """The version named by `reference`: a version id, or the path of one of its artifact files."""
    row = await get(conn, reference)
    if row:
        return row
    wanted = Path(reference).expanduser().resolve()
    for row in await list_models(conn):
        if any(Path(path).resolve() == wanted for path in row["artifacts"].values()):
            return row
    return None


async def find_by_request(conn: asyncpg.Connection, request_id: str) -> dict[str, Any] | None:
    """The version trained for a retrain request, if one was already registered (a redelivered request)."""
    row = await conn.fetchrow(
        "SELECT r.* FROM model_history h JOIN model_registry r ON r.version = h.version"
        " WHERE h.action = 'registered' AND h.evidence->>'request_id' = $1 ORDER BY h.id LIMIT 1",
        request_id,
    )
    return dict(row) if row else None


def load_model(row: dict[str, Any]) -> ForecastModel:
    """Load a registered version; any file whose digest differs from the registered one is refused."""
    if row["status"] == "deleted":
        raise ModelFileError(f"version {row['version']} was deleted by the retention policy")
    return ForecastModel.load(row["version"], row["artifacts"], row["digests"])


def verify_files(row: dict[str, Any]) -> None:
    """Every artifact of a registered version is there with its registered sha256; nothing is unpickled.
    DigestMismatch or ModelFileError (naming the file) otherwise."""
    for name, path in row["artifacts"].items():
        if name not in row["digests"]:
            raise DigestMismatch(f"version {row['version']}: no registered digest for {name}; refused")
        read_verified(path, row["digests"][name])
