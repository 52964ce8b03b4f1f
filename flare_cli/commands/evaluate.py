"""`flare match-actuals`: resolve every logged forecast against the stored flares, as the evaluator's stream
does, and show the resulting skill per model version."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flare_cli import context

if TYPE_CHECKING:
    from shared.settings import Settings

SHOWN = ("brier", "bss_climatology", "precision", "recall", "f1", "tss", "c_index")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "match-actuals",
        help="resolve logged forecasts against the stored flux and flares (the stream's rules, in batch)",
        description="Writes, for every forecast in flare_prediction_log whose 24 h window the stored flux has "
                    "passed, the largest flare class observed, the hours to the first flare of each class, or "
                    "'unscorable' when the window had a flux gap. Safe to repeat; corrects outcomes when flares "
                    "were loaded after the stream resolved them.",
    )
    parser.add_argument("--unresolved-only", action="store_true", help="leave already resolved forecasts as they are")
    parser.set_defaults(handler=cmd_match_actuals)


def cmd_match_actuals(args: argparse.Namespace) -> int:
    import asyncio

    endpoints = context.endpoints(start=False)
    settings = context.settings()
    summary, lines = asyncio.run(_match(endpoints.database_url, settings, args.unresolved_only))
    print(f"forecasts examined   {summary.forecasts}")
    print(f"resolved             {summary.resolved} ({summary.scorable} scorable, "
          f"{summary.resolved - summary.scorable} with a flux gap)")
    print(f"outcomes changed     {summary.changed}")
    print(f"window not yet over  {summary.waiting}")
    for line in lines:
        print(line)
    return 0


async def _match(dsn: str, settings: Settings, unresolved_only: bool):
    from tqdm import tqdm

    from services.evaluator import store
    from services.evaluator.batch import match_actuals
    from services.evaluator.metrics import MetricBook, window_metrics
    from shared.db import connect

    conn = await connect(dsn)
    try:
        summary = await match_actuals(
            conn, settings, unresolved_only=unresolved_only,
            progress=lambda rows: tqdm(rows, desc="matching", unit="forecast", leave=False),
        )
        book = MetricBook(await store.resolved_forecasts(conn))
        lines = []
        for key in book.keys():
            group = book.group(key)
            reference = await store.registry_reference(conn, key[0])
            figures = window_metrics(key, group, None, group.newest_resolved_ns, reference)
            lines.append(f"\n{key[0]}{' (shadow)' if key[1] else ''}: {figures.scored_count} scored")
            for target in ("C", "M", "X"):
                values = "  ".join(f"{name} {_number(figures.metrics.get(f'{target}.{name}'))}" for name in SHOWN)
                lines.append(f"  >={target} 24h  {values}")
        return summary, lines
    finally:
        await conn.close()


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
