"""The registry's retention policy on a schedule: keep the newest versions of each kind, archive the rest,
delete archived files after the retention period (`shared.registry.apply_retention`, which records each
step in the history). File ages are wall-clock ages, so this schedule runs on the wall clock."""

from __future__ import annotations

import asyncio

from services.gatekeeper import store
from services.gatekeeper.lifecycle import Gatekeeper
from shared import messages as m
from shared import registry
from shared.logging import get_logger

log = get_logger(__name__)
ACTOR = "gatekeeper:retention"


async def run_retention(gatekeeper: Gatekeeper) -> registry.RetentionReport:
    settings = gatekeeper.settings
    now = store.wall_now()
    async with gatekeeper.pool.acquire() as conn:
        report = await registry.apply_retention(
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
