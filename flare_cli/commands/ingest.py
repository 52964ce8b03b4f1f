"""`flare ingest` (NOAA files, folders or the live SWPC feed) and `flare flares` (the stored flare events)."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from flare_cli import context

if TYPE_CHECKING:
    from services.ingestor.pipeline import Ingestor
    from services.ingestor.store import RunStats


def register(sub: argparse._SubParsersAction) -> None:
    ingest = sub.add_parser(
        "ingest", help="ingest NOAA files or folders (format told by content), or poll the live SWPC feed",
        description="Store and publish GOES X-ray flux and flares. Files: every valid reading is published in "
                    "event-time order. Live: new and revised readings only.",
    )
    ingest.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="files or folders to ingest, or dataset names (`flare data list`): the files of that "
                             "dataset held in the data home for the period --from/--to")
    ingest.add_argument("--source", choices=("files", "live"), default="files",
                        help="'live' polls the SWPC feeds of config.yaml instead of reading PATHs")
    ingest.add_argument("--once", action="store_true", help="live: poll once and stop")
    ingest.add_argument("--speed", type=parse_speed, default=None, metavar="X|max",
                        help="replay at X times real time (event time), or 'max' (default) as fast as possible")
    ingest.add_argument("--backfill", action="store_true",
                        help="files: store new and changed records for training without publishing them, so the "
                             "running system does not react to history (retraining triggers, forecasts)")
    ingest.add_argument("--satellite", help="for files whose content and name do not say it, e.g. GOES-15")
    ingest.add_argument("--from", dest="start", type=parse_when,
                        help="files: only readings and flares at or after this (UTC)")
    ingest.add_argument("--until", dest="end", type=parse_when,
                        help="files: only readings and flares before this (UTC)")
    ingest.add_argument("--to", dest="end", type=parse_when_end,
                        help="files: only readings and flares up to this day (whole day) or time (UTC)")
    ingest.set_defaults(handler=cmd_ingest)

    flares = sub.add_parser("flares", help="list the stored flare events")
    flares.add_argument("--from", dest="start", type=parse_when, help="peak at or after this date/time (UTC)")
    flares.add_argument("--to", dest="end", type=parse_when_end, help="peak up to this date (whole day) or time (UTC)")
    flares.add_argument("--source", help="'detected', 'catalog' (every catalogue) or one source, e.g. catalog:ngdc")
    flares.add_argument("--min-class", type=parse_min_class, metavar="CLASS", help="e.g. C, M5, X1.0")
    flares.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
    flares.add_argument("--limit", type=int, default=None, help="at most this many rows")
    flares.set_defaults(handler=cmd_flares)


# ---- argument types ------------------------------------------------------------------------------------------


def parse_speed(text: str) -> float | None:
    if text.lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number (times real time) or 'max'") from None
    if not speed > 0:
        raise argparse.ArgumentTypeError("the speed must be positive")
    return speed


def _parse_datetime(text: str) -> tuple[datetime, bool]:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date (2015-07-01) or date and time") from None
    date_only = len(text.strip()) <= 10
    return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value), date_only


def parse_when(text: str) -> datetime:
    return _parse_datetime(text)[0]


def parse_when_end(text: str) -> datetime:
    """The exclusive upper bound: a date alone means the whole of that day."""
    value, date_only = _parse_datetime(text)
    return value + timedelta(days=1) if date_only else value + timedelta(microseconds=1)


def parse_min_class(text: str) -> float:
    from services.ingestor.goes import CLASS_FLOOR_FLUX, flux_of_class

    text = text.strip().upper()
    try:
        return CLASS_FLOOR_FLUX[text] if text in CLASS_FLOOR_FLUX else flux_of_class(text)  # type: ignore[index]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- ingest --------------------------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    import asyncio

    if args.source == "live" and args.paths:
        raise SystemExit("flare ingest: --source live reads the SWPC feed; give no PATHs")
    if args.source == "files" and not args.paths:
        raise SystemExit("flare ingest: name the files or folders to ingest, or use --source live")
    if args.source == "files":
        from services.ingestor.archive import PlanError, expand_dataset_names

        try:
            args.paths = expand_dataset_names(args.paths, context.settings().data_home, args.start, args.end)
        except PlanError as exc:
            print(f"flare ingest: {exc}", file=sys.stderr)
            return 2
    endpoints = context.endpoints(start=True)
    return asyncio.run(_ingest(args, endpoints.kafka_bootstrap_servers, endpoints.database_url))


async def _ingest(args: argparse.Namespace, bootstrap: str, dsn: str) -> int:
    from services.ingestor.pipeline import Ingestor
    from services.ingestor.readers import supported_files
    from shared.db import create_pool, migrate_dsn
    from shared.kafka import Publisher, ensure_topics
    from shared.topics import topic_registry

    settings = context.settings()
    await migrate_dsn(dsn)
    await ensure_topics(bootstrap, topic_registry(settings).values())
    pool = await create_pool(dsn)
    try:
        async with Publisher(bootstrap) as publisher:
            ingestor = Ingestor(settings, pool, publisher)
            if args.source == "live":
                return await _ingest_live(ingestor, args.once)
            return await _ingest_files(ingestor, list(supported_files(args.paths)), args)
    finally:
        await pool.close()


async def _ingest_files(ingestor: Ingestor, files: list[Path], args: argparse.Namespace) -> int:
    from tqdm import tqdm

    runs: list[RunStats] = []
    for number, path in enumerate(files, start=1):
        with tqdm(desc=f"[{number}/{len(files)}] {path.name}", unit="rec", leave=False, file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done)

            runs.append(await ingestor.ingest_file(path, speed=args.speed, satellite=args.satellite, progress=progress,
                                                   start=args.start, end=args.end, backfill=args.backfill))
    print_summary(runs)
    return 1 if any(run.status == "failed" for run in runs) else 0


async def _ingest_live(ingestor: Ingestor, once: bool) -> int:
    from services.ingestor.live import SwpcFeedClient
    from services.ingestor.pipeline import run_live

    ingestion = ingestor.settings.ingestion
    cache_dir = ingestor.settings.state_dir / "cache" / "swpc"
    runs: list[RunStats] = []

    def report(polled: list[RunStats]) -> None:
        runs.extend(polled)
        for run in polled:
            cache = " (from cache)" if run.used_cache else ""
            print(f"{datetime.now(timezone.utc):%H:%M:%S} {run.source}: {run.status}{cache}, "
                  f"{run.records_published} published, {run.records_corrected} corrected, "
                  f"{run.records_rejected} rejected" + (f" - {run.error}" if run.error else ""), flush=True)

    async with SwpcFeedClient(ingestion, cache_dir) as client:
        await run_live(ingestor, client, ingestion.swpc_feeds, interval_seconds=ingestion.poll_interval_seconds,
                       once=once, on_poll=report)
    return 1 if runs and all(run.status == "failed" for run in runs) else 0


SUMMARY_COLUMNS = ("source", "format", "status", "read", "published", "flares", "corrected", "missing", "rejected",
                   "gaps", "seconds")


def print_summary(runs: Sequence[RunStats]) -> None:
    rows = [
        (Path(run.source).name, run.format, run.status, run.records_read, run.records_published, run.flares_published,
         run.records_corrected, run.records_missing, run.records_rejected, run.gaps, f"{run.duration_seconds or 0:.1f}")
        for run in runs
    ]
    totals = ("total", "", f"{sum(r.status != 'failed' for r in runs)}/{len(runs)} ok",
              *(sum(row[i] for row in rows) for i in range(3, 10)), f"{sum(r.duration_seconds or 0 for r in runs):.1f}")
    table = [SUMMARY_COLUMNS, *rows, totals]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(SUMMARY_COLUMNS))]
    for row in table:
        print("  ".join(str(cell).ljust(w) if i < 3 else str(cell).rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))
    for run in runs:
        if run.error:
            print(f"{Path(run.source).name}: {run.error}")


# ---- flares --------------------------------------------------------------------------------------------------

FLARE_HEADER = ("start", "peak", "end", "class", "peak_flux", "source", "satellite")


def cmd_flares(args: argparse.Namespace) -> int:
    import asyncio

    endpoints = context.endpoints(start=False)
    rows = asyncio.run(_query_flares(endpoints.database_url, args))
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(FLARE_HEADER)
        writer.writerows(rows)
        return 0
    if not rows:
        print("no flare events match")
        return 0
    table = [FLARE_HEADER, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(FLARE_HEADER))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
    print(f"\n{len(rows)} flare events")
    return 0


async def _query_flares(dsn: str, args: argparse.Namespace) -> list[tuple]:
    """Flares by peak time; `--min-class` compares the peak flux in each event's own scaling era."""
    conditions, values = [], []

    def where(sql: str, value: object) -> None:
        values.append(value)
        conditions.append(sql.format(f"${len(values)}"))

    if args.start:
        where("peak_time >= {}", args.start)
    if args.end:
        where("peak_time < {}", args.end)
    if args.min_class:
        where("peak_flux >= {} * (1 - 1e-9)", args.min_class)
    if args.source == "catalog":
        where("source LIKE {}", "catalog:%")
    elif args.source:
        where("source = {}", args.source)
    sql = ("SELECT start_time, peak_time, end_time, goes_class, peak_flux, source, satellite FROM flare_events"
           f" WHERE {' AND '.join(conditions) or 'TRUE'} ORDER BY peak_time, source")
    if args.limit:
        sql += f" LIMIT {int(args.limit)}"
    from shared.db import connect

    conn = await connect(dsn)
    try:
        records = await conn.fetch(sql, *values)
    finally:
        await conn.close()
    return [
        (_minute(r["start_time"]), _minute(r["peak_time"]), _minute(r["end_time"]), r["goes_class"],
         f"{r['peak_flux']:.2e}", r["source"], r["satellite"] or "")
        for r in records
    ]


def _minute(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if value else ""

