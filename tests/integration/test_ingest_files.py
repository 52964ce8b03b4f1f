"""Every file of the bundled sample (data/sample) goes through the real broker into the real database, in the
numbers SOURCES.md states for its whole files, and ingesting a file again changes nothing."""

from __future__ import annotations

import asyncio
import csv
import gzip
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.ingestor.pipeline import Ingestor
from services.ingestor.readers import read_path, supported_files
from shared.kafka import Publisher, decode, ensure_topics
from shared.topics import topic_registry
from tests.conftest import DATA_DIR

GOES18_GAPS = DATA_DIR / "goes16_1m" / "goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv.gz"
HOURLY = DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz"


async def topic_size(bootstrap: str, topic: str) -> int:
    """How many records a topic holds, cheap even for hundreds of thousands: the offset after its last
    record. The embedded Tansu broker reports the start of the last record batch as the end offset, so the
    records from there on are read to find the true end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        reported = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        size = 0
        for partition in partitions:
            end = reported[partition]
            consumer.seek(partition, max(end - 1, 0))
            while records := (await consumer.getmany(partition, timeout_ms=1000)).get(partition):
                end = max(end, records[-1].offset + 1)
            size += end
        return size
    finally:
        await consumer.stop()


async def topic_messages(settings, role: str, timeout: float = 60.0) -> list:
    """Every message on one of the test's topics, decoded with the registry's schema."""
    spec = topic_registry(settings)[role]
    expected = await topic_size(settings.kafka_bootstrap_servers, spec.name)
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return [decode(spec, r.value, r.headers) for r in records]


@pytest.fixture
async def ingestor(settings, clean_db):
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        yield Ingestor(settings, clean_db, publisher)


async def test_every_file_of_the_data_set_ingests_into_the_database_and_onto_the_topics(ingestor, settings, clean_db):
    files = list(supported_files([DATA_DIR]))
    runs = [await ingestor.ingest_file(path) for path in files]
    expected = [read_path(path) for path in files]  # what the readers make of each file, for the counts

    assert [(Path(run.source).name, run.status) for run in runs] == [(path.name, "ok") for path in files]
    keys = {(r.satellite, r.cadence_seconds, r.time_tag) for result in expected for r in result.flux}
    usable = sum(1 for result in expected for r in result.flux if r.usable)
    bootstrap = settings.kafka_bootstrap_servers
    assert await topic_size(bootstrap, settings.topics.flux) == usable
    assert await topic_size(bootstrap, settings.topics.flares) == sum(run.flares_published for run in runs)
    assert await topic_size(bootstrap, settings.topics.dead_letters) == sum(len(result.rejects) for result in expected)

    async with clean_db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM flux_observations") == len(keys)
        july = await conn.fetchrow(
            "SELECT count(*) AS rows, count(*) FILTER (WHERE xrsb_flux IS NULL) AS missing FROM flux_observations"
            " WHERE satellite = 'GOES-15' AND cadence_seconds = 60"
            " AND time_tag >= '2015-07-01' AND time_tag < '2015-08-01'"
        )
        hourly = await conn.fetchrow(
            "SELECT count(*) AS rows, count(*) FILTER (WHERE xrsb_flux IS NULL) AS missing FROM flux_observations"
            " WHERE cadence_seconds = 3600"
        )
        overlap = {row["satellite"]: (row["rows"], row["missing"]) for row in await conn.fetch(
            "SELECT satellite, count(*) AS rows, count(*) FILTER (WHERE xrsb_flux IS NULL) AS missing"
            " FROM flux_observations WHERE cadence_seconds = 60"
            " AND time_tag >= '2010-10-27' AND time_tag < '2010-11-01' GROUP BY satellite")}
        catalogue = dict(await conn.fetch("SELECT source, count(*) FROM flare_events GROUP BY source"))
        log = await conn.fetch("SELECT * FROM flare_ingestion_log ORDER BY started_at")
    with gzip.open(HOURLY, "rt") as handle:
        non_positive_hours = sum(1 for row in csv.DictReader(handle) if float(row["xrsb_long_0.1-0.8nm"]) <= 0)
    assert (july["rows"], july["missing"]) == (44_640, 355)  # SOURCES.md: 44,640 rows, 355 fill minutes
    assert (hourly["rows"], hourly["missing"]) == (46_580, non_positive_hours)
    assert catalogue["catalog:swpc_sc24"] == 7_970
    assert catalogue["catalog:swpc_1996_2015"] == sum(
        len(r.flares) for r in expected if r.format == "swpc_flarelist_1996_csv")
    ngdc = sum(len(r.flares) for r in expected if r.format == "ngdc_xrs_report")
    assert catalogue["catalog:ngdc"] == ngdc == 11_664  # the 2010-2015 reports
    assert overlap == {"GOES-14": (7_200, 212), "GOES-15": (7_200, 11)}  # the sample's goes_overlap/GAPS.md
    assert catalogue["detected"] > 0

    assert [row["source"] for row in log] == [str(path) for path in files]
    for row, result in zip(log, expected):
        assert (row["status"], row["records_read"], row["records_rejected"]) == (
            "ok", result.records_read, len(result.rejects))
        assert row["records_missing"] == sum(1 for r in result.flux if not r.usable)
        assert row["finished_at"] is not None and row["duration_seconds"] > 0
        assert row["first_event_time"] <= row["last_event_time"]


async def test_ingesting_a_file_again_changes_nothing_and_republishes_the_same_ids(ingestor, settings, clean_db):
    first = await ingestor.ingest_file(GOES18_GAPS)
    query = "SELECT * FROM flux_observations ORDER BY satellite, cadence_seconds, time_tag"
    async with clean_db.acquire() as conn:
        before = [dict(row) for row in await conn.fetch(query)]
        flares_before = [dict(row) for row in await conn.fetch("SELECT * FROM flare_events ORDER BY event_id")]
    second = await ingestor.ingest_file(GOES18_GAPS)
    async with clean_db.acquire() as conn:
        after = [dict(row) for row in await conn.fetch(query)]
        flares_after = [dict(row) for row in await conn.fetch("SELECT * FROM flare_events ORDER BY event_id")]

    assert after == before  # ingested_at included: not even rewritten
    assert flares_after == flares_before
    assert (first.records_corrected, second.records_corrected) == (0, 0)
    assert second.records_published == first.records_published == 11_072 + first.flares_published
    assert {row["revision"] for row in after} == {0}
    messages = await topic_messages(settings, "flux")
    half = len(messages) // 2
    assert [m.message_id for m in messages[:half]] == [m.message_id for m in messages[half:]]
    times = [m.event_time for m in messages[:half]]
    assert times == sorted(times), "published in event-time order"
    assert not any(m.xrsb_flux is None for m in messages), "missing minutes are stored, never published"
    assert {m.correlation_id for m in messages} == {first.run_id, second.run_id}, "each reading names its ingestion run"
    flares = await topic_messages(settings, "flares")
    assert flares and {f.correlation_id for f in flares} == {first.run_id, second.run_id}
