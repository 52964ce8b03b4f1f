"""Live ingestion of both of SWPC's satellites: the primary and the secondary feed are fetched from their own
folders, cached apart, and read into readings of two satellites (as `flare ingest` stores them, each under its
own name)."""

from __future__ import annotations

import gzip
import json

import httpx

from services.ingestor.live import SwpcFeedClient
from services.ingestor.readers import read_bytes
from shared.settings import IngestionSettings, load_settings
from tests.conftest import DATA_DIR

PRIMARY = gzip.decompress((DATA_DIR / "swpc_json" / "xrays-1-day.json.gz").read_bytes())  # GOES-18


def as_satellite(body: bytes, number: int) -> bytes:
    return json.dumps([{**record, "satellite": number} for record in json.loads(body)]).encode()


async def test_the_primary_and_secondary_feeds_are_fetched_cached_apart_and_read_as_two_satellites(tmp_path):
    # SWPC's folders as the settings name them; here the primary is GOES-19 and the secondary GOES-18
    served = {"/json/goes/primary/xrays-6-hour.json": as_satellite(PRIMARY, 19),
              "/json/goes/secondary/xrays-6-hour.json": PRIMARY}
    asked = []

    def swpc(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, content=served[request.url.path]) if request.url.path in served \
            else httpx.Response(404)

    settings = IngestionSettings()  # the defaults: both feeds
    assert load_settings().ingestion.swpc_feeds == settings.swpc_feeds  # config.yaml polls both too
    async with SwpcFeedClient(settings, tmp_path / "cache", transport=httpx.MockTransport(swpc)) as client:
        snapshots = [await client.fetch(feed) for feed in settings.swpc_feeds]

    assert asked == list(served)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir() if not path.name.endswith(".meta.json")) == [
        "primary__xrays-6-hour.json", "secondary__xrays-6-hour.json"]
    readings = [r for snapshot in snapshots for r in read_bytes(snapshot.body, snapshot.feed).flux]
    assert {r.satellite for r in readings} == {"GOES-19", "GOES-18"}
    assert {r.scaling_era for r in readings} == {"true_flux"}
    per_satellite = {s: sum(r.satellite == s for r in readings) for s in ("GOES-18", "GOES-19")}
    assert per_satellite["GOES-18"] == per_satellite["GOES-19"] > 1000
