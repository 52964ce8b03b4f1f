"""The registry's retention policy on a schedule, the gatekeeper's alone: keep the newest `keep` versions of
each kind (plus the champion and the challenger), move the files of older ones to `<models>/archive/`, and
delete archived files after `archive_days`; each step is a history entry. File ages are wall-clock ages, so
this schedule runs on the wall clock."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

from services.gatekeeper import store
from services.gatekeeper.lifecycle import Gatekeeper
from shared import messages as m
from shared.logging import get_logger
from shared.model_status import GONE, PROTECTED, ModelStatus

log = get_logger(__name__)
ACTOR = "gatekeeper:retention"


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
    now = now or store.wall_now()
    report = RetentionReport()
    archive_dir = Path(model_dir) / "archive"
    for kind in [r["kind"] for r in await conn.fetch("SELECT DISTINCT kind FROM model_registry ORDER BY kind")]:
        async with conn.transaction():
            # under the kind's lock, as the acts are: a version an act makes champion meanwhile is not archived
            versions = await store.lock_kind(conn, kind)
            live = sorted((row for row in versions if row["status"] not in GONE),
                          key=lambda row: (row["created_at"], row["version"]), reverse=True)
            for row in live[keep:]:
                if row["status"] in PROTECTED:
                    continue
                moved = {name: _move(path, archive_dir) for name, path in row["artifacts"].items()}
                await store.set_status(conn, row["version"], ModelStatus.ARCHIVED, artifacts=moved)
                await store.record(conn, store.HistoryEntry(
                    m.stable_id("model-history", "archived", row["version"]), "archived", row["version"], actor,
                    f"retention: keep the newest {keep} {kind} versions", now,
                    {"kind": kind, "previous_status": row["status"], "artifacts": moved},
                ))
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
            await store.set_status(conn, row["version"], ModelStatus.DELETED)
            await store.record(conn, store.HistoryEntry(
                m.stable_id("model-history", "deleted", row["version"]), "deleted", row["version"], actor,
                f"retention: archived files are deleted after {archive_days} days", now,
                {"kind": row["kind"], "archived_at": row["archived_at"].isoformat(),
                 "files": list(row["artifacts"].values())},
            ))
        report.deleted.append(row["version"])
        log.info("registry.deleted", version=row["version"])
    return report


async def run_retention(gatekeeper: Gatekeeper) -> RetentionReport:
    settings = gatekeeper.settings
    now = store.wall_now()
    async with gatekeeper.pool.acquire() as conn:
        report = await apply_retention(
            conn, settings.model_path, keep=settings.gatekeeper.keep_models,
            archive_days=settings.gatekeeper.archive_retention_days, actor=ACTOR, now=now,
        )
        if report.archived or report.deleted:
            await store.log_check(
                conn, m.stable_id("retention", now.isoformat()), "retention", True,
                {"archived": report.archived, "deleted": report.deleted, "keep": settings.gatekeeper.keep_models,
                 "archive_retention_days": settings.gatekeeper.archive_retention_days}, ACTOR,
            )
    log.info("retention.run", archived=len(report.archived), deleted=len(report.deleted))
    return report


async def run_retention_schedule(gatekeeper: Gatekeeper) -> None:
    """At start, then every `retention_interval_hours`; a failed run is logged and tried again next time."""
    while True:
        try:
            await run_retention(gatekeeper)
        except Exception as exc:  # a full disk or a database hiccup must not stop the gatekeeper
            log.exception("retention.failed", error=str(exc))
        await asyncio.sleep(gatekeeper.settings.gatekeeper.retention_interval_hours * 3600)
