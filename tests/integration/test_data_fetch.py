"""A user downloads NOAA's archives for their own period with `flare data fetch` and ingests them by dataset name.

NOAA is replaced by a local HTTP server (tests/support/noaa_server.py) serving real recorded files under NOAA's
directory names: the July 2015 GOES-15 new_avg month, the native new_avg CSV sample with its metadata header
(the first rows of September 2017), the new_avg netCDF sample (the first 30 minutes of July 2017), NGDC's 2015
report; and, since the data set holds no GOES-R L2 file, a GOES-16 day in the L2 avg1m layout built from real
GOES-16 readings (tests/support/goes_r_files.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from services.ingestor.archive import fetch, held_files, read_index
from services.ingestor.readers import read_bytes, read_path
from shared.settings import ArchiveSettings, load_settings
from tests.conftest import PROJECT_ROOT, service_env
from tests.support.goes_r_files import goes_r_file_name, write_goes_r_avg1m
from tests.support.noaa_server import NoaaServer, place, recorded, serve

JULY_2015 = "avg/2015/07/goes15/csv/g15_xrs_1m_20150701_20150731.csv"
SEPTEMBER_2017 = "avg/2017/09/goes15/csv/g15_xrs_1m_20170901_20170930.csv"
JULY_2017_NC = "avg/2017/07/goes15/netcdf/g15_xrs_1m_20170701_20170731.nc"
REPORT_2015 = "reports/goes-xrs-report_2015.txt"
GOES_R_MARCH = "goes/goes16/l2/data/xrsf-l2-avg1m_science/2023/03/"
GOES_R_DAY = GOES_R_MARCH + goes_r_file_name(date(2023, 3, 1))


@pytest.fixture
def noaa(tmp_path: Path):
    root = tmp_path / "noaa"
    place(root, JULY_2015, recorded("goes15_1m/g15_xrs_1m_20150701_20150731.csv"))
    place(root, SEPTEMBER_2017, recorded("format_samples/noaa_new_avg_1m_header_sample_g15_20170901.csv"))
    place(root, JULY_2017_NC, recorded("format_samples/noaa_new_avg_1m_sample_g15_20170701_first30min.nc"))
    place(root, REPORT_2015, recorded("ngdc_reports/goes-xrs-report_2015.txt"))
    write_goes_r_avg1m(root / GOES_R_DAY, date(2023, 3, 1))
    with serve(root) as server:
        yield server


def archive_for(server: NoaaServer, **overrides) -> ArchiveSettings:
    urls = {"ncei_avg_base_url": server.base_url + "avg/", "goes_r_base_url": server.base_url + "goes/",
            "ngdc_reports_base_url": server.base_url + "reports/"}
    return ArchiveSettings(**{**urls, "retry_backoff_seconds": 0, **overrides})


class Bars:
    """Stands in for the progress bars: records what each was told."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def __call__(self, name: str, total: int | None, already: int):
        record = {"name": name, "total": total, "initial": already, "bytes": 0}
        self.seen.append(record)

        class Bar:
            def update(self, count: int) -> None:
                record["bytes"] += count

            def close(self) -> None:
                record["closed"] = True

        return Bar()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def flare(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flare_cli.main", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


async def test_a_user_fetches_their_period_with_a_progress_bar_again_for_nothing_and_ingests_it_by_name(
        noaa, settings, clean_db, tmp_path):
    env = {**service_env(settings), "FLARE_DATA_HOME": str(tmp_path / "home"), "ARCHIVE__RETRY_BACKOFF_SECONDS": "0",
           "ARCHIVE__NCEI_AVG_BASE_URL": noaa.base_url + "avg/",
           "ARCHIVE__NGDC_REPORTS_BASE_URL": noaa.base_url + "reports/"}

    first = flare(env, "data", "fetch", "goes-avg-1m", "--from", "2015-06-15", "--to", "2015-07-31")
    assert first.returncode == 0, first.stderr
    # June 2015 is not on the server: reported, skipped; July fetched with a progress bar on stderr
    assert "missing   goes-avg-1m/2015/06/goes15/csv/g15_xrs_1m_20150601_20150630.csv: " in first.stdout
    assert "404" in first.stdout
    assert "fetched   goes-avg-1m/2015/07/goes15/csv/g15_xrs_1m_20150701_20150731.csv" in first.stdout
    assert "1 fetched" in first.stdout and "1 missing at NOAA" in first.stdout and "0 failed" in first.stdout
    bar = next(line for line in first.stderr.replace("\r", "\n").splitlines() if "100%" in line)
    assert bar.startswith("g15_xrs_1m_20150701_20150731.csv: 100%") and "2.41M/2.41M" in bar
    assert noaa.gets(JULY_2015) == [None]

    again = flare(env, "data", "fetch", "goes-avg-1m", "--from", "2015-07-01", "--to", "2015-07-31")
    assert again.returncode == 0, again.stderr
    assert "0 fetched" in again.stdout and "1 already held" in again.stdout
    assert noaa.gets(JULY_2015) == [None]  # nothing downloaded the second time

    reports = flare(env, "data", "fetch", "ngdc-xrs-reports", "--from", "2015-07-01", "--to", "2015-07-31")
    assert reports.returncode == 0, reports.stderr

    listed = flare(env, "data", "list", "--files")
    assert listed.returncode == 0, listed.stderr
    july = recorded("goes15_1m/g15_xrs_1m_20150701_20150731.csv")
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith("goes-avg-1m "))
    assert row[:5] == ["goes-avg-1m", "1", "2015-07-01", "to", "2015-07-31"]
    assert f"sha256 {sha256(july)}" in listed.stdout and noaa.base_url + JULY_2015 in listed.stdout
    index = json.loads((tmp_path / "home" / "index.json").read_text())
    assert {entry["file"] for entry in index["files"]} == {"g15_xrs_1m_20150701_20150731.csv",
                                                           "goes-xrs-report_2015.txt"}
    assert all({"dataset", "file", "first_day", "last_day", "bytes", "sha256", "url", "fetched_at"} <= set(entry)
               for entry in index["files"])

    ingested = flare(env, "ingest", "--backfill", "goes-avg-1m", "ngdc-xrs-reports", "--from", "2015-07-01",
                     "--to", "2015-07-31")
    assert ingested.returncode == 0, ingested.stderr
    rows = {line.split()[0]: line.split() for line in ingested.stdout.splitlines()[1:3]}
    assert rows["g15_xrs_1m_20150701_20150731.csv"][1:4] == ["noaa_new_avg_csv", "ok", "44640"]
    assert rows["goes-xrs-report_2015.txt"][1:3] == ["ngdc_xrs_report", "ok"]
    async with clean_db.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM flux_observations WHERE satellite = 'GOES-15' AND time_tag >= '2015-07-01' "
            "AND time_tag < '2015-08-01'")
        flares = await conn.fetchval("SELECT count(*) FROM flare_events WHERE source = 'catalog:ngdc' "
                                     "AND peak_time >= '2015-07-01' AND peak_time < '2015-08-01'")
    assert stored == 44_640  # SOURCES.md: every minute of July 2015, missing ones with their reason
    july_report = read_bytes(recorded("ngdc_reports/goes-xrs-report_2015.txt"), "goes-xrs-report_2015.txt")
    in_july = july_report.within(datetime(2015, 7, 1, tzinfo=timezone.utc), datetime(2015, 8, 1, tzinfo=timezone.utc))
    assert flares == len(in_july.flares) > 50  # the report's July events (86 lines name G15), each stored once
    unknown = flare(env, "ingest", "goes-r-xrs-1m", "--from", "2023-03-01", "--to", "2023-03-01")
    assert unknown.returncode == 2 and "flare data fetch goes-r-xrs-1m" in unknown.stderr


