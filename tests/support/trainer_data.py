"""Real GOES-15 history from the bundled data files, as frames and as rows in the real database.

The trainer reads `flux_observations` and `flare_events`; these helpers put a slice of the hourly GOES-15 file
and the SWPC flare list there the way the ingestor stores them (hourly rows keep the file's mid-hour stamp,
missing hours have NULL flux).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import numpy as np
import pandas as pd

from services.trainer.data import History
from shared import messages as m
from tests.conftest import DATA_DIR

HOURLY_FILE = DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz"
FLARE_FILE = DATA_DIR / "flare_lists" / "swpc_flarelist_sc24_2010_2015.csv.gz"


@lru_cache(maxsize=1)
def _hourly() -> pd.DataFrame:
    raw = pd.read_csv(HOURLY_FILE)
    xrsa = raw["xrsa_short_0.05-0.4nm"].to_numpy(dtype=float)
    xrsb = raw["xrsb_long_0.1-0.8nm"].to_numpy(dtype=float)
    return pd.DataFrame({
        "time_tag": pd.to_datetime(raw["time"], utc=True),
        "satellite": "GOES-15",
        "cadence_seconds": 3600,
        "scaling_era": "swpc_scaled",
        "xrsa_flux": np.where(xrsa > 0, xrsa, np.nan),
        "xrsb_flux": np.where(xrsb > 0, xrsb, np.nan),
    })


@lru_cache(maxsize=1)
def _flares() -> pd.DataFrame:
    raw = pd.read_csv(FLARE_FILE)
    return pd.DataFrame({
        "start_time": pd.to_datetime(raw["event_starttime"], utc=True),
        "peak_time": pd.to_datetime(raw["event_peaktime"], utc=True),
        "end_time": pd.to_datetime(raw["event_endtime"], utc=True),
        "goes_class": raw["goes_class"].str.strip(),
        "class_letter": raw["goes_class_ind"].str.strip(),
        "peak_flux": raw["goes_class_val"].astype(float),
        "scaling_era": "swpc_scaled",
        "source": "catalog:swpc_sc24",
    })


def _ts(value: str | datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def hourly_observations(start: str | datetime, end: str | datetime) -> pd.DataFrame:
    frame = _hourly()
    return frame[(frame["time_tag"] >= _ts(start)) & (frame["time_tag"] < _ts(end))].reset_index(drop=True)


def flare_list(start: str | datetime, end: str | datetime) -> pd.DataFrame:
    frame = _flares()
    return frame[(frame["peak_time"] >= _ts(start)) & (frame["peak_time"] < _ts(end))].reset_index(drop=True)


def history(start: str | datetime, end: str | datetime) -> History:
    return History(hourly_observations(start, end),
                   flare_list(start, end)[["peak_time", "peak_flux", "scaling_era", "source"]])


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


async def insert_history(conn, start: str | datetime, end: str | datetime) -> tuple[int, int]:
    """Store the hourly flux and the flare list of [start, end) as the ingestor would; return the row counts."""
    flux = hourly_observations(start, end)
    flux_rows = [
        (row.satellite, row.time_tag.to_pydatetime(), row.cadence_seconds, row.scaling_era,
         _none_if_nan(row.xrsa_flux), _none_if_nan(row.xrsb_flux),
         "good" if np.isfinite(row.xrsb_flux) else "fill", "test:goes15_hourly",
         m.stable_id(row.satellite, row.cadence_seconds, row.time_tag.isoformat()))
        for row in flux.itertuples()
    ]
    await conn.copy_records_to_table(
        "flux_observations", records=flux_rows,
        columns=["satellite", "time_tag", "cadence_seconds", "scaling_era", "xrsa_flux", "xrsb_flux", "quality",
                 "source", "message_id"],
    )
    flares = flare_list(start, end)
    rows = [
        (m.stable_id(row.source, row.peak_time.isoformat(), row.goes_class), row.start_time.to_pydatetime(),
         row.peak_time.to_pydatetime(), row.end_time.to_pydatetime(), row.goes_class, row.class_letter,
         float(row.peak_flux), row.source, "GOES-15", row.scaling_era)
        for row in flares.itertuples()
    ]
    flare_rows = {event_row[0]: event_row for event_row in rows}.values()
    await conn.copy_records_to_table(
        "flare_events", records=list(flare_rows),
        columns=["event_id", "start_time", "peak_time", "end_time", "goes_class", "class_letter", "peak_flux",
                 "source", "satellite", "scaling_era"],
    )
    return len(flux_rows), len(flare_rows)
