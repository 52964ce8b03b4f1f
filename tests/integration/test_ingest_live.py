"""The live ingestor against SWPC's feed served by a local HTTP server: a first poll ingests, a poll after
SWPC revised some minutes publishes the corrections only, and with the server gone the cache stands in and
the ingestion log says so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.ingestor.live import SwpcFeedClient
from services.ingestor.pipeline import run_live
from shared.settings import IngestionSettings
from tests.support.swpc_server import FEED, LocalSwpc
from tests.integration.test_ingest_files import ingestor as ingestor  # fixture, re-exported
from tests.integration.test_ingest_files import topic_messages

def live_client(swpc: LocalSwpc, tmp_path: Path, **overrides) -> SwpcFeedClient:
    settings = IngestionSettings(**{
        "swpc_base_url": swpc.base_url, "swpc_feeds": [FEED], "http_timeout_seconds": 2, "http_retries": 2,
        "retry_backoff_seconds": 0.05, "cache_expiry_seconds": 3600, **overrides,
    })
    return SwpcFeedClient(settings, tmp_path / "cache")


async def test_polling_ingests_then_publishes_only_corrections_then_falls_back_to_the_cache(
    ingestor, settings, clean_db, swpc, tmp_path: Path,
):
    polls = []
    async with live_client(swpc, tmp_path) as client:
        async def poll() -> None:
            await run_live(ingestor, client, [FEED], interval_seconds=0, once=True, on_poll=polls.extend)

        await poll()
        first = polls[-1]
        assert (first.status, first.used_cache, first.records_corrected) == ("ok", False, 0)
        assert first.records_published == 1_438 + first.flares_published

        revised_times = swpc.revise(minutes=5, factor=1.5)
        await poll()
        second = polls[-1]
        assert (second.status, second.records_published, second.records_corrected) == ("ok", 5, 5)

        await poll()  # nothing new at SWPC: the server answers 304, nothing is published
        assert (polls[-1].status, polls[-1].records_published) == ("ok", 0)

        swpc.stop()
        await poll()
        offline = polls[-1]
        assert (offline.status, offline.used_cache, offline.records_published) == ("cache", True, 0)
        assert "used cache" in offline.error

    flux = await topic_messages(settings, "flux")
    assert len(flux) == 1_438 + 5
    originals, corrections = flux[:1_438], flux[1_438:]
    assert not any(m.is_correction for m in originals)
    assert all(m.is_correction for m in corrections)
    assert [m.event_time.strftime("%Y-%m-%dT%H:%M:%SZ") for m in corrections] == revised_times
    by_time = {m.event_time: m for m in originals}
    for correction in corrections:
        original = by_time[correction.event_time]
        assert correction.message_id != original.message_id
        assert correction.xrsb_flux == pytest.approx(original.xrsb_flux * 1.5)

    async with clean_db.acquire() as conn:
        revisions = await conn.fetch(
            "SELECT revision, count(*) FROM flux_observations GROUP BY revision ORDER BY revision")
        log = await conn.fetch(
            "SELECT status, used_cache, records_corrected, error FROM flare_ingestion_log ORDER BY started_at")
    assert [tuple(row) for row in revisions] == [(0, 1_433), (1, 5)]
    assert [(row["status"], row["used_cache"], row["records_corrected"]) for row in log] == [
        ("ok", False, 0), ("ok", False, 5), ("ok", False, 0), ("cache", True, 0)]
    assert "used cache" in log[-1]["error"]


async def test_server_errors_are_retried_and_an_expired_cache_is_not_used(ingestor, clean_db, swpc, tmp_path: Path):
    swpc.handler.failures_left = 2
    async with live_client(swpc, tmp_path) as client:
        retried = await ingestor.ingest_feed(client, FEED)
    assert retried.status == "ok" and swpc.handler.requests == 3

    swpc.stop()
    async with live_client(swpc, tmp_path, cache_expiry_seconds=0.001) as client:
        time.sleep(0.01)
        expired = await ingestor.ingest_feed(client, FEED)
    assert expired.status == "failed" and "expiry" in expired.error
    async with clean_db.acquire() as conn:
        row = await conn.fetchrow("SELECT status, error FROM flare_ingestion_log ORDER BY started_at DESC LIMIT 1")
    assert row["status"] == "failed" and "unreachable" in row["error"]
