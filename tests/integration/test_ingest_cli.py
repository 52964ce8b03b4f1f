"""An operator ingests files with `flare ingest`, sees a summary, and lists the stored flares with `flare flares`."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time

from tests.conftest import DATA_DIR, PROJECT_ROOT, service_env
from tests.support.topic_reader import read_all

SC24 = DATA_DIR / "flare_lists" / "swpc_flarelist_sc24_2010_2015.csv.gz"
GOES18_GAPS = DATA_DIR / "goes16_1m" / "goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv.gz"
NETCDF = DATA_DIR / "format_samples" / "noaa_new_avg_1m_sample_g15_20170701_first30min.nc"


def flare(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flare_cli.main", *args], cwd=PROJECT_ROOT, env=service_env(settings),
        capture_output=True, text=True, timeout=300,
    )


def test_flare_ingest_prints_a_summary_and_flare_flares_lists_what_was_stored(settings, clean_db, tmp_path):
    unknown = tmp_path / "notes.txt"
    unknown.write_text("nothing NOAA would write\n")
    ingested = flare(settings, "ingest", str(SC24), str(GOES18_GAPS), str(unknown))
    assert ingested.returncode == 1, ingested.stderr  # one file failed; the others went through
    lines = ingested.stdout.splitlines()
    assert lines[0].split()[:4] == ["source", "format", "status", "read"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows[SC24.name][1:5] == ["swpc_flarelist_sc24_csv", "ok", "7970", "7970"]
    assert rows[GOES18_GAPS.name][1:4] == ["swpc_xray_1m_csv", "ok", "11500"]
    assert rows[unknown.name][2] == "failed"
    assert any("not a format the ingestor reads" in line for line in lines)

    listed = flare(settings, "flares", "--source", "catalog", "--from", "2015-07-01", "--to", "2015-07-31",
                   "--min-class", "M", "--csv")
    assert listed.returncode == 0, listed.stderr
    table = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert len(table) == 3  # SOURCES.md: July 2015 had 3 M-class flares
    assert {row["class"][0] for row in table} == {"M"} and {row["source"] for row in table} == {"catalog:swpc_sc24"}
    assert all(row["start"] <= row["peak"] <= row["end"] for row in table)

    detected = flare(settings, "flares", "--source", "detected", "--min-class", "C1")
    assert detected.returncode == 0, detected.stderr
    assert "GOES-18" in detected.stdout and "catalog" not in detected.stdout
    assert detected.stdout.rstrip().endswith("flare events")


def test_a_replay_at_a_multiple_of_real_time_takes_event_time_over_speed(settings, clean_db):
    started = time.monotonic()
    replay = flare(settings, "ingest", str(NETCDF), "--speed", "600")  # 29 event minutes at 600x: 2.9 s
    elapsed = time.monotonic() - started
    assert replay.returncode == 0, replay.stderr
    assert elapsed >= 29 * 60 / 600
    assert "noaa_new_avg_netcdf" in replay.stdout and " ok " in replay.stdout
    assert flare(settings, "ingest", "--speed", "fast", str(NETCDF)).returncode == 2


async def test_a_backfill_stores_the_archive_for_training_and_streams_nothing(settings, clean_db):
    backfill = flare(settings, "ingest", "--backfill", str(GOES18_GAPS))
    assert backfill.returncode == 0, backfill.stderr
    row = next(line.split() for line in backfill.stdout.splitlines() if line.startswith(GOES18_GAPS.name))
    assert row[2:5] == ["ok", "11500", "0"]  # read 11,500, published none
    async with clean_db.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM flux_observations WHERE xrsb_flux IS NOT NULL")
        detected = await conn.fetchval("SELECT count(*) FROM flare_events WHERE source = 'detected'")
    assert stored > 10_000 and detected > 0
    assert await read_all(settings, "flux", idle_ms=1000) == []
    assert await read_all(settings, "flares", idle_ms=1000) == []

    replay = flare(settings, "ingest", str(GOES18_GAPS))  # the same file replayed is streamed in full
    assert replay.returncode == 0, replay.stderr
    assert len(await read_all(settings, "flux")) == stored
