"""Matching predictions to actuals for the whole prediction log at once (`flare match-actuals`).

It reads the stored record (the flux readings and flares the ingestor wrote) and resolves every logged
forecast whose window has passed with the stream's own `resolve`, so both give the same outcomes. Flares
reported after the stream resolved a forecast (a catalogue loaded later) are taken into account here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import asyncpg

from shared.settings import Settings
from services.evaluator import store
from services.evaluator.resolution import FlareMark, FlareRecord, FluxRecord, Resolution, is_due, resolve, to_ns

CHUNK = 2000


@dataclass(frozen=True)
class MatchSummary:
    forecasts: int
    resolved: int
    scorable: int
    changed: int  # outcomes that differ from the ones recorded before
    waiting: int  # windows the flux record has not passed yet


async def match_actuals(
    conn: asyncpg.Connection, settings: Settings, *, unresolved_only: bool = False,
    progress: Callable[[Iterable], Iterable] = iter,
) -> MatchSummary:
    hours, newest = await store.flux_hours(conn)
    record = FluxRecord({hour: True for hour in hours})
    flares = FlareRecord()
    for row in await store.stored_flares(conn):
        flares.put(row["event_id"], FlareMark.from_values(row["peak_time"], row["peak_flux"], row["scaling_era"]))
    clock_ns = to_ns(newest) if newest else 0
    grace_ns = settings.evaluator.resolution_grace_minutes * 60 * 1_000_000_000

    logged = await store.prediction_log(conn, unresolved_only=unresolved_only)
    resolutions: list[Resolution] = []
    changed = waiting = 0
    for forecast, before in progress(logged):
        if not is_due(forecast, clock_ns, grace_ns):
            waiting += 1
            continue
        inside = flares.between(forecast.issued_ns, forecast.window_end_ns)
        resolution = resolve(forecast, clock_ns, record, inside, settings.model.censor_gap_hours)
        resolutions.append(resolution)
        changed += before is not None and before != store.outcome_of(resolution)
    async with conn.transaction():
        for start in range(0, len(resolutions), CHUNK):
            await store.record_outcomes(conn, resolutions[start:start + CHUNK])
    return MatchSummary(len(logged), len(resolutions), sum(r.scorable for r in resolutions), changed, waiting)
