"""PostgreSQL side of ingestion: what is stored already, idempotent batch upserts, the ingestion log.

A flux row is keyed by (satellite, cadence, time tag) and carries a revision: a value that differs from the
stored one is a correction, stored as the next revision with its own message id; an equal one is left
alone, so re-ingesting a file changes nothing.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Literal, Sequence

import asyncpg

from services.ingestor.readers import FluxRecord
from shared.messages import FlareObserved, stable_id

Change = Literal["new", "changed", "unchanged"]
FLUX_COLUMNS = (
    "satellite", "time_tag", "cadence_seconds", "scaling_era", "xrsa_flux", "xrsb_flux", "quality", "source",
    "message_id", "revision",
)
FLARE_COLUMNS = (
    "event_id", "start_time", "peak_time", "end_time", "goes_class", "class_letter", "peak_flux", "source",
    "satellite", "scaling_era", "noaa_region",
)


# ---- flux --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredFlux:
    xrsa_flux: float | None
    xrsb_flux: float | None
    quality: str
    revision: int


@dataclass(frozen=True, slots=True)
class PlannedFlux:
    record: FluxRecord
    revision: int
    change: Change
    message_id: str


def flux_message_id(satellite: str, cadence_seconds: int, time_tag: datetime, revision: int = 0) -> str:
    """Stable per reading (time tags are UTC); each correction (revision > 0) gets its own id but names the
    same row."""
    if revision == 0:
        return stable_id(satellite, cadence_seconds, time_tag.isoformat())
    return stable_id(satellite, cadence_seconds, time_tag.isoformat(), f"revision-{revision}")


def _same_value(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def plan_flux(records: Iterable[FluxRecord], stored: dict[tuple[str, int, datetime], StoredFlux]) -> list[PlannedFlux]:
    """Compare incoming readings with the stored ones: new rows get revision 0, a changed value or quality
    the next revision, an identical reading stays as it is."""
    planned = []
    for record in records:
        before = stored.get((record.satellite, record.cadence_seconds, record.time_tag))
        if before is None:
            revision, change = 0, "new"
        elif (
            _same_value(before.xrsb_flux, record.xrsb_flux)
            and _same_value(before.xrsa_flux, record.xrsa_flux)
            and before.quality == record.quality
        ):
            revision, change = before.revision, "unchanged"
        else:
            revision, change = before.revision + 1, "changed"
        message_id = flux_message_id(record.satellite, record.cadence_seconds, record.time_tag, revision)
        planned.append(PlannedFlux(record, revision, change, message_id))  # type: ignore[arg-type]
    return planned


async def stored_flux(conn: asyncpg.Connection,
                      records: Sequence[FluxRecord]) -> dict[tuple[str, int, datetime], StoredFlux]:
    """The stored readings over the time span of `records`, per satellite and cadence."""
    spans: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    for record in records:
        key = (record.satellite, record.cadence_seconds)
        low, high = spans.get(key, (record.time_tag, record.time_tag))
        spans[key] = (min(low, record.time_tag), max(high, record.time_tag))
    found: dict[tuple[str, int, datetime], StoredFlux] = {}
    for (satellite, cadence), (low, high) in spans.items():
        rows = await conn.fetch(
            "SELECT time_tag, xrsa_flux, xrsb_flux, quality, revision FROM flux_observations"
            " WHERE satellite = $1 AND cadence_seconds = $2 AND time_tag BETWEEN $3 AND $4",
            satellite, cadence, low, high,
        )
        for row in rows:
            found[(satellite, cadence, row["time_tag"])] = StoredFlux(
                row["xrsa_flux"], row["xrsb_flux"], row["quality"], row["revision"],
            )
    return found


async def stored_minute_flux(conn: asyncpg.Connection, start: datetime | None,
                             end: datetime | None) -> list[FluxRecord]:
    """The stored 1-minute readings in [start, end), per satellite in time order: what detection searches."""
    rows = await conn.fetch(
        "SELECT satellite, time_tag, cadence_seconds, scaling_era, xrsa_flux, xrsb_flux, quality, source"
        " FROM flux_observations WHERE cadence_seconds = 60 AND ($1::timestamptz IS NULL OR time_tag >= $1)"
        " AND ($2::timestamptz IS NULL OR time_tag < $2) ORDER BY satellite, time_tag",
        start, end,
    )
    return [FluxRecord(**dict(row)) for row in rows]


async def write_flux(conn: asyncpg.Connection, planned: Sequence[PlannedFlux]) -> int:
    """Upsert new and changed readings in one batch (COPY into a temporary table, then one INSERT)."""
    rows = [
        (p.record.satellite, p.record.time_tag, p.record.cadence_seconds, p.record.scaling_era, p.record.xrsa_flux,
         p.record.xrsb_flux, p.record.quality, p.record.source, p.message_id, p.revision)
        for p in planned if p.change != "unchanged"
    ]
    if not rows:
        return 0
    columns = ", ".join(FLUX_COLUMNS)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in FLUX_COLUMNS[3:])
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE incoming_flux (LIKE flux_observations INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table("incoming_flux", records=rows, columns=FLUX_COLUMNS)
        await conn.execute(
            f"INSERT INTO flux_observations ({columns}) SELECT {columns} FROM incoming_flux"
            f" ON CONFLICT (satellite, cadence_seconds, time_tag) DO UPDATE SET {updates}, ingested_at = now()"
        )
    return len(rows)


# ---- flares ------------------------------------------------------------------------------------------------


def flare_row(flare: FlareObserved) -> tuple:
    return (
        flare.message_id, flare.start_time, flare.peak_time, flare.end_time, flare.goes_class, flare.class_letter,
        flare.peak_flux, flare.source, flare.satellite, flare.scaling_era, flare.noaa_region,
    )


async def stored_flares(conn: asyncpg.Connection, event_ids: Sequence[str]) -> dict[str, tuple]:
    rows = await conn.fetch(f"SELECT {', '.join(FLARE_COLUMNS)} FROM flare_events WHERE event_id = ANY($1::text[])",
                            list(event_ids))
    return {row["event_id"]: tuple(row[name] for name in FLARE_COLUMNS) for row in rows}


def plan_flares(flares: Iterable[FlareObserved], stored: dict[str, tuple]) -> list[tuple[FlareObserved, Change]]:
    planned = []
    for flare in flares:
        before = stored.get(flare.message_id)
        if before is None:
            planned.append((flare, "new"))
        else:
            planned.append((flare, "unchanged" if before == flare_row(flare) else "changed"))
    return planned


async def write_flares(conn: asyncpg.Connection, flares: Sequence[FlareObserved]) -> int:
    if not flares:
        return 0
    columns = ", ".join(FLARE_COLUMNS)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in FLARE_COLUMNS[1:])
    async with conn.transaction():
        await conn.execute("CREATE TEMP TABLE incoming_flares (LIKE flare_events INCLUDING DEFAULTS) ON COMMIT DROP")
        await conn.copy_records_to_table("incoming_flares", records=[flare_row(f) for f in flares],
                                         columns=FLARE_COLUMNS)
        await conn.execute(
            f"INSERT INTO flare_events ({columns}) SELECT {columns} FROM incoming_flares"
            f" ON CONFLICT (event_id) DO UPDATE SET {updates}, ingested_at = now()"
        )
    return len(flares)


# ---- ingestion log -----------------------------------------------------------------------------------------


@dataclass
class RunStats:
    """One row of `flare_ingestion_log`: one run over one source."""

    source: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    format: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    records_read: int = 0
    records_published: int = 0
    records_corrected: int = 0
    records_rejected: int = 0
    records_missing: int = 0
    gaps: int = 0
    flares_published: int = 0
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    used_cache: bool = False
    status: str = "running"
    error: str | None = None
    duration_seconds: float | None = None


async def open_run(conn: asyncpg.Connection, stats: RunStats) -> None:
    """Record the run as running before any work, so a crashed run is visible as one that never finished."""
    await conn.execute(
        "INSERT INTO flare_ingestion_log (run_id, source, started_at, status) VALUES ($1, $2, $3, 'running')",
        stats.run_id, stats.source, stats.started_at,
    )


async def close_run(conn: asyncpg.Connection, stats: RunStats) -> None:
    await conn.execute(
        """UPDATE flare_ingestion_log SET finished_at = now(), duration_seconds = $2, records_read = $3,
               records_published = $4, records_corrected = $5, records_rejected = $6, records_missing = $7,
               gaps = $8, first_event_time = $9, last_event_time = $10, used_cache = $11, status = $12, error = $13
           WHERE run_id = $1""",
        stats.run_id, stats.duration_seconds, stats.records_read, stats.records_published, stats.records_corrected,
        stats.records_rejected, stats.records_missing, stats.gaps, stats.first_event_time, stats.last_event_time,
        stats.used_cache, stats.status, stats.error,
    )
