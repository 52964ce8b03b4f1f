"""Benchmark (not a timed test): ingest + publish of the July 2015 1-minute month and the 2010-2015 hourly
file (bundled), and of two whole new_avg netCDF months (the reference data set's September 2010 GOES-14 and
GOES-15 originals, skipped without it), against a plain aiokafka producer sending the same records to the same
broker in the same run.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_ingest.py`). The ingest figure is
the whole run: read and decompress, validate, compare with the database, detect flares, publish, store.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from services.ingestor.pipeline import Ingestor, flux_message
from services.ingestor.readers import read_path
from services.ingestor.store import plan_flux
from shared.kafka import Publisher, encode, ensure_topics
from shared.topics import topic_registry
from tests.bench.baselines import scratch_topic
from tests.conftest import DATA_DIR

FILES = {
    "July 2015 1-min": DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz",
    "2010-2015 hourly": DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz",
}
# the sample's netCDF holds 30 minutes; these are whole months, in the reference data set only
REFERENCE_FILES = {
    "Sep 2010 GOES-14 netCDF": "goes_overlap/g14_xrs_1m_20100901_20100930.nc",
    "Sep 2010 GOES-15 netCDF": "goes_overlap/g15_xrs_1m_20100901_20100930.nc",
}


async def plain_producer_seconds(bootstrap: str, records: list[tuple[bytes, bytes, list]]) -> float:
    """A bare aiokafka producer (one send per record, then wait for all), as the reference rate."""
    topic = await scratch_topic(bootstrap, "bench.plain")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_batch_size=512 * 1024)
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key, headers=headers) for value, key, headers in records]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


@pytest.mark.slow
async def test_ingest_throughput_against_a_plain_producer(settings, clean_db, bench_figures):
    await measure_ingest(settings, clean_db, bench_figures, FILES)


@pytest.mark.slow
async def test_ingest_throughput_of_whole_netcdf_months(reference_file, settings, clean_db, bench_figures):
    files = {name: reference_file(relative) for name, relative in REFERENCE_FILES.items()}
    await measure_ingest(settings, clean_db, bench_figures, files)


async def measure_ingest(settings, clean_db, bench_figures, files: dict[str, Path]) -> None:
    """Ingest each file into emptied tables, then again (nothing new), beside the plain producer's rate."""
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        ingestor = Ingestor(settings, clean_db, publisher)
        for name, path in files.items():
            async with clean_db.acquire() as conn:
                await conn.execute("TRUNCATE flux_observations, flare_events")
            started = time.perf_counter()
            first = await ingestor.ingest_file(path)
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            again = await ingestor.ingest_file(path)
            again_seconds = time.perf_counter() - started
            assert first.status == again.status == "ok"
            assert again.records_corrected == 0 and again.records_published == first.records_published

            # The same flux records, encoded beforehand: the plain producer only sends.
            flux = [r for r in read_path(path).flux if r.usable]
            records = [encode(flux_message(p)) for p in plan_flux(flux, {})]
            plain_seconds = await plain_producer_seconds(settings.kafka_bootstrap_servers, records)
            plain = ("plain aiokafka producer, same records", len(records) / plain_seconds)
            note = (f"{first.records_read:,} records read, {len(records):,} usable sent by the plain producer "
                    f"({plain_seconds:.1f} s)")
            bench_figures("ingestor", f"{name}: first ingest", first.records_read / first_seconds, "records/s",
                          baseline=plain, note=f"read, validate, store, detect flares, publish; {note}")
            bench_figures("ingestor", f"{name}: re-ingest (nothing new)", first.records_read / again_seconds,
                          "records/s", baseline=plain, note="compared with the stored records, republished")
