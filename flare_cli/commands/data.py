"""`flare data fetch` (download NOAA's archives for a period into the data home) and `flare data list`."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from flare_cli import context
# standard library and settings only: building the parser imports neither httpx nor the ingestor's readers
from services.ingestor.archive import DATASETS


def register(sub: argparse._SubParsersAction) -> None:
    datasets = "\n".join(f"  {name:<20} {ds.description}" for name, ds in DATASETS.items())
    data = sub.add_parser("data", help="download NOAA's GOES X-ray archives for your own period; list what is held",
                          description=f"datasets:\n{datasets}", formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    fetch = actions.add_parser(
        "fetch", help="download a dataset's files for a period into the data home (FLARE_DATA_HOME)",
        description="Download the NOAA files of DATASET that cover --from to --to, following NOAA's directory "
                    "layout, with a progress bar; partial downloads resume, failures are retried with backoff, "
                    "files already held are skipped, a month NOAA does not have is reported and skipped.\n\n"
                    f"datasets:\n{datasets}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("dataset", choices=tuple(DATASETS), metavar="DATASET")
    fetch.add_argument("--from", dest="start", type=parse_day, required=True, help="first day (UTC), e.g. 2015-07-01")
    fetch.add_argument("--to", dest="end", type=parse_day, help="last day, included (default: the --from day)")
    fetch.add_argument("--satellite", type=int, action="append", metavar="N",
                       help="GOES satellite number, repeatable (default: the primary satellite of each day)")
    fetch.set_defaults(handler=cmd_fetch)

    listing = actions.add_parser("list", help="the datasets and the files held of each (from the data index)")
    listing.add_argument("--files", action="store_true", help="every held file, with its period, size and sha256")
    listing.set_defaults(handler=cmd_list)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a day, e.g. 2015-07-01") from None


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def cmd_fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from services.ingestor.archive import PlanError, fetch

    settings = context.settings()
    end = args.end or args.start

    def progress(name: str, total: int | None, already: int):
        return tqdm(desc=name, total=total, initial=already, unit="B", unit_scale=True,
                    file=sys.stderr)  # kept: one finished bar per file is the record of what arrived

    try:
        report = fetch(settings, args.dataset, args.start, end,
                       satellites=tuple(args.satellite) if args.satellite else None, progress=progress)
    except (PlanError, ValueError) as exc:
        print(f"flare data fetch: {exc}", file=sys.stderr)
        return 2
    for held in report.fetched:
        print(f"fetched   {held.path}  {_size(held.bytes)}  sha256 {held.sha256[:12]}  ({held.checksum})")
    for what, why in report.missing:
        print(f"missing   {what}: {why}")
    for what, why in report.failed:
        print(f"FAILED    {what}: {why}")
    print(f"{args.dataset} {args.start} to {end}: {len(report.fetched)} fetched "
          f"({_size(sum(h.bytes for h in report.fetched))}), {len(report.already_held)} already held, "
          f"{len(report.missing)} missing at NOAA, {len(report.failed)} failed; data home {settings.data_home}")
    return 0 if report.ok else 1


def cmd_list(args: argparse.Namespace) -> int:
    from services.ingestor.archive import read_index

    settings = context.settings()
    try:
        held = read_index(settings.data_home)
    except ValueError as exc:
        print(f"flare data list: {exc}", file=sys.stderr)
        return 2
    print(f"data home {settings.data_home}")
    rows = [("dataset", "files", "period", "size", "what")]
    for name, ds in DATASETS.items():
        entries = [entry for entry in held.values() if entry.dataset == name]
        period = (f"{min(e.first_day for e in entries)} to {max(e.last_day for e in entries)}" if entries else "-")
        rows.append((name, str(len(entries)), period, _size(sum(e.bytes for e in entries)) if entries else "-",
                     ds.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    if args.files:
        print()
        for entry in sorted(held.values(), key=lambda e: (e.dataset, e.first_day, e.path)):
            print(f"{entry.path}  {entry.first_day} to {entry.last_day}  {_size(entry.bytes)}  "
                  f"sha256 {entry.sha256}  fetched {entry.fetched_at}  {entry.url}")
    return 0
