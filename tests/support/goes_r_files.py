"""GOES-R XRS L2 1-minute files for tests, built from real GOES-16 readings.

The data set holds no NOAA `sci_xrsf-l2-avg1m_*.nc` file, so these are written in that product's layout
(variables `time` in seconds since 2000-01-01 12:00:00, `xrsa_flux`, `xrsb_flux`, `xrsa_flag`, `xrsb_flag`,
global attribute `id`, the file's name) from the real GOES-16 1-minute flux of `goes16_xrs_1m_51_days_2021_2025.csv`
(the 1st of each month, 2021-01 to 2025-04, plus 2020-12-31 23:59).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from pathlib import Path

from tests.support.noaa_server import recorded

# by its plain name: `recorded` finds it gzipped or not
GOES16_DAYS_CSV = "goes16_1m/goes16_xrs_1m_51_days_2021_2025.csv"
J2000 = datetime(2000, 1, 1, 12, tzinfo=timezone.utc)
FILL = -9999.0


def goes16_rows(day: date) -> list[tuple[datetime, float, float]]:
    """The real GOES-16 readings of one day of the 51-day file (time, xrsa, xrsb)."""
    rows = []
    for row in csv.DictReader(io.StringIO(recorded(GOES16_DAYS_CSV).decode())):
        moment = datetime.fromisoformat(row["time"]).replace(tzinfo=timezone.utc)
        if moment.date() == day:
            rows.append((moment, float(row["xrsa_flux"]), float(row["xrsb_flux"])))
    if not rows:
        raise ValueError(f"{GOES16_DAYS_CSV} holds no readings on {day}")
    return rows


def goes_r_file_name(day: date, satellite: int = 16, version: str = "v2-2-0") -> str:
    return f"sci_xrsf-l2-avg1m_g{satellite}_d{day:%Y%m%d}_{version}.nc"


def write_goes_r_avg1m(path: Path, day: date, *, satellite: int = 16, flagged: frozenset[int] = frozenset(),
                       filled: frozenset[int] = frozenset()) -> list[tuple[datetime, float, float]]:
    """Write one day in the L2 avg1m layout; `flagged` minutes get xrsb_flag 1, `filled` minutes the fill value.
    Returns the rows written."""
    import netCDF4
    import numpy as np

    rows = goes16_rows(day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.id = path.name  # as NOAA's files do
        nc.title = "GOES-R XRS L2 1-minute averages (test file built from real GOES-16 readings)"
        nc.createDimension("time", len(rows))
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "seconds since 2000-01-01 12:00:00"
        time[:] = [(moment - J2000).total_seconds() for moment, _, _ in rows]
        for name, column in (("xrsa_flux", 1), ("xrsb_flux", 2)):
            flux = nc.createVariable(name, "f4", ("time",), fill_value=np.float32(FILL))
            flux.units = "W m-2"
            flux[:] = [FILL if i in filled else row[column] for i, row in enumerate(rows)]
        for name in ("xrsa_flag", "xrsb_flag"):
            flag = nc.createVariable(name, "u1", ("time",))
            flag[:] = [1 if name == "xrsb_flag" and i in flagged else 0 for i in range(len(rows))]
    return rows
