"""Which NOAA files a period needs, in NOAA's own layouts and names (services/ingestor/archive.py)."""

from __future__ import annotations

from datetime import date

import pytest

from services.ingestor.archive import (
    HeldFile, MonthListing, PlanError, RemoteFile, files_in_listing, held_files, plan, write_index,
)
from shared.settings import ArchiveSettings

NOAA = ArchiveSettings()
NCEI_AVG = "https://www.ncei.noaa.gov/data/goes-space-environment-monitor/access/avg/"
GOES_R = "https://data.ngdc.noaa.gov/platforms/solar-space-observing-satellites/goes/"


def test_a_month_of_new_avg_averages_is_one_file_named_for_its_first_and_last_day():
    [july] = plan("goes-avg-1m", date(2015, 7, 1), date(2015, 7, 31), NOAA)
    assert july == RemoteFile("goes-avg-1m", f"{NCEI_AVG}2015/07/goes15/csv/g15_xrs_1m_20150701_20150731.csv",
                              "goes-avg-1m/2015/07/goes15/csv/g15_xrs_1m_20150701_20150731.csv",
                              date(2015, 7, 1), date(2015, 7, 31), "GOES-15")


def test_a_period_across_month_ends_takes_each_month_it_touches_with_its_own_last_day():
    files = plan("goes-avg-1m-netcdf", date(2012, 1, 31), date(2012, 3, 1), NOAA)
    assert [f.url.rsplit("/", 1)[-1] for f in files] == [
        "g15_xrs_1m_20120101_20120131.nc", "g15_xrs_1m_20120201_20120229.nc", "g15_xrs_1m_20120301_20120331.nc"]
    assert all("/goes15/netcdf/" in f.url for f in files)
    [december] = plan("goes-avg-1m", date(2013, 12, 31), date(2013, 12, 31), NOAA)
    assert december.url.endswith("2013/12/goes15/csv/g15_xrs_1m_20131201_20131231.csv")


def test_the_default_satellite_follows_the_primary_of_the_day_and_a_named_one_wins():
    autumn = plan("goes-avg-1m", date(2010, 10, 1), date(2010, 11, 30), NOAA)
    assert [(f.first_day.month, f.satellite) for f in autumn] == [(10, "GOES-14"), (11, "GOES-15")]
    both = plan("goes-avg-1m", date(2010, 9, 1), date(2010, 9, 30), NOAA, satellites=(14, 15))
    assert [f.url.rsplit("/", 1)[-1] for f in both] == ["g14_xrs_1m_20100901_20100930.csv",
                                                        "g15_xrs_1m_20100901_20100930.csv"]
    with pytest.raises(PlanError, match="name one with --satellite"):
        plan("goes-avg-1m", date(2021, 1, 1), date(2021, 1, 31), NOAA)
    with pytest.raises(PlanError, match="not GOES-16"):
        plan("goes-avg-1m", date(2015, 1, 1), date(2015, 1, 31), NOAA, satellites=(16,))


def test_goes_r_days_are_planned_by_month_directory_and_satellite_switch():
    listings = plan("goes-r-xrs-1m", date(2025, 3, 31), date(2025, 4, 8), NOAA)
    assert listings == [
        MonthListing("goes-r-xrs-1m", f"{GOES_R}goes16/l2/data/xrsf-l2-avg1m_science/2025/03/",
                     "goes-r-xrs-1m/goes16/l2/data/xrsf-l2-avg1m_science/2025/03/", 16, (date(2025, 3, 31),)),
        MonthListing("goes-r-xrs-1m", f"{GOES_R}goes16/l2/data/xrsf-l2-avg1m_science/2025/04/",
                     "goes-r-xrs-1m/goes16/l2/data/xrsf-l2-avg1m_science/2025/04/", 16,
                     tuple(date(2025, 4, d) for d in range(1, 7))),
        MonthListing("goes-r-xrs-1m", f"{GOES_R}goes18/l2/data/xrsf-l2-avg1m_science/2025/04/",
                     "goes-r-xrs-1m/goes18/l2/data/xrsf-l2-avg1m_science/2025/04/", 18,
                     (date(2025, 4, 7), date(2025, 4, 8))),
    ]
    # a period reaching back before GOES-R gets its GOES-R part; one wholly before it is refused
    [first] = plan("goes-r-xrs-1m", date(2017, 1, 30), date(2017, 2, 8), NOAA)
    assert first.days == (date(2017, 2, 7), date(2017, 2, 8))
    with pytest.raises(PlanError, match="GOES-R data start on 2017-02-07"):
        plan("goes-r-xrs-1m", date(2016, 1, 1), date(2016, 12, 31), NOAA)


