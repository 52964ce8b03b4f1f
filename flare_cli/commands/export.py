"""`flare export --format ccmc`: logged forecasts in the CCMC Flare Scoreboard's JSON submission format."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flare_cli import context
from flare_cli.commands.ingest import parse_when, parse_when_end
from services.predictor.ccmc import MODES


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="logged forecasts in a community exchange format (CCMC Flare Scoreboard JSON)",
        description="Reads the predictor's prediction log (read only): the champion's forecasts with status ok, "
                    "one submission per issue time (full-disk probabilities of >=C1, >=M1, >=X1 within 24 h). "
                    "Degraded forecasts (no flux; the flare-history model's) are submitted as the model "
                    "FlarePlusHist. With --out, one file per forecast named "
                    "<model>.<window start>.<issue time>.json; "
                    "otherwise one JSON document per line on stdout. Format and version: docs/ccmc/README.md.",
    )
    export.add_argument("--format", choices=["ccmc"], default="ccmc", help="the exchange format (default ccmc)")
    export.add_argument("--from", dest="start", type=parse_when, help="first issue time (default: the first logged)")
    export.add_argument("--to", dest="end", type=parse_when_end, help="issue times before the end of this day/time")
    export.add_argument("--mode", choices=MODES, default="forecast",
                        help="the submission's mode: forecast for live forecasts, historical for a replay's")
    export.add_argument("--without-degraded", action="store_true",
                        help="leave out the degraded forecasts (issued from the flare history alone, without flux)")
    export.add_argument("--out", type=Path, default=None, help="a folder for one file per forecast")
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import asyncio


    from services.predictor import ccmc
    from shared.db import connect

    if args.start and args.end and args.start >= args.end:
        print(f"flare: --from {args.start:%Y-%m-%d %H:%M} is not before --to {args.end:%Y-%m-%d %H:%M}",
              file=sys.stderr)
        return 2
    endpoints = context.endpoints(start=False)

    async def read() -> list:
        conn = await connect(endpoints.database_url)
        try:
            return await ccmc.logged_forecasts(conn, args.start, args.end, degraded=not args.without_degraded)
        finally:
            await conn.close()

    documents = [ccmc.submission(row, mode=args.mode) for row in asyncio.run(read())]
    if args.out is not None:
        written = ccmc.write_files(documents, args.out)
        print(f"{len(written)} forecast(s) written to {args.out}", file=sys.stderr)
    else:
        for document in documents:
            print(json.dumps(document, separators=(",", ":")))
        print(f"{len(documents)} forecast(s)", file=sys.stderr)
    return 0
