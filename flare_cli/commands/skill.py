"""`flare skill`: the skill benchmark (rolling origin 2012-2015, or held-out files) from the data files alone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flare_cli import context
from flare_cli.commands.ingest import parse_when_end

DEFAULT_YEARS = "2012-2015"


def _years(text: str) -> list[int]:
    """`2012-2015`, `2014` or `2012,2014`."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            years = list(range(first, last + 1))
        else:
            years = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give years as 2012-2015, 2014 or 2012,2014") from None
    if not years:
        raise argparse.ArgumentTypeError(f"{text!r}: no year in that range")
    return years


def register(sub: argparse._SubParsersAction) -> None:
    skill = sub.add_parser(
        "skill", help="skill benchmark: BSS, AUC, TSS, HSS, reliability beside persistence, climatology, event history",
        description="Forecasts issued 00 UT daily, valid 24 h, full disk, >=C1 and >=M1 (Leka et al. 2019). Rolling "
                    "origin: for each year, train on everything before it and forecast it. With --score, train up "
                    "to --train-until and score the days of the given held-out files instead. Reads the data "
                    "files directly: no running system is needed. Writes skill.txt, report.html and forecasts.csv.",
    )
    skill.add_argument("--years", type=_years, default=_years(DEFAULT_YEARS),
                       help=f"years to forecast, each from models trained before it (default {DEFAULT_YEARS})")
    skill.add_argument("--data", nargs="+", type=Path, metavar="FILE",
                       help="flux and flare-list files to train on (default: the GOES-15 hourly record and the "
                            "SC24 flare list in the data folder)")
    skill.add_argument("--score", nargs="+", type=Path, metavar="FILE",
                       help="held-out flux and flare-list files (same formats) to score instead of the rolling years")
    skill.add_argument("--train-until", type=parse_when_end,
                       help="with --score: train on data before the end of this day (default 2015-12-31)")
    skill.add_argument("--resamples", type=int, default=1000, help="block-bootstrap resamples (default 1000)")
    skill.add_argument("--out", type=Path, default=None,
                       help="report folder (default: var/skill under the state folder)")
    skill.set_defaults(handler=cmd_skill)


def cmd_skill(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from services.trainer import skill as benchmark
    from services.trainer.skill_report import write_outputs

    settings = context.settings()
    if args.resamples < 1:
        print("flare: --resamples must be at least 1", file=sys.stderr)
        return 2
    if args.train_until is not None and not args.score:
        print("flare: --train-until goes with --score FILE... (the rolling years set their own cut-offs)",
              file=sys.stderr)
        return 2
    began = time.perf_counter()
    try:
        training = benchmark.read_history(args.data or benchmark.default_inputs(settings.data_dir))
        steps = 2 * (1 if args.score else len(args.years))
        with tqdm(total=steps, unit="step", file=sys.stderr) as progress:
            if args.score:
                until = args.train_until or parse_when_end("2015-12-31")
                periods = [benchmark.held_out(training, benchmark.read_history(args.score), settings,
                                              train_until=until, progress=progress)]
            else:
                periods = benchmark.rolling_origin(training, settings, args.years, progress=progress)
        scores = benchmark.score_periods(periods, resamples=args.resamples)
    except benchmark.SkillError as exc:
        print(f"flare: {exc}", file=sys.stderr)
        return 1
    out_dir = args.out or settings.state_dir / "skill"
    written = write_outputs(scores, periods, out_dir, resamples=args.resamples,
                            settings_note=benchmark.settings_note(settings))
    print(written["report"], end="")
    print(f"\n{time.perf_counter() - began:.0f} s; report {written['html']}, text {written['text']}, "
          f"daily forecasts {written['forecasts']}")
    return 0
