"""Every NOAA file of the bundled sample (data/sample) is read by content into normalised records, in the numbers
the reference set's SOURCES.md states for the whole files the sample holds and in the sample's own counts for
what was cut; bad records are rejected with their reason and the rest of the file still comes through."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from services.ingestor.readers import (
    STALE_RUN_MINUTES, decompress, detect_format, read_bytes, read_path, supported_files,
)
from tests.conftest import DATA_DIR

JULY_2015 = DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz"
HOURLY = DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz"
SC24 = DATA_DIR / "flare_lists" / "swpc_flarelist_sc24_2010_2015.csv.gz"
NEW_AVG_HEADER = DATA_DIR / "format_samples" / "noaa_new_avg_1m_header_sample_g15_20170901.csv"
NETCDF = DATA_DIR / "format_samples" / "noaa_new_avg_1m_sample_g15_20170701_first30min.nc"
ONE_DAY_JSON = DATA_DIR / "swpc_json" / "xrays-1-day.json.gz"
MERGED_JSON = DATA_DIR / "swpc_json" / "xrays-1-minute_2026-07-29_2026-08-08.json.gz"
PARQUET = DATA_DIR / "goes16_1m" / "goes16_xrs_1m_2023-01.parquet"
FIFTY_ONE_DAYS = DATA_DIR / "goes16_1m" / "goes16_xrs_1m_51_days_2021_2025.csv.gz"
GOES18_GAPS = DATA_DIR / "goes16_1m" / "goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv.gz"
OVERLAP_G14 = DATA_DIR / "goes_overlap" / "g14_xrs_1m_20101027_20101031.csv.gz"
OVERLAP_G15 = DATA_DIR / "goes_overlap" / "g15_xrs_1m_20101027_20101031.csv.gz"
NGDC_YEARS = range(2010, 2016)  # the sample's NGDC reports: the solar-cycle-24 years of the reference set's 1990-2015

# What SOURCES.md says of each flux file (the overlap files: five days of 1,440 minutes): rows, satellite, cadence.
FLUX_FILES = {
    JULY_2015: (44_640, "GOES-15", 60),
    NEW_AVG_HEADER: (30, "GOES-15", 60),
    NETCDF: (30, "GOES-15", 60),
    ONE_DAY_JSON: (2_876 // 2, "GOES-18", 60),  # 2,876 records: one per band and minute
    MERGED_JSON: (29_006 // 2, "GOES-18", 60),
    PARQUET: (44_640, "GOES-16", 60),
    FIFTY_ONE_DAYS: (73_466, "GOES-16", 60),
    GOES18_GAPS: (11_500, "GOES-18", 60),
    OVERLAP_G14: (5 * 1_440, "GOES-14", 60),
    OVERLAP_G15: (5 * 1_440, "GOES-15", 60),
}


def csv_rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return list(csv.DictReader(handle))


def test_every_file_of_the_data_set_is_recognised_by_its_content_alone():
    files = list(supported_files([DATA_DIR]))
    formats = {path.relative_to(DATA_DIR).as_posix(): detect_format(decompress(path.read_bytes())[0]) for path in files}
    assert not any(name.endswith(("README.md", "GAPS.md", "MANIFEST.json")) or "LICENSE" in name for name in formats)
    assert formats["goes15_1m/g15_xrs_1m_20150701_20150731.csv.gz"] == "noaa_new_avg_csv"
    assert formats["format_samples/noaa_new_avg_1m_header_sample_g15_20170901.csv"] == "noaa_new_avg_csv"
    assert formats["format_samples/noaa_new_avg_1m_sample_g15_20170701_first30min.nc"] == "noaa_new_avg_netcdf"
    assert formats["goes15_hourly/goes15_xrs_hourly_2010-09_2015-12.csv.gz"] == "goes_hourly_csv"
    assert formats["goes16_1m/goes16_xrs_1m_2023-01.parquet"] == "goes_parquet"
    assert formats["goes16_1m/goes16_xrs_1m_51_days_2021_2025.csv.gz"] == "goes_xrs_1m_csv"
    assert formats["goes16_1m/goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv.gz"] == "swpc_xray_1m_csv"
    assert (formats["swpc_json/xrays-1-day.json.gz"]
            == formats["swpc_json/xrays-1-minute_2026-07-29_2026-08-08.json.gz"] == "swpc_json")
    assert formats["flare_lists/swpc_flarelist_sc24_2010_2015.csv.gz"] == "swpc_flarelist_sc24_csv"
    assert formats["flare_lists/swpc_flarelist_1996_2015.csv.gz"] == "swpc_flarelist_1996_csv"
    assert {formats[f"ngdc_reports/goes-xrs-report_{year}.txt.gz"] for year in NGDC_YEARS} == {"ngdc_xrs_report"}
    assert formats[OVERLAP_G14.relative_to(DATA_DIR).as_posix()] == "noaa_new_avg_csv"
    assert formats[OVERLAP_G15.relative_to(DATA_DIR).as_posix()] == "noaa_new_avg_csv"
    assert len(formats) == 19, "every data file of the sample is checked above"


@pytest.mark.parametrize("path", list(FLUX_FILES), ids=lambda p: p.name)
def test_each_flux_file_gives_one_reading_per_minute_as_sources_md_counts(path: Path):
    rows, satellite, cadence = FLUX_FILES[path]
    result = read_path(path)
    assert result.error is None and result.rejects == []
    assert len(result.flux) == rows
    assert {(r.satellite, r.cadence_seconds) for r in result.flux} == {(satellite, cadence)}
    era = "true_flux" if satellite in ("GOES-16", "GOES-18") else "swpc_scaled"
    assert {r.scaling_era for r in result.flux} == {era}
    times = [r.time_tag for r in result.flux]
    assert times == sorted(set(times)), "one reading per time tag, in order"
    assert all(r.xrsb_flux > 0 for r in result.flux if r.usable)


def test_the_july_2015_month_marks_its_355_fill_minutes_missing():
    result = read_path(JULY_2015)
    missing = [r for r in result.flux if not r.usable]
    assert len(missing) == 355  # SOURCES.md: fill = -99999 or flag != 0 (355 minutes)
    assert {r.quality for r in missing} == {"flagged:99999", "flagged:1048576"}
    assert all(r.xrsb_flux is None and r.xrsa_flux is None for r in missing)
    assert Counter(r.quality for r in result.flux)["good"] == 44_640 - 355


def test_hourly_means_keep_their_mid_hour_stamps_and_treat_non_positive_hours_as_missing():
    rows = csv_rows(HOURLY)
    result = read_path(HOURLY)
    non_positive = sum(1 for row in rows if float(row["xrsb_long_0.1-0.8nm"]) <= 0)
    assert len(result.flux) == len(rows) == 46_580  # SOURCES.md: ~46k
    assert sum(1 for r in result.flux if not r.usable) == non_positive > 0
    assert {r.cadence_seconds for r in result.flux} == {3600}
    assert result.flux[0].time_tag == datetime(2010, 9, 1, 0, 30, 30, tzinfo=timezone.utc)


def test_missing_markers_of_each_source_become_missing_readings_not_flux():
    blank_51_days = sum(1 for row in csv_rows(FIFTY_ONE_DAYS) if not row["xrsb_flux"])
    flagged_goes18 = sum(1 for row in csv_rows(GOES18_GAPS) if row["xray_is_missing"] == "1")
    zero_minutes = {
        record["time_tag"] for record in json.loads(gzip.decompress(MERGED_JSON.read_bytes()))
        if record["energy"] == "0.1-0.8nm" and record["flux"] <= 0
    }
    assert Counter(r.quality for r in read_path(FIFTY_ONE_DAYS).flux)["missing"] == blank_51_days == 8
    assert Counter(r.quality for r in read_path(GOES18_GAPS).flux)["missing"] == flagged_goes18 == 428
    assert Counter(r.quality for r in read_path(MERGED_JSON).flux)["fill"] == len(zero_minutes) == 166


def test_forward_filled_stretches_of_the_goes16_month_are_not_taken_for_measurements():
    frame = pq.read_table(PARQUET).to_pandas()
    result = read_path(PARQUET)
    stale = [i for i, r in enumerate(result.flux) if r.quality == "stale_repeat"]
    assert len(stale) >= STALE_RUN_MINUTES
    for i in stale:  # each one repeats the minute before it exactly, in the original file
        assert frame["long_band"].iloc[i] == frame["long_band"].iloc[i - 1]
        assert frame["short_band"].iloc[i] == frame["short_band"].iloc[i - 1]


def test_the_satellite_comes_from_the_content_when_it_says_so_and_else_from_the_name():
    header_sample = read_bytes(NEW_AVG_HEADER.read_bytes(), "upload.csv")
    netcdf = read_bytes(NETCDF.read_bytes(), "upload.nc")
    nameless = read_bytes(gzip.decompress(JULY_2015.read_bytes()), "upload.csv")
    named = read_bytes(gzip.decompress(JULY_2015.read_bytes()), "upload.csv", satellite="15")
    assert {r.satellite for r in header_sample.flux} == {r.satellite for r in netcdf.flux} == {"GOES-15"}
    assert nameless.flux == [] and "--satellite" in nameless.error
    assert len(named.flux) == 44_640 and named.flux[0].satellite == "GOES-15"


def test_flare_catalogues_are_read_with_their_source_and_counts():
    sc24 = read_path(SC24)
    assert sc24.rejects == [] and len(sc24.flares) == 7_970  # SOURCES.md: ~7.8k
    assert {f.source for f in sc24.flares} == {"catalog:swpc_sc24"}
    in_hourly_span = [f for f in sc24.flares if f.peak_time >= datetime(2010, 9, 1, tzinfo=timezone.utc)]
    letters = Counter(f.class_letter for f in in_hourly_span)
    # SOURCES.md: about 7,115 / 674 / 45 C / M / X in the hourly span
    assert abs(letters["C"] - 7_115) < 100 and abs(letters["M"] - 674) < 15 and letters["X"] == 45
    july = Counter(f.class_letter for f in sc24.flares if f.peak_time.strftime("%Y-%m") == "2015-07")
    assert (july["C"], july["M"]) == (43, 3)  # SOURCES.md: Flares: C 43 / M 3

    older = read_path(DATA_DIR / "flare_lists" / "swpc_flarelist_1996_2015.csv.gz")
    assert len(older.flares) + len(older.rejects) == older.records_read == 22_649
    assert len(older.rejects) < 50 and all(reject.reason for reject in older.rejects)

    ngdc_files = sorted((DATA_DIR / "ngdc_reports").glob("*.txt.gz"))
    ngdc = [read_path(path) for path in ngdc_files]
    assert [path.name for path in ngdc_files] == [f"goes-xrs-report_{year}.txt.gz" for year in NGDC_YEARS]
    for path, result in zip(ngdc_files, ngdc):  # every line with an X-ray class letter in column 60 is a record
        lines = gzip.decompress(path.read_bytes()).decode("latin-1").splitlines()
        classed = sum(1 for line in lines if line[:2].isdigit() and line[59:60] in ("A", "B", "C", "M", "X"))
        assert result.records_read == len(result.flares) + len(result.rejects) == classed, path.name
    # the 2010-2015 reports hold 11,671 classed lines; 6 repeat an event and one has no peak time
    assert sum(len(result.flares) for result in ngdc) == 11_664
    assert sum(len(result.rejects) for result in ngdc) == 7 and all(r.reason for res in ngdc for r in res.rejects)
    assert all(result.error is None for result in ngdc)
    assert {f.source for result in ngdc for f in result.flares} == {"catalog:ngdc"}


def test_every_catalogue_flare_has_a_class_consistent_with_its_peak_flux_and_ordered_times():
    for path in [SC24, DATA_DIR / "flare_lists" / "swpc_flarelist_1996_2015.csv.gz",
                 DATA_DIR / "ngdc_reports" / "goes-xrs-report_2015.txt.gz"]:
        for flare in read_path(path).flares:
            scale = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}[flare.class_letter]
            assert flare.peak_flux == pytest.approx(float(flare.goes_class[1:]) * scale)
            assert flare.start_time <= flare.peak_time
            assert flare.end_time is None or flare.peak_time <= flare.end_time


def test_ngdc_lines_read_fixed_width_with_times_past_midnight_and_optical_only_reports_rejected():
    lines = (
        "31777150101  0457 0517 0507 S07E50                         C 21    G15  1.9E-03 12253 150104.9\r\n"
        "31777940117  2347 2403 2357                                C 37    GOES              \r\n"
        "31777930701  1039 1045 1040 S12W03SF                               GOES          7530\r\n"
        "\x1a\r\n"
    )
    result = read_bytes(lines.encode(), "report.txt")
    first, second = result.flares
    assert (first.goes_class, first.peak_flux, first.satellite, first.noaa_region) == (
        "C2.1", pytest.approx(2.1e-6), "GOES-15", "12253")
    assert first.peak_time == datetime(2015, 1, 1, 5, 7, tzinfo=timezone.utc)
    assert second.end_time == datetime(1994, 1, 18, 0, 3, tzinfo=timezone.utc)
    assert [r.reason for r in result.rejects] == ["no X-ray class (an optical-only report)"]
    assert result.records_read == 3


def test_catalogue_rows_across_midnight_are_put_on_the_next_day_and_inconsistent_classes_rejected():
    header = ("event_starttime,event_peaktime,event_endtime,goes_class_ind,goes_class,goes_class_val,integrated_flux,"
              "noaa_ar\n")
    text = header + (
        "2010-08-17 23:05:00,2010-08-17 00:01:00,2010-08-17 00:22:00,C,C1.5,1.5e-06,1E-03,11099\n"
        "2011-01-01 10:00:00,2011-01-01 10:05:00,2011-01-01 10:20:00,C,C2.0,3e-06,1E-03,\n"
        "2011-01-01 12:00:00,2011-01-01 12:05:00,2011-01-01 12:20:00,M,C2.0,2e-06,1E-03,\n"
    )
    result = read_bytes(text.encode(), "list.csv")
    (flare,) = result.flares
    assert flare.peak_time == datetime(2010, 8, 18, 0, 1, tzinfo=timezone.utc)
    assert flare.end_time == datetime(2010, 8, 18, 0, 22, tzinfo=timezone.utc)
    assert [r.where for r in result.rejects] == ["line 3", "line 4"]
    assert "disagree" in result.rejects[0].reason and "disagree" in result.rejects[1].reason


NEW_AVG_HEADER_LINE = "time_tag,A_QUAL_FLAG,A_NUM_PTS,A_AVG,B_QUAL_FLAG,B_NUM_PTS,B_AVG"


def test_malformed_rows_are_rejected_with_their_reason_and_the_good_ones_kept():
    rows = [
        "2015-07-01 00:00:00,0,30,1.0e-09,0,30,3.6e-07",
        "2015-07-01 00:01:00,0,30,NaN,0,30,3.6e-07",          # NaN
        "2015-07-01 00:02:00,0,30,1.0e-09,0,30,-3.6e-07",     # negative
        "2015-07-01 00:03:00,0,30,1.0e-09,0,30,5.0",          # absurd
        "2015-07-01 00:04:00,0,30,1.0e-09,0,30",              # a field short
        "2015-07-01 00:05:00,0,30,1.0e-09,0,30,3.7e-07",
        "2015-07-01 00:05:00,0,30,1.0e-09,0,30,3.7e-07",      # duplicate
        "2015-07-01 00:02:30,0,30,1.0e-09,0,30,3.7e-07",      # out of order
        "yesterday,0,30,1.0e-09,0,30,3.7e-07",                # not a time
        "2015-07-01 00:06:00,0,30,1.0e-09,0,30,abc",          # not a number
        "2015-07-01 00:07:00,0,30,-99999,0,30,-99999",        # fill: missing, not rejected
    ]
    result = read_bytes(("\n".join([NEW_AVG_HEADER_LINE, *rows]) + "\n").encode(), "g15_bad.csv")
    reasons = {r.where: r.reason for r in result.rejects}
    assert [r.time_tag.minute for r in result.flux] == [0, 5, 7]
    assert not result.flux[-1].usable and result.flux[-1].quality == "fill"
    assert result.records_read == len(rows)
    assert "NaN" in reasons["line 3"]
    assert "negative" in reasons["line 4"]
    assert "physical limit" in reasons["line 5"]
    assert "expected 7 fields" in reasons["line 6"]
    assert "duplicate" in reasons["line 8"]
    assert "goes backwards" in reasons["line 9"]
    assert "not a date" in reasons["line 10"]
    assert "not a number" in reasons["line 11"]
    assert all(reject.position == int(where.split()[1]) for where, reject in zip(reasons, result.rejects))


def test_a_truncated_compressed_file_gives_what_it_holds_and_says_it_was_cut():
    raw = JULY_2015.read_bytes()
    result = read_bytes(raw[: len(raw) // 2], JULY_2015.name)
    assert 10_000 < len(result.flux) < 44_640
    assert "truncated" in result.error
    assert any("truncated" in r.reason for r in result.rejects)


def test_a_truncated_json_feed_keeps_the_complete_records_before_the_cut():
    text = gzip.decompress(ONE_DAY_JSON.read_bytes()).decode()
    result = read_bytes(text[: len(text) // 3].encode(), "xrays-1-day.json")
    assert 400 < len(result.flux) < 1_438
    assert "cut off" in result.error


def test_bad_json_records_are_rejected_one_by_one():
    good = json.loads(gzip.decompress(ONE_DAY_JSON.read_bytes()))[:4]
    bad = [
        {**good[0], "time_tag": "2026-08-07T19:00:00Z", "flux": float("nan")},
        {**good[1], "time_tag": "2026-08-07T19:00:00Z", "energy": "1-8A"},
        {"time_tag": "2026-08-07T19:01:00Z", "satellite": 18},
        {**good[1], "time_tag": "2026-08-07T19:02:00Z", "flux": -1e-6},
    ]
    result = read_bytes(json.dumps(good + bad).encode(), "xrays-6-hour.json")
    assert [r.time_tag.minute for r in result.flux] == [52, 53]
    assert [r.where for r in result.rejects] == ["record 5", "record 6", "record 7", "record 8"]
    nan, band, missing_keys, negative = (r.reason for r in result.rejects)
    assert "NaN" in nan and "neither" in band and "lacks flux, energy" in missing_keys and "negative" in negative


def test_a_file_of_no_known_format_is_one_reject_with_the_reason():
    result = read_bytes(b"station,temperature\nA,21.5\n", "weather.csv")
    assert result.format == "unknown" and result.flux == [] and result.flares == []
    assert "not a format the ingestor reads" in result.error
    assert len(result.rejects) == 1


def test_folders_expand_to_their_data_files_without_documentation(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    for name in ("SOURCES.md", "LICENSE.txt", "README", "MANIFEST.json", ".hidden", "a.csv", "sub/b.json"):
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in supported_files([tmp_path])] == ["a.csv", "sub/b.json"]


def test_the_stale_repeat_rule_leaves_short_real_repeats_alone():
    result = read_path(JULY_2015)  # GOES-15 repeats a reading for a minute or two now and then
    assert not any(r.quality == "stale_repeat" for r in result.flux)
    base = datetime(2015, 7, 1, tzinfo=timezone.utc)
    rows = [f"{(base + timedelta(minutes=i)):%Y-%m-%d %H:%M:%S},0,30,1.0e-09,0,30,"
            f"{3.6e-07 if 2 <= i < 2 + STALE_RUN_MINUTES else 3.0e-07 + i * 1e-9}"
            for i in range(20)]
    stale = read_bytes(("\n".join([NEW_AVG_HEADER_LINE, *rows]) + "\n").encode(), "g15_x.csv").flux
    assert [r.quality for r in stale].count("stale_repeat") == STALE_RUN_MINUTES - 1
    assert stale[2].usable and not stale[3].usable



def test_part_of_a_file_can_be_replayed_by_event_time():
    start, end = datetime(2015, 7, 3, tzinfo=timezone.utc), datetime(2015, 7, 5, tzinfo=timezone.utc)
    whole = read_path(JULY_2015)
    part = whole.within(start, end)
    assert len(part.flux) == 2 * 24 * 60
    assert min(r.time_tag for r in part.flux) == start and max(r.time_tag for r in part.flux) < end
    catalogue = read_path(SC24).within(None, datetime(2011, 1, 1, tzinfo=timezone.utc))
    assert catalogue.flares and all(f.peak_time.year <= 2010 for f in catalogue.flares)


def test_a_goes_r_l2_one_minute_file_gives_true_flux_readings_at_their_utc_minutes(tmp_path):
    from datetime import date

    from tests.support.goes_r_files import goes_r_file_name, write_goes_r_avg1m

    day = date(2024, 10, 1)  # the day of the X7.1 in the 51-day GOES-16 file
    path = tmp_path / goes_r_file_name(day)
    rows = write_goes_r_avg1m(path, day, flagged=frozenset({10}), filled=frozenset({20}))

    result = read_path(path)

    assert result.format == "goes_r_xrs_avg1m_netcdf" and result.error is None and not result.rejects
    assert result.records_read == len(rows) == len(result.flux)
    first = result.flux[0]
    assert first.satellite == "GOES-16" and first.scaling_era == "true_flux" and first.cadence_seconds == 60
    assert first.time_tag == rows[0][0] and first.time_tag.utcoffset() == timedelta(0)
    assert first.xrsb_flux == pytest.approx(rows[0][2], rel=1e-6)
    assert result.flux[10].quality == "flagged:1" and result.flux[10].xrsb_flux is None
    assert result.flux[20].quality == "fill" and result.flux[20].xrsb_flux is None
    peak = max(result.flux, key=lambda r: r.xrsb_flux or 0)
    assert peak.xrsb_flux == pytest.approx(max(b for _, _, b in rows), rel=1e-6) and peak.xrsb_flux >= 7e-4
    # the satellite comes from the file's own `id` attribute, whatever the file is called here
    renamed = path.rename(tmp_path / "download.nc")
    assert read_path(renamed).flux[0].satellite == "GOES-16"
