"""The trainer's writes: the versions it trained (`model_versions`) with their evidence, and its entries in the
model history (`model_training_history`). What the gatekeeper decides of a version is the gatekeeper's
(`model_status`, `model_decisions`); `shared.registry` reads the two together.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

from shared import messages as m


async def record(
    conn: asyncpg.Connection, *, action: str, version: str, actor: str, reason: str, evidence: dict[str, Any],
    event_id: str | None = None,
) -> None:
    """Append one entry to the history; an entry with the same event id is not written twice."""
    event_time = datetime.now(timezone.utc)
    await conn.execute(
        "INSERT INTO model_training_history (event_id, event_time, action, version, actor, reason, evidence)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        event_id or m.stable_id("model-history", action, version, actor, event_time.isoformat()),
        event_time, action, version, actor, reason, evidence,
    )


async def register(
    conn: asyncpg.Connection, *, version: str, kind: str, artifacts: dict[str, str], digests: dict[str, str],
    data_window: tuple[datetime, datetime], hyperparameters: dict[str, Any], validation: dict[str, Any],
    backtest: dict[str, Any], actor: str, reason: str, request_id: str | None = None,
) -> None:
    """Register a candidate and record it. Registering the same version again changes nothing."""
    async with conn.transaction():
        status = await conn.execute(
            "INSERT INTO model_versions (version, kind, artifacts, digests, data_window_start, data_window_end,"
            " hyperparameters, validation, backtest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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
                "UPDATE model_versions SET validation = $2, updated_at = now() WHERE version = $1", version, validation
            )
        if backtest is not None:
            await conn.execute(
                "UPDATE model_versions SET backtest = $2, updated_at = now() WHERE version = $1", version, backtest
            )
        action = "validated" if validation is not None else "backtested"
        await record(conn, action=action, version=version, actor=actor, reason=reason,
                     evidence=validation if validation is not None else backtest or {})
