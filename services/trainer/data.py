"""Reading the stored history (flux_observations, flare_events) into the frames the feature function reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import pandas as pd

from shared.features import FLARE_COLUMNS, OBSERVATION_COLUMNS

FLUX_QUERY = """
    SELECT time_tag, satellite, cadence_seconds, scaling_era, xrsa_flux, xrsb_flux
    FROM flux_observations
    WHERE (xrsb_flux IS NOT NULL OR xrsa_flux IS NOT NULL)
      AND ($1::timestamptz IS NULL OR time_tag >= $1) AND ($2::timestamptz IS NULL OR time_tag < $2)
    ORDER BY time_tag
"""
FLARE_QUERY = """
    SELECT peak_time, peak_flux, scaling_era, source, satellite
    FROM flare_events
    WHERE ($1::timestamptz IS NULL OR peak_time >= $1) AND ($2::timestamptz IS NULL OR peak_time <= $2)
    ORDER BY peak_time
"""


@dataclass(frozen=True)
class History:
    """Readings and flares, each sorted by time."""

    observations: pd.DataFrame
    flares: pd.DataFrame

    def until(self, end: datetime) -> "History":
        """What was known at `end`: readings tagged before it and flares that peaked by it."""
        end_ts = pd.Timestamp(end)
        return History(
            self.observations[self.observations["time_tag"] < end_ts],
            self.flares[self.flares["peak_time"] <= end_ts],
        )


def history_from_rows(flux_rows, flare_rows) -> History:
    observations = pd.DataFrame([tuple(r) for r in flux_rows], columns=list(OBSERVATION_COLUMNS))
    flares = pd.DataFrame([tuple(r) for r in flare_rows], columns=list(FLARE_COLUMNS))
    observations["time_tag"] = pd.to_datetime(observations["time_tag"], utc=True)
    flares["peak_time"] = pd.to_datetime(flares["peak_time"], utc=True)
    for column in ("xrsa_flux", "xrsb_flux"):
        observations[column] = pd.to_numeric(observations[column]).astype(float)
    flares["peak_flux"] = pd.to_numeric(flares["peak_flux"]).astype(float)
    return History(observations, flares)


async def load_history(
    conn: asyncpg.Connection, *, start: datetime | None = None, until: datetime | None = None,
    flare_lookback: timedelta = timedelta(0),
) -> History:
    """Readings in [start, until) and flares peaking in [start - flare_lookback, until]."""
    flux_rows = await conn.fetch(FLUX_QUERY, start, until)
    flare_start = start - flare_lookback if start is not None else None
    flare_rows = await conn.fetch(FLARE_QUERY, flare_start, until)
    return history_from_rows(flux_rows, flare_rows)
