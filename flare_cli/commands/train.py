"""`flare train`, `flare train-survival`, `flare validate-model` and `flare backtest`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

from tqdm import tqdm

from flare_cli import context
from flare_cli.commands.ingest import parse_when, parse_when_end
from services.trainer.backtest import write_outputs
from services.trainer.pipeline import (
    NotRegistered, RegisteredVersion, backtest_registered, pipeline_steps, train_and_register, validate_registered,
)
from services.trainer.data import load_history
from services.trainer.training import TrainingError, train, training_steps
from shared.db import connect, migrate
from shared.features import TARGET_CLASSES
from shared.forecast_model import DigestMismatch, ModelFileError
from shared.paths import project_root


def register(sub: argparse._SubParsersAction) -> None:
    until_help = "train on data up to this date (whole day, UTC) or time; default: all stored data"
    train = sub.add_parser(
        "train", help="train the forecast model (survival models for C, M, X and the class pipeline) and register it",
        description="Train on the stored history up to --until, compare a Cox model and a tree ensemble per class "
                    "on a chronological validation period, validate, backtest and register a candidate.",
    )
    train.add_argument("--until", type=parse_when_end, help=until_help)
    train.set_defaults(handler=cmd_train)

    survival = sub.add_parser("train-survival", help="train the survival model of one flare class")
    survival.add_argument("--target-class", choices=TARGET_CLASSES, required=True,
                          help="time to the next flare of at least this class")
    survival.add_argument("--until", type=parse_when_end, help=until_help)
    survival.add_argument("--save-model", nargs="?", const="", default=None, metavar="PATH",
                          help="save and register the model (in PATH, a folder, or in the model folder)")
    survival.set_defaults(handler=cmd_train_survival)

    validate = sub.add_parser("validate-model", help="pass/fail checks of a registered model file or version")
    validate.add_argument("model", metavar="PATH", help="a model file under models/ or a version id")
    validate.add_argument("--from", dest="start", type=parse_when, help="period start (default: 90 days before --to)")
    validate.add_argument("--to", dest="end", type=parse_when_end, help="period end (default: end of stored data)")
    validate.set_defaults(handler=cmd_validate_model)

    backtest = sub.add_parser("backtest", help="walk-forward backtest of a registered model over stored history")
    backtest.add_argument("--model", required=True, metavar="PATH", help="a model file under models/ or a version id")
    backtest.add_argument("--from", dest="start", type=parse_when,
                          help="first issue time (default: the end of the model's training data)")
    backtest.add_argument("--to", dest="end", type=parse_when_end, help="last day (default: end of stored data)")
    backtest.add_argument("--out", type=Path, default=None, help="folder for the report and forecasts.csv (default: data/)")
    backtest.set_defaults(handler=cmd_backtest)


def _last_instant(end: datetime | None) -> datetime | None:
    """`--to` is an exclusive bound; the walk-forward's last issue time is just before it."""
    return end - timedelta(microseconds=1) if end is not None else None


def _with_database(work: Callable[[Any], Awaitable[int]]) -> int:
    endpoints = context.endpoints(start=True)

    async def run() -> int:
        conn = await connect(endpoints.database_url)
        try:
            await migrate(conn)
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except (TrainingError, NotRegistered, DigestMismatch, ModelFileError, ValueError) as exc:
        print(f"flare: {exc}", file=sys.stderr)
        return 1


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _print_registered(registered: RegisteredVersion) -> None:
    evidence = registered.evidence
    print(f"\nregistered {registered.version} ({registered.kind}, candidate)")
    print(f"data window  {evidence['data_window'][0]} to {evidence['data_window'][1]}; validation from {evidence['split_at']}")
    for name, path in sorted(registered.artifacts.items()):
        print(f"  {name:<16} {path}  sha256 {registered.digests[name][:12]}...")
    for target, info in evidence["training"].items():
        if target == "classifier":
            print(f"classifier   fit on {info['fit_rows']} hours, calibrated on {info['calibration_rows']}")
            continue
        candidates = ", ".join(f"{name} IBS {_fmt(c['integrated_brier'], 4)} C-index {_fmt(c['c_index'])}"
                               for name, c in info["candidates"].items())
        print(f">={target:<11} chose {info['chosen']} ({candidates}); threshold {info['threshold']:.2f}")
    print("validation   " + ", ".join(f"{n} {'pass' if ok else 'FAIL'}" for n, ok in evidence["validation"]["checks"].items()))
    backtest = registered.holdout_backtest
    print(f"holdout backtest {backtest.start:%Y-%m-%d} to {backtest.end:%Y-%m-%d} (models fit before it):")
    for target, s in backtest.scores.items():
        print(f"  >={target}: Brier {_fmt(s['brier'], 4)}, BSS vs climatology {_fmt(s['bss_climatology'])}, "
              f"vs persistence {_fmt(s['bss_persistence'])}, F1 {_fmt(s['f1'])}, precision {_fmt(s['precision'])}")


