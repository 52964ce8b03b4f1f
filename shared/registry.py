"""The model registry in PostgreSQL: what versions exist, their files and digests, evidence and status, and
an append-only history of everything done to them.

A version is registered once with the sha256 of every artifact; `load_model` verifies every digest before
unpickling anything. Retention keeps the newest `keep` versions of each kind (plus the champion and the
challenger), moves the files of older ones to `<models>/archive/`, and deletes archived files after
`archive_days`; each step is a history entry.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg

from shared import messages as m
from shared.forecast_model import DigestMismatch, ForecastModel, ModelFileError, read_verified
from shared.logging import get_logger
from shared.model_status import GONE, PROTECTED

log = get_logger(__name__)
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
        "SELECT * FROM model_registry WHERE ($1::text IS NULL OR kind = $1) ORDER BY created_at DESC, version DESC", kind
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


# ---- retention ------------------------------------------------------------------------------------------


@dataclass
class RetentionReport:
    archived: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _move(path: str, folder: Path) -> str:
    source = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if source.exists():
        shutil.move(str(source), target)
    return str(target)


async def apply_retention(
    conn: asyncpg.Connection, model_dir: Path, *, keep: int, archive_days: int, actor: str,
    now: datetime | None = None,
) -> RetentionReport:
    """Archive all but the newest `keep` versions of each kind (never the champion or challenger); delete the
    files of versions archived more than `archive_days` ago. Safe to run again: it only acts on what is due."""
    now = now or _now()
    report = RetentionReport()
    archive_dir = Path(model_dir) / "archive"
    for kind in [r["kind"] for r in await conn.fetch("SELECT DISTINCT kind FROM model_registry ORDER BY kind")]:
        live = await conn.fetch(
            "SELECT * FROM model_registry WHERE kind = $1 AND status <> ALL($2::text[])"
            " ORDER BY created_at DESC, version DESC",
            kind, sorted(GONE),
        )
        for row in live[keep:]:
            if row["status"] in PROTECTED:
                continue
            async with conn.transaction():
                moved = {name: _move(path, archive_dir) for name, path in row["artifacts"].items()}
                await conn.execute(
                    "UPDATE model_registry SET artifacts = $2, status = 'archived', updated_at = now() WHERE version = $1",
                    row["version"], moved,
                )
                await record(
                    conn, action="archived", version=row["version"], actor=actor,
                    reason=f"retention: keep the newest {keep} {kind} versions", event_time=now,
                    evidence={"kind": kind, "previous_status": row["status"], "artifacts": moved},
                    event_id=m.stable_id("model-history", "archived", row["version"]),
                )
            report.archived.append(row["version"])
            log.info("registry.archived", version=row["version"], kind=kind)
    due = await conn.fetch(
        "SELECT r.version, r.kind, r.artifacts, max(h.event_time) AS archived_at FROM model_registry r"
        " JOIN model_history h ON h.version = r.version AND h.action = 'archived'"
        " WHERE r.status = 'archived' GROUP BY r.version, r.kind, r.artifacts"
        " HAVING max(h.event_time) <= $1",
        now - timedelta(days=archive_days),
    )
    for row in due:
        async with conn.transaction():
            for path in row["artifacts"].values():
                Path(path).unlink(missing_ok=True)
            await conn.execute(
                "UPDATE model_registry SET status = 'deleted', updated_at = now() WHERE version = $1", row["version"]
            )
            await record(
                conn, action="deleted", version=row["version"], actor=actor,
                reason=f"retention: archived files are deleted after {archive_days} days", event_time=now,
                evidence={"kind": row["kind"], "archived_at": row["archived_at"].isoformat(), "files": list(row["artifacts"].values())},
                event_id=m.stable_id("model-history", "deleted", row["version"]),
            )
        report.deleted.append(row["version"])
        log.info("registry.deleted", version=row["version"])
    return report
