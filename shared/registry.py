"""Reading the model registry: what versions exist, their files and digests, evidence and status, and the
append-only history of everything done to them.

`model_registry` and `model_history` are views over two owners' tables: the trainer registers each version, with
the sha256 of every artifact, and stores its evidence (`services.trainer.store`); the gatekeeper decides its
status and runs retention (`services.gatekeeper.store`, `services.gatekeeper.retention`). `load_model` verifies
every digest before unpickling anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from shared.forecast_model import DigestMismatch, ForecastModel, ModelFileError, read_verified

FORECAST_KIND = "forecast"


def survival_kind(target_class: str) -> str:
    """The kind of a single survival model registered by `flare train-survival`."""
    return f"survival-{target_class}"


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