def test_an_interrupted_download_resumes_where_it_stopped_and_a_damaged_file_is_fetched_again(noaa, tmp_path):
    home = tmp_path / "home"
    noaa.fail_next(JULY_2015, "truncate")
    once = load_settings(data_home=home, archive=archive_for(noaa, http_retries=0))

    cut = fetch(once, "goes-avg-1m", date(2015, 7, 1), date(2015, 7, 31), progress=Bars())
    july = recorded("goes15_1m/g15_xrs_1m_20150701_20150731.csv")
    part = home / "goes-avg-1m" / JULY_2015.removeprefix("avg/")
    part = part.with_name(part.name + ".part")
    assert not cut.ok and cut.failed[0][0].endswith("g15_xrs_1m_20150701_20150731.csv")
    assert part.stat().st_size == len(july) // 2 and read_index(home) == {}

    bars = Bars()
    resumed = fetch(once, "goes-avg-1m", date(2015, 7, 1), date(2015, 7, 31), progress=bars)
    assert resumed.ok and len(resumed.fetched) == 1
    assert noaa.gets(JULY_2015) == [None, f"bytes={len(july) // 2}-"]
    assert bars.seen[0]["initial"] == len(july) // 2 and bars.seen[0]["bytes"] == len(july) - len(july) // 2
    held = home / resumed.fetched[0].path
    assert held.read_bytes() == july and resumed.fetched[0].sha256 == sha256(july) and not part.exists()

    held.write_bytes(july[:-10] + b"0123456789")  # damaged on disk: same size, another sha256
    repaired = fetch(once, "goes-avg-1m", date(2015, 7, 1), date(2015, 7, 31), progress=Bars())
    assert len(repaired.fetched) == 1 and held.read_bytes() == july and len(noaa.gets(JULY_2015)) == 3