def _train(args: argparse.Namespace, targets: tuple[str, ...], with_classifier: bool, save_to: Path | None) -> int:
    settings = context.settings()
    steps = pipeline_steps(targets, settings.model.survival_estimators, with_classifier)

    async def work(conn) -> int:
        with tqdm(total=steps, unit="step", desc="training", file=sys.stderr) as bar:
            registered = await train_and_register(
                conn, settings, until=args.until, actor="cli", reason=f"flare {args.command}",
                targets=targets, with_classifier=with_classifier, save_to=save_to, progress=bar)
        _print_registered(registered)
        return 0

    return _with_database(work)


def cmd_train(args: argparse.Namespace) -> int:
    return _train(args, TARGET_CLASSES, True, None)


def cmd_train_survival(args: argparse.Namespace) -> int:
    if args.save_model is None:
        return _evaluate_only(args)
    return _train(args, (args.target_class,), False, Path(args.save_model) if args.save_model else None)


def _evaluate_only(args: argparse.Namespace) -> int:
    """train-survival without --save-model: fit and report the comparison; nothing is written."""
    settings = context.settings()
    steps = training_steps((args.target_class,), settings.model.survival_estimators, False)

    async def work(conn) -> int:
        history = await load_history(conn, until=args.until)
        with tqdm(total=steps, unit="step", desc="training", file=sys.stderr) as bar:
            result = await asyncio.to_thread(
                train, history, settings, until=args.until, targets=(args.target_class,), with_classifier=False,
                progress=bar)
        info = result.validation[args.target_class]
        print(f">={args.target_class}: data {result.data_window[0]:%Y-%m-%d} to {result.data_window[1]:%Y-%m-%d}, "
              f"validation from {result.split_at:%Y-%m-%d}")
        for name, c in info["candidates"].items():
            print(f"  {name:<6} C-index {_fmt(c['c_index'])}  integrated Brier {_fmt(c['integrated_brier'], 4)}  "
                  f"24-h Brier {_fmt(c['brier_24h'], 4)}")
        print(f"  chose {info['chosen']} ({info['criterion']}); not saved: add --save-model to keep it")
        return 0

    return _with_database(work)


def cmd_validate_model(args: argparse.Namespace) -> int:
    settings = context.settings()

    async def work(conn) -> int:
        report = await validate_registered(conn, settings, args.model, start=args.start, end=_last_instant(args.end))
        if report.period:
            print(f"model {report.version}; forecasts from {report.period[0]:%Y-%m-%d %H:%M} to {report.period[1]:%Y-%m-%d %H:%M} UTC")
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            print(f"{'PASS' if check.passed else 'FAIL'}  {check.name:<{width}}  {check.detail}")
        failed = [c.name for c in report.checks if not c.passed]
        print(f"\n{len(report.checks) - len(failed)} passed, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0

    return _with_database(work)


def cmd_backtest(args: argparse.Namespace) -> int:
    settings = context.settings()
    # the deployment plan's `data/backtest_report.txt`, in the project (the reference data folder is read-only)
    out_dir = args.out or project_root() / "data"

    async def work(conn) -> int:
        result = await backtest_registered(conn, settings, args.model, start=args.start, end=_last_instant(args.end))
        report, forecasts = write_outputs(result, settings, out_dir)
        print(report.read_text(), end="")
        print(f"\n{result.issued} forecasts in {result.seconds:.1f} s ({result.issued / max(result.seconds, 1e-9):.0f}/s)")
        print(f"report    {report}\nforecasts {forecasts}")
        return 0

    return _with_database(work)