def test_a_goes_r_listing_gives_the_newest_version_of_each_asked_day_and_names_the_days_it_lacks():
    listing = plan("goes-r-xrs-1m", date(2023, 3, 1), date(2023, 3, 3), NOAA)[0]
    html = """<html><body><a href="../">Parent</a>
    <a href="sci_xrsf-l2-avg1m_g16_d20230301_v2-1-0.nc">old</a>
    <a href="sci_xrsf-l2-avg1m_g16_d20230301_v2-2-0.nc">new</a>
    <a href="/goes/goes16/l2/data/xrsf-l2-avg1m_science/2023/03/sci_xrsf-l2-avg1m_g16_d20230303_v2-2-0.nc">abs</a>
    <a href="sci_xrsf-l2-avg1m_g16_d20230331_v2-2-0.nc">not asked</a>
    <a href="sci_xrsf-l2-avg1m_g18_d20230302_v2-2-0.nc">other satellite</a>
    <a href="sci_xrsf-l2-flx1s_g16_d20230302_v2-2-0.nc">other product</a></body></html>"""
    files, absent = files_in_listing(listing, html)
    assert [f.url.rsplit("/", 1)[-1] for f in files] == ["sci_xrsf-l2-avg1m_g16_d20230301_v2-2-0.nc",
                                                         "sci_xrsf-l2-avg1m_g16_d20230303_v2-2-0.nc"]
    assert files[0].url == listing.url + "sci_xrsf-l2-avg1m_g16_d20230301_v2-2-0.nc"
    assert (files[0].first_day, files[0].last_day) == (date(2023, 3, 1), date(2023, 3, 1))
    assert files[0].satellite == "GOES-16"
    assert absent == [date(2023, 3, 2)]


def test_ngdc_reports_are_one_file_a_year_and_2017_is_the_year_to_date_file():
    files = plan("ngdc-xrs-reports", date(2015, 6, 1), date(2017, 1, 31), NOAA)
    assert [f.url.removeprefix(NOAA.ngdc_reports_base_url) for f in files] == [
        "goes-xrs-report_2015.txt", "goes-xrs-report_2016.txt", "goes-xrs-report_2017-ytd.txt"]
    assert files[0].path == "ngdc-xrs-reports/goes-xrs-report_2015.txt"
    with pytest.raises(PlanError, match="1975-2017"):
        plan("ngdc-xrs-reports", date(2019, 1, 1), date(2019, 2, 1), NOAA)
    with pytest.raises(PlanError, match="no satellite to choose"):
        plan("ngdc-xrs-reports", date(2015, 1, 1), date(2015, 1, 2), NOAA, satellites=(15,))
    with pytest.raises(PlanError, match="unknown dataset"):
        plan("goes-15", date(2015, 1, 1), date(2015, 1, 2), NOAA)


def test_base_urls_are_settings_so_a_mirror_or_a_test_server_keeps_noaa_s_paths():
    mirror = ArchiveSettings(ncei_avg_base_url="http://127.0.0.1:8000/avg/")
    [july] = plan("goes-avg-1m", date(2015, 7, 4), date(2015, 7, 4), mirror)
    assert july.url == "http://127.0.0.1:8000/avg/2015/07/goes15/csv/g15_xrs_1m_20150701_20150731.csv"


def test_held_files_of_a_period_are_those_whose_days_meet_it(tmp_path):
    def held(path: str, first: date, last: date, dataset: str = "goes-avg-1m") -> HeldFile:
        return HeldFile(dataset, path.rsplit("/", 1)[-1], path, first.isoformat(), last.isoformat(), "GOES-15", 1,
                        "0" * 64, "http://x/" + path, "2026-01-01T00:00:00+00:00", "none published; sha256 recorded")

    write_index(tmp_path, {h.path: h for h in (
        held("goes-avg-1m/a_201506.csv", date(2015, 6, 1), date(2015, 6, 30)),
        held("goes-avg-1m/a_201507.csv", date(2015, 7, 1), date(2015, 7, 31)),
        held("goes-avg-1m/a_201508.csv", date(2015, 8, 1), date(2015, 8, 31)),
        held("ngdc-xrs-reports/r_2015.txt", date(2015, 1, 1), date(2015, 12, 31), "ngdc-xrs-reports"),
    )})
    assert [p.name for p in held_files(tmp_path, "goes-avg-1m", date(2015, 6, 30), date(2015, 7, 31))] == [
        "a_201506.csv", "a_201507.csv"]
    assert [p.name for p in held_files(tmp_path, "goes-avg-1m")] == ["a_201506.csv", "a_201507.csv", "a_201508.csv"]
    assert held_files(tmp_path, "goes-r-xrs-1m") == []


def test_flare_data_fetch_help_names_every_dataset_and_refuses_an_unknown_one(capsys):
    from flare_cli.main import main
    from services.ingestor.archive import DATASETS

    with pytest.raises(SystemExit) as shown:
        main(["data", "fetch", "--help"])
    assert shown.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in DATASETS)
    with pytest.raises(SystemExit) as refused:
        main(["data", "fetch", "goes-15", "--from", "2015-07-01"])
    assert refused.value.code == 2 and "invalid choice: 'goes-15'" in capsys.readouterr().err
