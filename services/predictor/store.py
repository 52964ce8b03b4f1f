"""The predictor's PostgreSQL side: the stored history features are computed from, and the prediction log.

The history a forecast at `t` reads is the same for the stream (warming its feature state) and for the REST
API (computing at a requested instant): the readings the ingestor publishes (those with an XRS-B value) in
the flux lookback before `t`, and the flares in the flare lookback. The REST API reads the flux as one array per
column (`forecast_history`): decoded row by row, the thousands of readings a forecast reads cost the service's
event loop more CPU than the forecast computed from them in a worker process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

import asyncpg
import pandas as pd

from shared import messages as m
from shared.features import (
    FLARE_COLUMNS, HOUR, FeatureParams, observations_from_columns, observations_from_rows,
)

FLUX_QUERY = """
    SELECT time_tag, satellite, cadence_seconds, scaling_era, xrsa_flux, xrsb_flux, message_id, source, quality
    FROM flux_observations
    WHERE time_tag >= $1 AND time_tag < $2 AND xrsb_flux IS NOT NULL
    ORDER BY time_tag
"""
# the columns the features read, in the order of OBSERVATION_COLUMNS, the time as epoch microseconds (exact, and an
# integer decodes in a fraction of a datetime's time); NULL when the window holds no reading
FLUX_COLUMNS_QUERY = """
    SELECT array_agg((extract(epoch FROM time_tag) * 1000000)::bigint ORDER BY time_tag),
           array_agg(satellite ORDER BY time_tag), array_agg(cadence_seconds ORDER BY time_tag),
           array_agg(scaling_era ORDER BY time_tag), array_agg(xrsa_flux ORDER BY time_tag),
           array_agg(xrsb_flux ORDER BY time_tag)
    FROM flux_observations
    WHERE time_tag >= $1 AND time_tag < $2 AND xrsb_flux IS NOT NULL
"""
FLARE_QUERY = """
    SELECT event_id, start_time, peak_time, end_time, goes_class, class_letter, peak_flux, source, satellite,
           scaling_era, noaa_region
    FROM flare_events
    WHERE peak_time >= $1
      -- known by $2 (FlareObserved.known_at): a detected flare from its end, a catalogue flare from its peak
      AND ($2::timestamptz IS NULL OR (CASE WHEN source = $3 AND end_time IS NOT NULL
                                            THEN end_time ELSE peak_time END) <= $2)
    ORDER BY peak_time
"""


@dataclass(frozen=True)
class History:
    """Stored readings before an instant and flares around it, as the feature function reads them."""

    flux_rows: list[asyncpg.Record]
    flare_rows: list[asyncpg.Record]

    @property
    def observations(self) -> pd.DataFrame:
        return observations_from_rows(self.flux_rows)

    @property
    def flares(self) -> pd.DataFrame:
        return flares_frame(self.flare_rows)

    @property
    def latest_reading(self) -> datetime | None:
        return self.flux_rows[-1]["time_tag"] if self.flux_rows else None

    def flux_messages(self) -> list[m.FluxObserved]:
        return [
            m.FluxObserved(
                message_id=row["message_id"], event_time=row["time_tag"], satellite=row["satellite"],
                cadence_seconds=row["cadence_seconds"], scaling_era=row["scaling_era"], xrsa_flux=row["xrsa_flux"],
                xrsb_flux=row["xrsb_flux"], quality=row["quality"], source=row["source"],
            )
            for row in self.flux_rows
        ]

    def flare_messages(self) -> list[m.FlareObserved]:
        return [
            m.FlareObserved(
                message_id=row["event_id"], event_time=row["peak_time"], start_time=row["start_time"],
                peak_time=row["peak_time"], end_time=row["end_time"], goes_class=row["goes_class"],
                class_letter=row["class_letter"], peak_flux=row["peak_flux"], source=row["source"],
                satellite=row["satellite"], scaling_era=row["scaling_era"], noaa_region=row["noaa_region"],
            )
            for row in self.flare_rows
        ]


def flux_window(until: datetime, params: FeatureParams) -> tuple[datetime, datetime]:
    """[start, until): the readings any feature at `until` reads, plus an hour of margin for the partial hour."""
    return until - (params.flux_lookback_hours + 2) * HOUR.to_pytimedelta(), until


def flare_window_start(until: datetime, params: FeatureParams) -> datetime:
    return until - params.flare_lookback.to_pytimedelta() - timedelta(hours=2)


def flares_frame(rows: Sequence[asyncpg.Record]) -> pd.DataFrame:
    return pd.DataFrame([{name: row[name] for name in FLARE_COLUMNS} for row in rows], columns=list(FLARE_COLUMNS))


FluxColumns = tuple[list, ...]  # a row of FLUX_COLUMNS_QUERY: one list per observation column


@dataclass(frozen=True)
class ForecastHistory:
    """What one REST forecast reads: the flux as columns, made a frame where the forecast is computed, and the
    flares."""

    flux: FluxColumns | None
    flare_rows: list[asyncpg.Record]

    @property
    def flares(self) -> pd.DataFrame:
        return flares_frame(self.flare_rows)


def observations_from_flux_columns(flux: FluxColumns | None) -> pd.DataFrame:
    """The frame `observations_from_rows` makes of the same readings, from a row of `FLUX_COLUMNS_QUERY`."""
    if flux is None:
        return observations_from_rows([])
    return observations_from_columns(*flux, time_unit="us")


async def forecast_history(conn: asyncpg.Connection, until: datetime, params: FeatureParams) -> ForecastHistory:
    """What `history_before(until)` reads, the flux as columns."""
    start, end = flux_window(until, params)
    flux = await conn.fetchrow(FLUX_COLUMNS_QUERY, start, end)
    flares = await conn.fetch(FLARE_QUERY, flare_window_start(until, params), until, m.DETECTED_SOURCE)
    return ForecastHistory(None if flux[0] is None else tuple(flux), flares)


async def history_before(conn: asyncpg.Connection, until: datetime, params: FeatureParams, *,
                         flares_after_too: bool = False) -> History:
    """The readings before `until` and the flares known at `until` (with `flares_after_too`, also those that
    peak later: the stream holds them back until its flux reaches them)."""
    start, end = flux_window(until, params)
    flux = await conn.fetch(FLUX_QUERY, start, end)
    flares = await conn.fetch(FLARE_QUERY, flare_window_start(until, params), None if flares_after_too else until,
                              m.DETECTED_SOURCE)
    return History(flux, flares)


HISTORY_FINGERPRINT_QUERY = """
    SELECT flux.rows, flux.written, flares.rows, flares.written
    FROM (SELECT count(*) AS rows, max(ingested_at) AS written FROM flux_observations
          WHERE time_tag >= $1 AND time_tag < $2 AND xrsb_flux IS NOT NULL) AS flux,
         (SELECT count(*) AS rows, max(ingested_at) AS written FROM flare_events
          WHERE peak_time >= $3 AND peak_time <= $2) AS flares
