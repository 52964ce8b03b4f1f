"""Rebuild `data/sample/` and its MANIFEST.json from the team's reference data set.

    .venv/bin/python tools/build_data_sample.py [REFERENCE_DIR]

REFERENCE_DIR defaults to the `reference_data_dir` setting (REFERENCE_DATA_DIR). Every file is either the
reference file byte for byte, the reference file gzip-compressed (level 9, no name or time in the header, so a
rebuild gives the same bytes), or a cut of it said in the manifest's `cut`. The overlap folder's GAPS.md is
recomputed from the cut files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from shared.paths import project_root
from shared.settings import load_settings

SAMPLE = project_root() / "data" / "sample"
PUBLIC_DOMAIN = "US-government public domain (NOAA/NCEI/SWPC data product)"
MIT = "MIT (flare_lists/LICENSE.hayesla_flare_forecast_proj)"
NOAA_COPY = "NOAA/NCEI GOES XRS archive, via a public repository's copy (upstream repository not named in SOURCES.md)"
LMSAL = ("NOAA/NCEI sem/goes/data/avg new_avg netCDF, via github.com/boovines/LMSALDataSetupTask "
         "2010/<same month>.nc at commit 0dda0d3a79c77a0004a4205dc180976a3b86465f, converted to CSV")
OVERLAP_FROM, OVERLAP_UNTIL = datetime(2010, 10, 27), datetime(2010, 11, 1)
NGDC_YEARS = range(2010, 2016)


@dataclass(frozen=True)
class Entry:
    reference: str  # path in the reference set
    path: str  # path in the sample
    what: str
    source: str
    licence: str = PUBLIC_DOMAIN
    cut: str = "copied byte for byte"


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def entries() -> list[Entry]:
    gzipped = "the whole file, gzip -9 (no name or time in the header)"
    listed = [
        Entry("flare_lists/swpc_flarelist_sc24_2010_2015.csv", "flare_lists/swpc_flarelist_sc24_2010_2015.csv.gz",
              "SWPC GOES flare list >= C1.0, cleaned, solar cycle 24, 2010-01-02 -> 2015-12-31 (7,970 events)",
              "SWPC GOES event list, cleaned by Laura Hayes' flare_forecast_proj (github.com/hayesla, as the licence "
              "file's name says)", MIT, gzipped),
        Entry("flare_lists/LICENSE.hayesla_flare_forecast_proj", "flare_lists/LICENSE.hayesla_flare_forecast_proj",
              "the MIT licence of the cleaned solar-cycle-24 flare list", "github.com/hayesla/flare_forecast_proj",
              "MIT"),
        Entry("flare_lists/swpc_flarelist_1996_2015.csv", "flare_lists/swpc_flarelist_1996_2015.csv.gz",
              "SWPC GOES flare list >= C1.0, 1996-08 -> 2015-12 (22,649 rows), the older list layout",
              "SWPC GOES event list, via a public repository's copy", PUBLIC_DOMAIN, gzipped),
        Entry("format_samples/noaa_new_avg_1m_header_sample_g15_20170901.csv",
              "format_samples/noaa_new_avg_1m_header_sample_g15_20170901.csv",
              "NOAA new_avg 1-minute CSV as distributed (metadata header, `data:`, 30 rows), GOES-15", NOAA_COPY),
        Entry("format_samples/noaa_new_avg_1m_sample_g15_20170701_first30min.nc",
              "format_samples/noaa_new_avg_1m_sample_g15_20170701_first30min.nc",
              "NOAA new_avg 1-minute netCDF-3, GOES-15, first 30 minutes of July 2017", NOAA_COPY),
        Entry("goes15_1m/g15_xrs_1m_20150701_20150731.csv.gz", "goes15_1m/g15_xrs_1m_20150701_20150731.csv.gz",
              "GOES-15 1-minute averages, new_avg layout, July 2015 (44,640 rows, 355 fill minutes; C 43 / M 3)",
              NOAA_COPY),
        Entry("goes15_hourly/goes15_xrs_hourly_2010-09_2015-12.csv.gz",
              "goes15_hourly/goes15_xrs_hourly_2010-09_2015-12.csv.gz",
              "GOES-15 XRS hourly means, 2010-09-01 -> 2015-12-31 (46,580 rows, stamp = middle of the hour)",
              "GOES-15 XRS (NOAA/NCEI), hourly means by github.com/ianan/solar_activity"),
        Entry("goes16_1m/goes16_xrs_1m_2023-01.parquet", "goes16_1m/goes16_xrs_1m_2023-01.parquet",
              "GOES-16 XRS L2 avg1m, January 2023 (44,640 rows, gaps forward-filled by the repository author)",
              NOAA_COPY, PUBLIC_DOMAIN, "copied byte for byte (parquet is compressed inside)"),
        Entry("goes16_1m/goes16_xrs_1m_51_days_2021_2025.csv", "goes16_1m/goes16_xrs_1m_51_days_2021_2025.csv.gz",
              "GOES-16 XRS 1-minute, 51 whole days (1st of each month 2021-01 -> 2025-04, 73,466 rows)",
              NOAA_COPY, PUBLIC_DOMAIN, gzipped),
        Entry("goes16_1m/goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv",
              "goes16_1m/goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv.gz",
              "GOES-18 1-minute built from SWPC JSON, 2026-02-26 -> 03-09, real gaps and xray_is_missing flags "
              "(11,500 rows)", "SWPC services.swpc.noaa.gov/json/goes/primary, flattened to CSV",
              PUBLIC_DOMAIN, gzipped),
        Entry("swpc_json/xrays-1-day.json", "swpc_json/xrays-1-day.json.gz",
              "the SWPC xrays-1-day.json feed as served, GOES-18, 2026-08-07 18:52Z -> 08-08 18:49Z (2,876 records)",
              "SWPC services.swpc.noaa.gov/json/goes/primary/xrays-1-day.json", PUBLIC_DOMAIN, gzipped),
        Entry("swpc_json/xrays-1-minute_2026-07-29_2026-08-08.json.gz",
              "swpc_json/xrays-1-minute_2026-07-29_2026-08-08.json.gz",
              "138 snapshots of the SWPC feed merged (later wins), GOES-18, 2026-07-29 -> 08-08 (29,006 records)",
              "SWPC services.swpc.noaa.gov/json/goes/primary, recorded snapshots"),
    ]
    listed += [
        Entry(f"ngdc_reports/goes-xrs-report_{year}.txt", f"ngdc_reports/goes-xrs-report_{year}.txt.gz",
              f"NOAA/NGDC GOES XRS flare report {year}, fixed width, including B-class",
              "NOAA/NGDC (now NCEI) GOES XRS event reports", PUBLIC_DOMAIN,
              gzipped + "; only the solar-cycle-24 years 2010-2015 of the 1990-2015 reports are bundled")
        for year in NGDC_YEARS
    ]
    for sat in ("14", "15"):
        listed.append(Entry(
            f"goes_overlap/g{sat}_xrs_1m_20101001_20101031.csv.gz",
            f"goes_overlap/g{sat}_xrs_1m_20101027_20101031.csv.gz",
            f"GOES-{sat} 1-minute averages, new_avg layout, 2010-10-27 00:00 -> 10-31 23:59 (7,200 rows), "
            "the two-satellite overlap with GOES-14's 76-min gap of 10-28 and 124-min gap of 10-30",
            LMSAL, PUBLIC_DOMAIN,
            "the header and the rows with time_tag 2010-10-27 00:00 .. 2010-10-31 23:59 of the October file, "
            "gzip -9 (no name or time in the header)"))
    return listed


def cut_overlap(raw: bytes) -> bytes:
    lines = gzip.decompress(raw).decode().splitlines(keepends=True)
    first, last = f"{OVERLAP_FROM:%Y-%m-%d %H:%M}", f"{OVERLAP_UNTIL - timedelta(minutes=1):%Y-%m-%d %H:%M}"
    kept = [line for line in lines[1:] if first <= line[:16] <= last]
    return (lines[0] + "".join(kept)).encode()


def sample_bytes(entry: Entry, raw: bytes) -> bytes:
    if entry.path.startswith("goes_overlap/"):
        return gz(cut_overlap(raw))
    if entry.path.endswith(".gz") and not entry.reference.endswith(".gz"):
        return gz(raw)
    return raw


def missing_minutes(path: Path) -> dict[datetime, bool]:
    """Minute -> XRS-B missing (B_AVG <= 0 or B_QUAL_FLAG != 0), as the reference GAPS.md counts them."""
    with gzip.open(path, "rt") as handle:
        return {datetime.fromisoformat(row["time_tag"]): float(row["B_AVG"]) <= 0 or row["B_QUAL_FLAG"] != "0"
                for row in csv.DictReader(handle)}


def runs(minutes: list[datetime]) -> list[tuple[datetime, datetime]]:
    found: list[tuple[datetime, datetime]] = []
    for minute in minutes:
        if found and minute - found[-1][1] == timedelta(minutes=1):
            found[-1] = (found[-1][0], minute)
        else:
            found.append((minute, minute))
    return found


def gaps_markdown() -> str:
    folder = SAMPLE / "goes_overlap"
    g14 = missing_minutes(folder / "g14_xrs_1m_20101027_20101031.csv.gz")
    g15 = missing_minutes(folder / "g15_xrs_1m_20101027_20101031.csv.gz")
    fmt = "%Y-%m-%d %H:%M"
    out = io.StringIO()
    out.write("# GOES-14 / GOES-15 overlap, 2010-10-27 -> 10-31: gaps in XRS-B, and what the other satellite covers\n\n"
              "The part of the reference set's `goes_overlap/GAPS.md` for the bundled five days, recomputed from "
              "the two CSV files here by `tools/build_data_sample.py`. A minute is **missing** when `B_AVG <= 0` "
              "(fill `-99999`) or `B_QUAL_FLAG != 0`. Times are UTC minute stamps, `end` inclusive; "
              "`other valid` counts the minutes inside the gap where the other satellite has a valid XRS-B "
              "value. No eclipses in these days (they end 10-15/10-16).\n\n"
              "**Gaps a bridging test can use** (entirely covered by the other satellite):\n\n"
              "- GOES-14 `2010-10-30 07:02 -> 09:05` (124 min): GOES-15 valid all 124 minutes.\n"
              "- GOES-14 `2010-10-28 00:19 -> 01:34` (76 min): GOES-15 valid all 76.\n\n")
    both = sorted(t for t in g14 if g14[t] and g15.get(t, True))
    out.write(f"Rows {len(g14)} each. Missing XRS-B: GOES-14 {sum(g14.values())} min, GOES-15 {sum(g15.values())} "
              f"min, both at once {len(both)} min.\n")
    for name, own, other, other_name in (("GOES-14", g14, g15, "GOES-15"), ("GOES-15", g15, g14, "GOES-14")):
        gaps = runs(sorted(t for t, missing in own.items() if missing))
        out.write(f"\n### {name} gaps ({len(gaps)}, {sum(own.values())} min)\n\n"
                  f"| start | end | minutes | {other_name} valid |\n|---|---|---|---|\n")
        for start, end in gaps:
            span = [start + timedelta(minutes=i) for i in range(int((end - start).total_seconds() // 60) + 1)]
            covered = sum(1 for t in span if not other.get(t, True))
            out.write(f"| {start:{fmt}} | {end:{fmt}} | {len(span)} | {covered} |\n")
    out.write(f"\n### Both missing ({len(runs(both))} runs, {len(both)} min)\n\n")
    out.write("| start | end | minutes |\n|---|---|---|\n" if both else "None: one satellite or the other is valid.\n")
    for start, end in runs(both):
        out.write(f"| {start:{fmt}} | {end:{fmt}} | {int((end - start).total_seconds() // 60) + 1} |\n")
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(reference: Path) -> dict:
    files = []
    for entry in entries():
        raw = (reference / entry.reference).read_bytes()
        data = sample_bytes(entry, raw)
        target = SAMPLE / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files.append({"path": entry.path, "bytes": len(data), "sha256": sha256(data), "source": entry.source,
                      "licence": entry.licence, "what": entry.what,
                      "cut_from": {"path": entry.reference, "bytes": len(raw), "sha256": sha256(raw)},
                      "cut": entry.cut})
    gaps = gaps_markdown().encode()
    (SAMPLE / "goes_overlap" / "GAPS.md").write_bytes(gaps)
    files.append({"path": "goes_overlap/GAPS.md", "bytes": len(gaps), "sha256": sha256(gaps),
                  "source": "derived by tools/build_data_sample.py from the two goes_overlap CSV files here",
                  "licence": PUBLIC_DOMAIN, "what": "every XRS-B gap of the bundled overlap days",
                  "cut_from": {"path": "goes_overlap/GAPS.md"}, "cut": "the October rows of 10-27..10-31, recomputed"})
    readme = SAMPLE / "README.md"
    files.append({"path": "README.md", "bytes": readme.stat().st_size, "sha256": sha256(readme.read_bytes()),
                  "source": "this project", "licence": "this project's", "what": "what the sample is, for people",
                  "cut_from": None, "cut": "written by hand"})
    files.sort(key=lambda f: f["path"])
    manifest = {
        "what": "The data this project bundles: real NOAA GOES X-ray observations and flare lists that the demo and "
                "`make test` read. A sample of the team's reference data set (its SOURCES.md describes every file).",
        "reference_data_dir": "the setting reference_data_dir (env REFERENCE_DATA_DIR), unset by default; "
                              "optional, used only by benchmarks",
        "total_bytes": sum(f["bytes"] for f in files),
        "files": files,
    }
    (SAMPLE / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    reference_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else load_settings().reference_data_dir
    if reference_dir is None:
        sys.exit("build_data_sample: name the reference data set: REFERENCE_DIR or REFERENCE_DATA_DIR")
    built = build(reference_dir)
    for item in built["files"]:
        print(f"{item['bytes']:>10,}  {item['path']}")
    print(f"{built['total_bytes']:>10,}  total")