def test_a_fetch_killed_mid_download_is_resumed_by_the_next_run_from_where_it_stopped(noaa, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "FLARE_DATA_HOME": str(home), "ARCHIVE__NCEI_AVG_BASE_URL": noaa.base_url + "avg/"}
    args = [sys.executable, "-m", "flare_cli.main", "data", "fetch", "goes-avg-1m", "--from", "2015-07-01"]
    part = home / "goes-avg-1m" / "2015" / "07" / "goes15" / "csv" / "g15_xrs_1m_20150701_20150731.csv.part"
    july = recorded("goes15_1m/g15_xrs_1m_20150701_20150731.csv")
    noaa.fail_next(JULY_2015, "slow")  # ~2 s for the whole month
    running = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size >= 1 << 18) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        running.kill()
        running.wait(timeout=30)
    kept = part.stat().st_size
    assert 0 < kept < len(july) and read_index(home) == {}

    resumed = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert resumed.returncode == 0, resumed.stderr
    assert "1 fetched" in resumed.stdout
    assert noaa.gets(JULY_2015) == [None, f"bytes={kept}-"]
    held = home / "goes-avg-1m" / JULY_2015.removeprefix("avg/")
    assert held.read_bytes() == july and not part.exists()
    assert [entry.sha256 for entry in read_index(home).values()] == [sha256(july)]


def test_a_server_failing_twice_is_asked_again_with_backoff_and_a_cut_is_resumed_in_the_same_run(noaa, tmp_path):
    noaa.fail_next(REPORT_2015, "fail", "fail")
    noaa.fail_next(SEPTEMBER_2017, "truncate")
    settings = load_settings(data_home=tmp_path / "home",
                             archive=archive_for(noaa, http_retries=3, retry_backoff_seconds=0.1))
    started = time.monotonic()
    reports = fetch(settings, "ngdc-xrs-reports", date(2015, 1, 1), date(2015, 12, 31), progress=Bars())
    assert time.monotonic() - started >= 0.1 + 0.2  # exponential backoff: 0.1 s, then 0.2 s
    assert reports.ok and [h.file for h in reports.fetched] == ["goes-xrs-report_2015.txt"]
    assert noaa.gets(REPORT_2015) == [None, None, None]
    september = fetch(settings, "goes-avg-1m", date(2017, 9, 1), date(2017, 9, 1), progress=Bars())
    assert september.ok and len(noaa.gets(SEPTEMBER_2017)) == 2 and noaa.gets(SEPTEMBER_2017)[1] is not None

    noaa.fail_next(JULY_2015, "fail", "fail", "fail")
    gave_up = fetch(load_settings(data_home=tmp_path / "other", archive=archive_for(noaa, http_retries=1)),
                    "goes-avg-1m", date(2015, 7, 1), date(2015, 7, 31), progress=Bars())
    assert not gave_up.ok and "HTTP 500" in gave_up.failed[0][1] and len(noaa.gets(JULY_2015)) == 2


