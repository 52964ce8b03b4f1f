"""Messages for evaluator tests: forecasts, flux and flares built by hand or read from the bundled data
(hourly GOES-15 flux and the SWPC solar-cycle-24 flare list)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from shared import messages as m
from tests.conftest import DATA_DIR

HOURLY_FLUX = DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz"
SC24_FLARES = DATA_DIR / "flare_lists" / "swpc_flarelist_sc24_2010_2015.csv.gz"


def at(day: int, hour: int = 0, minute: int = 0, month: int = 7, year: int = 2015) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


def forecast(issued: datetime, p_c: float, p_m: float = 0.01, p_x: float = 0.001, *, version: str = "v1",
             shadow: bool = False, status: str = "ok") -> m.ForecastIssued:
    survival = {}
    if status == "ok":
        for target, p in (("C", p_c), ("M", p_m), ("X", p_x)):
            survival[target] = m.SurvivalForecast(
                target_class=target, probability_distribution={"0-24": p}, time_points_hours=[24.0],
                survival_probabilities=[1 - p], hazard_score=p, probability_within_24h=p,
            )
    return m.ForecastIssued(
        message_id=m.stable_id("forecast", version, shadow, issued.isoformat()), event_time=issued,
        model_version=version, shadow=shadow, status=status, survival=survival,
    )


def flux(time: datetime, xrsb: float | None = 1e-7, *, cadence_seconds: int = 60,
         satellite: str = "GOES-15") -> m.FluxObserved:
    return m.FluxObserved(
        message_id=m.stable_id(satellite, cadence_seconds, time.isoformat()), event_time=time, satellite=satellite,
        cadence_seconds=cadence_seconds, scaling_era="swpc_scaled", xrsa_flux=None, xrsb_flux=xrsb, source="test",
    )


def hourly_flux(start: datetime, end: datetime, *, missing: set[datetime] = frozenset()) -> list[m.FluxObserved]:
    """One reading an hour in [start, end), stamped mid-hour like the GOES-15 hourly file, except `missing`."""
    hours = pd.date_range(start, end, freq="h", inclusive="left")
    return [flux(h.to_pydatetime() + timedelta(minutes=30), cadence_seconds=3600)
            for h in hours if h.to_pydatetime() not in missing]


def flare(peak: datetime, goes_class: str, *, source: str = "test", era: str = "swpc_scaled") -> m.FlareObserved:
    letter = goes_class[0]
    peak_flux = {"B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}[letter] * float(goes_class[1:])
    return m.FlareObserved(
        message_id=m.stable_id("flare", source, peak.isoformat()), event_time=peak,
        start_time=peak - timedelta(minutes=10), peak_time=peak, goes_class=goes_class, class_letter=letter,
        peak_flux=peak_flux, source=source, scaling_era=era,
    )


def reference_flux(start: datetime, end: datetime) -> list[m.FluxObserved]:
    """The GOES-15 hourly means in [start, end); hours without a valid minute are readings without XRS-B."""
    frame = pd.read_csv(HOURLY_FLUX, parse_dates=["time"])
    frame["time"] = frame["time"].dt.tz_localize("UTC")
    frame = frame[(frame["time"] >= start) & (frame["time"] < end)]
    return [
        flux(row.time.to_pydatetime(), float(row.xrsb) if row.xrsb > 0 else None, cadence_seconds=3600)
        for row in frame.rename(columns={"xrsb_long_0.1-0.8nm": "xrsb"}).itertuples()
    ]


def reference_flares(start: datetime, end: datetime) -> list[m.FlareObserved]:
    frame = pd.read_csv(SC24_FLARES, parse_dates=["event_starttime", "event_peaktime", "event_endtime"])
    for column in ("event_starttime", "event_peaktime", "event_endtime"):
        frame[column] = frame[column].dt.tz_localize("UTC")
    frame = frame[(frame["event_peaktime"] >= start) & (frame["event_peaktime"] < end)]
    return [
        m.FlareObserved(
            message_id=m.stable_id("swpc-sc24", row.event_peaktime.isoformat(), row.goes_class),
            event_time=row.event_peaktime.to_pydatetime(), start_time=row.event_starttime.to_pydatetime(),
            peak_time=row.event_peaktime.to_pydatetime(), end_time=row.event_endtime.to_pydatetime(),
            goes_class=row.goes_class, class_letter=row.goes_class[0],
            peak_flux=float(row.goes_class_val), source="swpc-sc24",
        )
        for row in frame.itertuples()
    ]
