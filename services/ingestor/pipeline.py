"""One ingestion run: read -> validate -> compare with what is stored -> publish and store, in event-time order.

Three modes share this path:
- replay (files): every valid reading is published, so replaying a file through the running system is a
  backtest; readings whose stored value changed go out as corrections (`is_correction`, next revision id).
- live (SWPC feed): only readings that are new or changed since the last poll are published; a feed that
  repeats what is stored publishes nothing.
- backfill (files): new and changed readings and flares are stored, nothing is published. An archive loaded
  for training is history, not news: published, it would drive the event-time clock through years, and every
  monthly tick and X-class flare in it would ask for a model trained on data the system already holds.
Missing readings are stored (NULL flux, the reason in `quality`) and never published as flux; rejected
records go to the dead-letter topic. Each chunk is published before it is stored, so a crash in between
republishes the same ids on the next run (at-least-once) instead of losing them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Literal, Sequence

import asyncpg

from services.ingestor import store
from services.ingestor.detection import DetectedFlare, detect_flares
from services.ingestor.live import FeedUnavailable, SwpcFeedClient
from services.ingestor.readers import FluxRecord, ReadResult, read_bytes, read_path
from shared.db import outlasting_outages
from shared.kafka import Publisher, dead_letter_for
from shared.logging import get_logger
from shared.messages import DETECTED_SOURCE, FlareObserved, FluxObserved, stable_id
from shared.settings import Settings

log = get_logger(__name__)
Mode = Literal["replay", "live", "backfill"]
CHUNK_SIZE = 5000
Progress = Callable[[int, int], None]  # (items done in this chunk, items in the run)


def flux_message(planned: store.PlannedFlux, correlation_id: str | None = None) -> FluxObserved:
    """The reading as published; its correlation id is the ingestion run's, which `flare_ingestion_log` keeps."""
    record = planned.record
    return FluxObserved(
        message_id=planned.message_id, event_time=record.time_tag, correlation_id=correlation_id,
        satellite=record.satellite,
        cadence_seconds=record.cadence_seconds, scaling_era=record.scaling_era, xrsa_flux=record.xrsa_flux,
        xrsb_flux=record.xrsb_flux, quality=record.quality, source=record.source, is_correction=planned.revision > 0,
    )


def detected_flare_message(record: FluxRecord, flare: DetectedFlare) -> FlareObserved:
    goes_class = flare.goes_class
    return FlareObserved(
        message_id=stable_id(DETECTED_SOURCE, record.satellite, flare.start_time.isoformat()),
        event_time=flare.peak_time, start_time=flare.start_time, peak_time=flare.peak_time, end_time=flare.end_time,
        goes_class=goes_class, class_letter=goes_class[0], peak_flux=flare.peak_flux, source=DETECTED_SOURCE,
        satellite=record.satellite, scaling_era=record.scaling_era,
    )


def detect_in(records: Sequence[FluxRecord]) -> list[FlareObserved]:
    """Flares in the 1-minute readings, per satellite. Hourly means flatten peaks and are not searched."""
    minute_records = sorted((r for r in records if r.cadence_seconds == 60), key=lambda r: (r.satellite, r.time_tag))
    flares = []
    for _, group in groupby(minute_records, key=lambda r: r.satellite):
        series = list(group)
        detected = detect_flares([r.time_tag for r in series], [r.xrsb_flux for r in series])
        flares += [detected_flare_message(series[0], flare) for flare in detected]
    return flares


def count_gaps(records: Sequence[FluxRecord]) -> int:
    """Stretches of more than one cadence step without a usable reading (absent rows or missing ones)."""
    gaps = 0
    usable = sorted((r for r in records if r.usable), key=lambda r: (r.satellite, r.cadence_seconds, r.time_tag))
    for _, group in groupby(usable, key=lambda r: (r.satellite, r.cadence_seconds)):
        series = list(group)
        step = series[0].cadence_seconds * 1.5
        gaps += sum(1 for a, b in zip(series, series[1:]) if (b.time_tag - a.time_tag).total_seconds() > step)
    return gaps


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """Something to publish and/or store, at the event time it becomes known."""

    known_at: datetime
    publish: bool
    flux: store.PlannedFlux | None = None
    flare: FlareObserved | None = None
    flare_change: store.Change = "unchanged"