"""


async def history_fingerprint(conn: asyncpg.Connection, until: datetime, params: FeatureParams) -> tuple:
    """Changes whenever the history `history_before(until)` reads changes: rows stored, corrected (the ingestor
    stamps `ingested_at` on every write) or removed in its windows. Far cheaper than reading the history."""
    start, end = flux_window(until, params)
    return tuple(await conn.fetchrow(HISTORY_FINGERPRINT_QUERY, start, end, flare_window_start(until, params)))


async def has_flux_before(conn: asyncpg.Connection, until: datetime) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM flux_observations WHERE time_tag < $1 AND xrsb_flux IS NOT NULL)", until))


# ---- the prediction log --------------------------------------------------------------------------------------

# the columns the predictor writes, with their types (the batch insert passes one array per column)
LOG_COLUMNS = {
    "forecast_id": "text", "prediction_timestamp": "timestamptz", "model_version": "text", "shadow": "boolean",
    "status": "text", "predicted_class": "text", "class_probabilities": "jsonb", "probability_distribution": "jsonb",
    "p_ge_c_24h": "float8", "p_ge_m_24h": "float8", "p_ge_x_24h": "float8", "correlation_id": "text",
    "degraded": "boolean", "reason": "text",
}

def log_row(forecast: m.ForecastIssued) -> tuple:
    def within_24h(target: str) -> float | None:
        survival = forecast.survival.get(target)
        return survival.probability_within_24h if survival else None

    distribution = {target: s.probability_distribution for target, s in forecast.survival.items()}
    return (
        forecast.message_id, forecast.event_time, forecast.model_version, forecast.shadow, forecast.status,
        forecast.predicted_class, forecast.class_probabilities or None, distribution or None,
        within_24h("C"), within_24h("M"), within_24h("X"), forecast.correlation_id, forecast.degraded, forecast.reason,
    )


async def logged_ids(conn: asyncpg.Connection, forecast_ids: Sequence[str]) -> set[str]:
    """Which of these forecasts the log holds already (a replay or a redelivery issues them again)."""
    rows = await conn.fetch("SELECT forecast_id FROM forecast_log WHERE forecast_id = ANY($1::text[])",
                            list(forecast_ids))
    return {row["forecast_id"] for row in rows}


async def log_forecasts(conn: asyncpg.Connection, forecasts: Sequence[m.ForecastIssued]) -> int:
    """Insert the forecasts not logged yet; return how many were new. Logging one twice changes nothing."""
    if not forecasts:
        return 0
    # one statement for the whole batch (one round trip): a column of values per array parameter
    arrays = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(LOG_COLUMNS.values(), start=1))
    sql = (f"INSERT INTO forecast_log ({', '.join(LOG_COLUMNS)}) SELECT * FROM unnest({arrays})"
           " ON CONFLICT (forecast_id) DO NOTHING")
    columns = [list(column) for column in zip(*map(log_row, forecasts))]
    status = await conn.execute(sql, *columns)
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True)
class StoreStatus:
    last_ingestion_finished: datetime | None
    last_ingested_event_time: datetime | None
    forecasts_logged: int


async def store_status(conn: asyncpg.Connection) -> StoreStatus:
    ingestion = await conn.fetchrow(
        "SELECT max(finished_at) AS finished, max(last_event_time) AS last_event FROM flare_ingestion_log")
    count = await conn.fetchval("SELECT count(*) FROM forecast_log")
    return StoreStatus(ingestion["finished"], ingestion["last_event"], count)