def test_a_download_that_does_not_match_its_published_checksum_is_refused_and_the_rest_fetched(noaa, tmp_path):
    july = recorded("goes15_1m/g15_xrs_1m_20150701_20150731.csv")
    place(noaa.root, JULY_2015 + ".sha256", f"{sha256(july)}  g15_xrs_1m_20150701_20150731.csv\n".encode())
    wrong = sha256(b"another file")
    place(noaa.root, SEPTEMBER_2017 + ".sha256", f"{wrong}  g15_xrs_1m_20170901_20170930.csv\n".encode())
    home = tmp_path / "home"
    settings = load_settings(data_home=home, archive=archive_for(noaa, checksum_sidecar="sha256", http_retries=0))

    report = fetch(settings, "goes-avg-1m", date(2015, 7, 1), date(2015, 7, 1), progress=Bars())
    assert report.ok and report.fetched[0].checksum == "sha256 matches g15_xrs_1m_20150701_20150731.csv.sha256"
    refused = fetch(settings, "goes-avg-1m", date(2017, 9, 1), date(2017, 9, 30), progress=Bars())
    assert not refused.ok and refused.fetched == []
    assert "does not match the published" in refused.failed[0][1]
    month = home / "goes-avg-1m" / "2017" / "09" / "goes15" / "csv"
    assert not any(month.glob("*")) and set(read_index(home)) == {report.fetched[0].path}


def test_every_dataset_fetched_is_read_by_the_ingestor_and_a_missing_goes_r_day_or_month_is_reported(noaa, tmp_path):
    home = tmp_path / "home"
    settings = load_settings(data_home=home, archive=archive_for(noaa))
    goes_r = fetch(settings, "goes-r-xrs-1m", date(2023, 3, 1), date(2023, 4, 1), progress=Bars())
    assert goes_r.ok and [h.file for h in goes_r.fetched] == [goes_r_file_name(date(2023, 3, 1))]
    missing = dict(goes_r.missing)
    assert any(what.endswith("*_d20230302_*.nc") for what in missing) and len(goes_r.missing) == 31  # 30 days + April
    assert "no month directory" in missing["goes-r-xrs-1m/goes16/l2/data/xrsf-l2-avg1m_science/2023/04/"]
    again = fetch(settings, "goes-r-xrs-1m", date(2023, 3, 1), date(2023, 3, 1), progress=Bars())
    assert again.fetched == [] and len(again.already_held) == 1
    assert noaa.gets(GOES_R_MARCH) == [None]  # every asked day held: the listing is not read again

    netcdf = fetch(settings, "goes-avg-1m-netcdf", date(2017, 7, 1), date(2017, 7, 1), progress=Bars())
    header_csv = fetch(settings, "goes-avg-1m", date(2017, 9, 1), date(2017, 9, 1), progress=Bars())
    assert netcdf.ok and header_csv.ok
    formats = {}
    for name in ("goes-r-xrs-1m", "goes-avg-1m-netcdf", "goes-avg-1m"):
        for path in held_files(home, name):
            result = read_path(path)
            assert result.error is None and not result.rejects and result.flux, (path, result.error)
            formats[name] = (result.format, result.flux[0].satellite)
    assert formats == {"goes-r-xrs-1m": ("goes_r_xrs_avg1m_netcdf", "GOES-16"),
                       "goes-avg-1m-netcdf": ("noaa_new_avg_netcdf", "GOES-15"),
                       "goes-avg-1m": ("noaa_new_avg_csv", "GOES-15")}


async def test_flare_train_stores_a_fetched_dataset_before_training_on_what_is_stored(
        noaa, settings, clean_db, tmp_path):
    home = tmp_path / "home"
    fetched = fetch(load_settings(data_home=home, archive=archive_for(noaa)), "goes-avg-1m", date(2015, 7, 1),
                    date(2015, 7, 31), progress=Bars())
    assert fetched.ok and len(fetched.fetched) == 1
    env = {**service_env(settings), "FLARE_DATA_HOME": str(home)}

    trained = flare(env, "train", "goes-avg-1m", "--from", "2015-07-01", "--until", "2015-07-31", "--verdict-wait", "0")

    row = next(line.split() for line in trained.stdout.splitlines() if line.startswith("g15_xrs_1m_20150701"))
    assert row[1:4] == ["noaa_new_avg_csv", "ok", "44640"]
    async with clean_db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM flux_observations WHERE satellite = 'GOES-15'") == 44_640
    # a month is stored, but training refuses so short a history, saying why
    assert trained.returncode == 1 and "training needs at least 182 days" in trained.stderr