def build_timeline(
    planned_flux: Sequence[store.PlannedFlux], planned_flares: Sequence[tuple[FlareObserved, store.Change]], mode: Mode,
) -> list[TimelineItem]:
    """What this run publishes and stores, in event-time order. A detected flare becomes known at its end
    (its peak is only certain then); a catalogue flare at its peak."""
    items = []
    for planned in planned_flux:
        publish = mode != "backfill" and planned.record.usable and (mode == "replay" or planned.change != "unchanged")
        if publish or planned.change != "unchanged":
            items.append(TimelineItem(planned.record.time_tag, publish, flux=planned))
    for flare, change in planned_flares:
        publish = mode != "backfill" and (mode == "replay" or change != "unchanged")
        if publish or change != "unchanged":
            items.append(TimelineItem(flare.known_at, publish, flare=flare, flare_change=change))
    items.sort(key=lambda item: (item.known_at, item.flux is None))
    return items


async def paced_chunks(
    items: Sequence[TimelineItem], speed: float | None, *, chunk_size: int = CHUNK_SIZE,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[list[TimelineItem]]:
    """Chunks of items, released when their event time is due: `speed` times faster than real time, or as
    fast as possible with `speed=None`."""
    if not items:
        return
    origin_event, origin_wall = items[0].known_at, clock()
    chunk: list[TimelineItem] = []
    for item in items:
        if speed is not None:
            due = origin_wall + (item.known_at - origin_event).total_seconds() / speed
            if due > clock():
                if chunk:
                    yield chunk
                    chunk = []
                wait = due - clock()
                if wait > 0:
                    await sleep(wait)
        chunk.append(item)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class DetectionRun:
    stats: store.RunStats
    readings: int
    flares_found: int
    flares_new: int


class Ingestor:
    """Runs ingestion against one database pool and one publisher, recording each run in the log."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, publisher: Publisher, *, service: str = "ingestor"):
        self.settings = settings
        self._pool = pool
        self._publisher = publisher
        self._service = service

    async def ingest_file(
        self, path: Path, *, speed: float | None = None, satellite: str | None = None, progress: Progress | None = None,
        start: datetime | None = None, end: datetime | None = None, backfill: bool = False,
    ) -> store.RunStats:
        stats = store.RunStats(source=str(path))
        try:
            result = await asyncio.to_thread(read_path, path, satellite=satellite,
                                             max_flux=self.settings.ingestion.max_flux_w_m2)
        except OSError as exc:
            result = ReadResult(str(path), "unknown", error=f"cannot read: {exc}")
        if start or end:
            result = result.within(start, end)
        return await self._run(result, stats, "backfill" if backfill else "replay", speed, progress)

    async def detect_stored(self, *, start: datetime | None = None, end: datetime | None = None) -> DetectionRun:
        """NOAA's flare detection over the 1-minute flux already stored (`flare train-survival --detect-flares`):
        the flares found are stored as a backfill run stores them (the ones already known are left as they are),
        and the run is in the ingestion log."""
        async with self._pool.acquire() as conn:
            readings = await store.stored_minute_flux(conn, start, end)
            found = await asyncio.to_thread(detect_in, readings)
            known = await store.stored_flares(conn, [f.message_id for f in found])
        result = ReadResult("stored 1-minute flux", "detection", records_read=len(readings), flares=found)
        stats = await self._run(result, store.RunStats(source=result.source), "backfill", None, None)
        return DetectionRun(stats, len(readings), len(found), sum(1 for f in found if f.message_id not in known))

    async def ingest_feed(self, client: SwpcFeedClient, feed: str) -> store.RunStats:
        stats = store.RunStats(source=f"swpc:{feed}")
        try:
            snapshot = await client.fetch(feed)
        except FeedUnavailable as exc:
            return await self._run(ReadResult(stats.source, "swpc_json", error=str(exc)), stats, "live", None, None)
        result = read_bytes(snapshot.body, snapshot.source, max_flux=self.settings.ingestion.max_flux_w_m2)
        stats.used_cache = snapshot.from_cache
        return await self._run(result, stats, "live", None, None, note=snapshot.reason)

    async def _run(
        self, result: ReadResult, stats: store.RunStats, mode: Mode, speed: float | None, progress: Progress | None,
        note: str | None = None,
    ) -> store.RunStats:
        started = time.monotonic()
        async with self._pool.acquire() as conn:
            await store.open_run(conn, stats)
            try:
                await self._process(conn, result, stats, mode, speed, progress)
                stats.status = _status(result, stats)
                stats.error = "; ".join(text for text in (result.error, note) if text) or None
            except Exception as exc:  # recorded in the log; the caller goes on with the next source
                log.exception("ingest.failed", source=stats.source)
                stats.status, stats.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                stats.duration_seconds = time.monotonic() - started
                await store.close_run(conn, stats)
        log.info(
            "ingest.run", run_id=stats.run_id, source=stats.source, format=stats.format, status=stats.status,
            read=stats.records_read, published=stats.records_published, corrected=stats.records_corrected,
            rejected=stats.records_rejected, missing=stats.records_missing, gaps=stats.gaps,
            used_cache=stats.used_cache, error=stats.error,
        )
        return stats

    async def _process(
        self, conn: asyncpg.Connection, result: ReadResult, stats: store.RunStats, mode: Mode, speed: float | None,
        progress: Progress | None,
    ) -> None:
        stats.format = result.format
        stats.records_read = result.records_read
        stats.records_rejected = len(result.rejects)
        stats.records_missing = sum(1 for r in result.flux if not r.usable)
        stats.gaps = count_gaps(result.flux)
        times = [r.time_tag for r in result.flux] + [f.peak_time for f in result.flares]
        stats.first_event_time, stats.last_event_time = (min(times), max(times)) if times else (None, None)
        await self._dead_letter(result, stats.source)

        planned_flux = store.plan_flux(result.flux, await store.stored_flux(conn, result.flux))
        flares = result.flares + detect_in(result.flux)
        if mode == "live":  # an open flare's peak may still grow: it is published once it has ended
            flares = [f for f in flares if f.end_time is not None]
        planned_flares = store.plan_flares(flares, await store.stored_flares(conn, [f.message_id for f in flares]))
        stats.records_corrected = sum(1 for p in planned_flux if p.change == "changed") + sum(
            1 for _, change in planned_flares if change == "changed")

        topics = self.settings.topics
        timeline = build_timeline(planned_flux, planned_flares, mode)
        # A chunk is stored while the next one is published: the database works in its own process meanwhile.
        storing: asyncio.Task | None = None
        try:
            async for chunk in paced_chunks(timeline, speed):
                flux_out = [flux_message(i.flux, stats.run_id) for i in chunk if i.flux is not None and i.publish]
                flares_out = [i.flare.model_copy(update={"correlation_id": stats.run_id})
                              for i in chunk if i.flare is not None and i.publish]
                # A chunk's flares go first: consumers hold a flare back until their flux reaches its peak,
                # but a flare that comes after that flux has passed would be missed by the hours in between.
                await self._publisher.publish_many(topics.flares, flares_out)
                await self._publisher.publish_many(topics.flux, flux_out)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(_store_chunk(conn, chunk))
                stats.records_published += len(flux_out) + len(flares_out)
                stats.flares_published += len(flares_out)
                if progress:
                    progress(len(chunk), len(timeline))
            if storing is not None:
                await storing
        finally:  # what was published is stored even when a later chunk fails
            if storing is not None and not storing.done():
                await asyncio.gather(storing, return_exceptions=True)

    async def _dead_letter(self, result: ReadResult, source: str) -> None:
        dead = [
            dead_letter_for(self._service, source, reject.raw.encode(), f"{reject.where}: {reject.reason}",
                            offset=reject.position)
            for reject in result.rejects
        ]
        if dead:
            log.info("ingest.rejected", source=source, count=len(dead), first=dead[0].reason)
            await self._publisher.publish_many(self.settings.topics.dead_letters, dead)


async def _store_chunk(conn: asyncpg.Connection, chunk: Sequence[TimelineItem]) -> None:
    await store.write_flux(conn, [i.flux for i in chunk if i.flux is not None])
    await store.write_flares(conn, [i.flare for i in chunk if i.flare is not None and i.flare_change != "unchanged"])


def _status(result: ReadResult, stats: store.RunStats) -> str:
    if result.error and not (result.flux or result.flares):
        return "failed"
    if result.error:
        return "partial"  # read up to a point (truncated input): what was read is stored and published
    if stats.used_cache:
        return "cache"
    return "ok"


async def run_live(
    ingestor: Ingestor, client: SwpcFeedClient, feeds: Sequence[str], *, interval_seconds: float, once: bool = False,
    stop: asyncio.Event | None = None, on_poll: Callable[[list[store.RunStats]], None] | None = None,
) -> None:
    """Poll every feed, then wait `interval_seconds` (measured from the start of the poll), until `stop` is set
    or, with `once`, after the first poll."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        began = time.monotonic()
        # what a poll could not store is published again by the next one (it is new to the database)
        polled = [await outlasting_outages(lambda: ingestor.ingest_feed(client, feed)) for feed in feeds]
        if on_poll:
            on_poll(polled)
        if once:
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, interval_seconds - (time.monotonic() - began)))
        except asyncio.TimeoutError:
            pass
