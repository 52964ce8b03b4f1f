"""The live ingestor against SWPC's feed served by a local HTTP server: a first poll ingests, a poll after
SWPC revised some minutes publishes the corrections only, and with the server gone the cache stands in and
the ingestion log says so."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.ingestor.live import SwpcFeedClient
from services.ingestor.pipeline import run_live
from shared.settings import IngestionSettings
from tests.conftest import DATA_DIR
from tests.integration.test_ingest_files import ingestor as ingestor  # fixture, re-exported
from tests.integration.test_ingest_files import topic_messages

FEED = "xrays-1-day.json"


class SwpcLikeHandler(SimpleHTTPRequestHandler):
    """Serves the feed files of a folder (with Last-Modified / If-Modified-Since), failing first if asked."""

    failures_left = 0
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_error(503, "Service Unavailable")
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


class LocalSwpc:
    def __init__(self, folder: Path):
        self.folder = folder
        self.handler = type("Handler", (SwpcLikeHandler,), {})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(self.handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def revise(self, minutes: int, factor: float) -> list[str]:
        """Change the long-band flux of the last `minutes` minutes, as SWPC does to recent data."""
        path = self.folder / FEED
        records = json.loads(path.read_text())
        long_band = [r for r in records if r["energy"] == "0.1-0.8nm"][-minutes:]
        for record in long_band:
            record["flux"] *= factor
        path.write_text(json.dumps(records))
        later = time.time() + 10  # Last-Modified has whole seconds: make the change visible to If-Modified-Since
        os.utime(path, (later, later))
        return [r["time_tag"] for r in long_band]


@pytest.fixture
def swpc(tmp_path: Path):
    folder = tmp_path / "swpc"
    folder.mkdir()
    (folder / FEED).write_bytes(gzip.decompress((DATA_DIR / "swpc_json" / f"{FEED}.gz").read_bytes()))
    server = LocalSwpc(folder)
    yield server
    server.stop()


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
