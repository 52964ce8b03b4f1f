"""Damaged input never stops ingestion: each bad record is rejected with its reason, counted in the
ingestion log and sent to the dead-letter topic, and the good records and the next files still go through."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA_DIR
from tests.integration.test_ingest_files import ingestor as ingestor  # fixture, re-exported
from tests.integration.test_ingest_files import topic_messages

JULY_2015 = DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz"
NETCDF = DATA_DIR / "format_samples" / "noaa_new_avg_1m_sample_g15_20170701_first30min.nc"

DAMAGED_CSV = """time_tag,A_QUAL_FLAG,A_NUM_PTS,A_AVG,B_QUAL_FLAG,B_NUM_PTS,B_AVG
2014-07-01 00:00:00,0,30,1.0e-09,0,30,3.6e-07
2014-07-01 00:01:00,0,30,1.0e-09,0,30,NaN
2014-07-01 00:02:00,0,30,1.0e-09,0,30,-3.6e-07
2014-07-01 00:03:00,0,30,1.0e-09,0,30,7.5e+02
2014-07-01 00:04:00,0,30,1.0e-09,0,30
2014-07-01 00:05:00,0,30,1.0e-09,0,30,3.7e-07
2014-07-01 00:05:00,0,30,1.0e-09,0,30,3.7e-07
2014-07-01 00:03:30,0,30,1.0e-09,0,30,3.7e-07
2014-07-01 00:06:00,0,30,1.0e-09,99999,30,-99999
"""


async def test_bad_records_are_dead_lettered_with_reasons_and_the_run_goes_on(
    ingestor, settings, clean_db, tmp_path: Path,
):
    damaged = tmp_path / "g15_xrs_1m_damaged.csv"
    damaged.write_text(DAMAGED_CSV)
    truncated = tmp_path / "g15_xrs_1m_truncated.csv.gz"
    raw = JULY_2015.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 3])
    unknown = tmp_path / "notes.csv"
    unknown.write_text("station,temperature\nA,21.5\n")

    runs = [await ingestor.ingest_file(path) for path in (damaged, truncated, unknown, NETCDF)]

    damaged_run, truncated_run, unknown_run, good_run = runs
    assert (damaged_run.status, damaged_run.records_read, damaged_run.records_rejected) == ("ok", 9, 6)
    assert (damaged_run.records_published, damaged_run.records_missing) == (2, 1)
    assert truncated_run.status == "partial" and "truncated" in truncated_run.error
    assert truncated_run.records_published > 10_000 and truncated_run.records_rejected >= 1
    assert unknown_run.status == "failed" and "not a format" in unknown_run.error and unknown_run.records_rejected == 1
    assert good_run.status == "ok" and good_run.records_published == 30

    dead = await topic_messages(settings, "dead_letters")
    assert len(dead) == sum(run.records_rejected for run in runs)
    from_damaged = [d for d in dead if d.source_topic == str(damaged)]
    reasons = {d.offset: d.reason for d in from_damaged}
    assert "NaN" in reasons[3] and "negative" in reasons[4] and "physical limit" in reasons[5]
    assert "expected 7 fields" in reasons[6] and "duplicate" in reasons[8] and "goes backwards" in reasons[9]
    assert all(d.service == "ingestor" and d.raw_value for d in from_damaged)
    assert any(d.source_topic == str(truncated) and "truncated" in d.reason for d in dead)

    async with clean_db.acquire() as conn:
        log = {row["source"]: row for row in await conn.fetch("SELECT * FROM flare_ingestion_log")}
        stored = await conn.fetch(
            "SELECT time_tag, xrsb_flux, quality FROM flux_observations WHERE source LIKE '%damaged%'"
            " ORDER BY time_tag")
    assert {source: row["status"] for source, row in log.items()} == {
        str(damaged): "ok", str(truncated): "partial", str(unknown): "failed", str(NETCDF): "ok"}
    assert (log[str(damaged)]["records_rejected"], log[str(damaged)]["records_missing"]) == (6, 1)
    assert "not a format" in log[str(unknown)]["error"]
    assert [(row["time_tag"].minute, row["quality"]) for row in stored] == [
        (0, "good"), (5, "good"), (6, "flagged:99999")]
    assert stored[-1]["xrsb_flux"] is None
