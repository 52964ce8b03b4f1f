"""`flare train`, `flare train-survival`, `flare validate-model` and `flare backtest`."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from flare_cli import context
from flare_cli.commands.ingest import parse_when, parse_when_end
from shared.classes import TARGET_CLASSES
from shared.paths import project_root

if TYPE_CHECKING:
    from services.trainer.pipeline import RegisteredVersion
    from shared import infra
    from shared.settings import Settings

def register(sub: argparse._SubParsersAction) -> None:
    until_help = "train on data up to this date (whole day, UTC) or time; default: all stored data"
    train = sub.add_parser(
        "train", help="train the forecast model (survival models for C, M, X and the class pipeline) and register it",
        description="Train on the stored history up to --until, compare a Cox model and a tree ensemble per class "
                    "on a chronological validation period, validate, backtest and register a candidate.",
    )
    train.add_argument("sources", nargs="*", metavar="DATASET|PATH",
                       help="first store these for training, as `flare ingest --backfill` does: dataset names (their "
                            "files held in the data home for --from..--until, see `flare data fetch`) or files")
    train.add_argument("--from", dest="start", type=parse_when, help="with DATASETs: the first day of theirs to store")
    train.add_argument("--until", type=parse_when_end, help=until_help)
    _verdict_wait(train)
    train.set_defaults(handler=cmd_train)

    survival = sub.add_parser("train-survival", help="train the survival model of one flare class")
    survival.add_argument("--target-class", choices=TARGET_CLASSES, required=True,
                          help="time to the next flare of at least this class")
    survival.add_argument("--until", type=parse_when_end, help=until_help)
    survival.add_argument("--save-model", nargs="?", const="", default=None, metavar="PATH",
                          help="save and register the model as survival_model_<class>_class_<YYYYMMDD>.joblib in "
                               "the model folder, or as PATH (a .joblib file name; in the model folder if its "
                               "folder does not exist here, like the plan's /app/models) or in PATH (a folder); "
                               "the gatekeeper judges it")
    survival.add_argument("--detect-flares", action="store_true",
                          help="first run NOAA's flare detection over the stored 1-minute flux (the ingestor's "
                               "detector) and store the flares not yet known")
    _verdict_wait(survival)
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
    backtest.add_argument("--out", type=Path, default=None,
                          help="folder for the report and forecasts.csv (default: data/)")
    backtest.set_defaults(handler=cmd_backtest)


def _verdict_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verdict-wait", type=float, default=60.0, metavar="SECONDS",
                        help="after registering, wait this long for the gatekeeper's verdict and print it "
                             "(0: do not wait; default 60)")


def _last_instant(end: datetime | None) -> datetime | None:
    """`--to` is an exclusive bound; the walk-forward's last issue time is just before it."""
    return end - timedelta(microseconds=1) if end is not None else None


def _with_database(work: Callable[[Any], Awaitable[int]], endpoints: infra.Endpoints | None = None) -> int:
    import asyncio


    from services.trainer.pipeline import NotRegistered
    from services.trainer.training import TrainingError
    from shared.db import connect, migrate
    from shared.forecast_model import DigestMismatch, ModelFileError

    endpoints = endpoints or context.endpoints(start=True)

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
    print(f"data window  {evidence['data_window'][0]} to {evidence['data_window'][1]}; "
          f"validation from {evidence['split_at']}")
    for name, path in sorted(registered.artifacts.items()):
        print(f"  {name:<16} {path}  sha256 {registered.digests[name][:12]}...")
    for target, info in evidence["training"].items():
        if target == "classifier":
            print(f"classifier   fit on {info['fit_rows']} hours, calibrated on {info['calibration_rows']}")
            continue
        if target not in TARGET_CLASSES:  # evidence of models beside the targets' own survival models
            continue
        candidates = ", ".join(f"{name} IBS {_fmt(c['integrated_brier'], 4)} C-index {_fmt(c['c_index'])}"
                               for name, c in info["candidates"].items())
        print(f">={target:<11} chose {info['chosen']} ({candidates}); threshold {info['threshold']:.2f}")
    print("validation   " + ", ".join(f"{n} {'pass' if ok else 'FAIL'}"
                                      for n, ok in evidence["validation"]["checks"].items()))
    backtest = registered.holdout_backtest
    print(f"holdout backtest {backtest.start:%Y-%m-%d} to {backtest.end:%Y-%m-%d} (models fit before it):")
    for target, s in backtest.scores.items():
        print(f"  >={target}: Brier {_fmt(s['brier'], 4)}, BSS vs climatology {_fmt(s['bss_climatology'])}, "
              f"vs persistence {_fmt(s['bss_persistence'])}, F1 {_fmt(s['f1'])}, precision {_fmt(s['precision'])}")


def _train(
    args: argparse.Namespace, targets: tuple[str, ...], with_classifier: bool, save_to: Path | None = None,
    file_name: str | None = None, detect_flares: bool = False,
) -> int:
    """Train and register a candidate, then announce it to the gatekeeper exactly as the trainer service does
    (`ModelTrained` on the lifecycle topic): the same gates judge it, and its verdict is in the history."""
    from aiokafka.errors import KafkaError
    from tqdm import tqdm

    from services.trainer.pipeline import pipeline_steps, train_and_register
    from services.trainer.service import announce, trained_announcement
    from shared.kafka import Publisher, ensure_topics
    from shared.topics import topic_registry

    settings = context.settings()
    endpoints = context.endpoints(start=True)
    steps = pipeline_steps(targets, settings.model.survival_estimators, with_classifier)
    registered_version: list[str] = []

    async def work(conn) -> int:
        if detect_flares:
            await _detect_stored_flares(settings, endpoints, args.until)
        with tqdm(total=steps, unit="step", desc="training", file=sys.stderr) as bar:
            registered = await train_and_register(
                conn, settings, until=args.until, actor="cli", reason=f"flare {args.command}",
                targets=targets, with_classifier=with_classifier, save_to=save_to, file_name=file_name, progress=bar)
        _print_registered(registered)
        message = trained_announcement(registered)
        try:
            await ensure_topics(endpoints.kafka_bootstrap_servers, topic_registry(settings).values())
            async with Publisher(endpoints.kafka_bootstrap_servers) as publisher:
                await announce(publisher, settings, message)
        except (KafkaError, OSError) as exc:
            raise ValueError(f"{registered.version} is registered but was not announced to the gatekeeper "
                             f"({type(exc).__name__}: {exc}): no gate has judged it, and it cannot be promoted "
                             "without --force") from exc
        print(f"announced  {registered.version} to the gatekeeper (ModelTrained {message.message_id} on "
              f"{settings.topics.lifecycle}); deploy it through the gates: `flare promote`, `flare approve`")
        registered_version.append(registered.version)
        return 0

    code = _with_database(work, endpoints)
    if code == 0 and args.verdict_wait > 0:
        _print_verdict(settings, registered_version[0], args.verdict_wait)
    return code


def _print_verdict(settings: Settings, version: str, wait_seconds: float) -> None:
    """The gate verdict once the gatekeeper has given it; a gatekeeper that is not running judges on its start."""
    from flare_cli.commands.models import ApiError, GatekeeperClient, default_token, default_url

    api = GatekeeperClient(default_url(settings), default_token(settings), settings.thresholds.api_timeout_seconds)
    later = f"its verdict will be in `flare history --version {version}`"
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            verdicts = api.get("/history", version=version, action="gate_verdict", limit=1)
            status = api.get(f"/models/{version}")["model"]["status"] if verdicts else None
        except ApiError as exc:
            reach = "is not running" if exc.status == 0 else f"did not answer ({exc})"
            print(f"verdict    the gatekeeper {reach}: it judges {version} when it runs (`flare up`); {later}")
            return
        if verdicts:
            verdict = verdicts[0]
            print(f"verdict    {verdict['evidence'].get('decision')}: {verdict['reason']}; {version} is {status}")
            return
        if time.monotonic() >= deadline:
            print(f"verdict    none yet after {wait_seconds:.0f} s; {later}")
            return
        time.sleep(0.5)


async def _detect_stored_flares(settings: Settings, endpoints: infra.Endpoints, until: datetime | None) -> None:
    """The plan's `--detect-flares`: the ingestor's own detection over the stored 1-minute flux."""
    from services.ingestor.pipeline import Ingestor
    from shared.db import create_pool
    from shared.kafka import Publisher

    pool = await create_pool(endpoints.database_url)
    try:
        async with Publisher(endpoints.kafka_bootstrap_servers) as publisher:
            run = await Ingestor(settings, pool, publisher).detect_stored(end=until)
    finally:
        await pool.close()
    if run.stats.status == "failed":
        raise ValueError(f"flare detection over the stored flux failed: {run.stats.error}")
    print(f"detected   {run.flares_found} flare(s) in {run.readings} stored 1-minute readings "
          f"({run.flares_new} new, stored)" + ("" if run.readings else "; no 1-minute flux is stored: "
                                               "detection needs 1-minute data (`flare ingest`)"))


def cmd_train(args: argparse.Namespace) -> int:
    if args.sources:
        stored = _store_for_training(args.sources, args.start, args.until)
        if stored != 0:
            return stored
    return _train(args, TARGET_CLASSES, True)


def _store_for_training(sources: list[Path], start: datetime | None, end: datetime | None) -> int:
    """Backfill the named datasets or files (stored, not streamed), with the ingest summary."""
    from flare_cli.commands.ingest import cmd_ingest

    return cmd_ingest(argparse.Namespace(source="files", paths=[Path(s) for s in sources], once=False, speed=None,
                                         backfill=True, satellite=None, start=start, end=end))


def cmd_train_survival(args: argparse.Namespace) -> int:
    if args.save_model is None:
        if args.detect_flares:
            print("flare train-survival: --detect-flares stores what it finds; add --save-model", file=sys.stderr)
            return 2
        return _evaluate_only(args)
    try:
        folder, file_name = _save_target(context.settings(), args.target_class, args.save_model)
    except ValueError as exc:
        print(f"flare train-survival: {exc}", file=sys.stderr)
        return 1
    return _train(args, (args.target_class,), False, folder, file_name, args.detect_flares)


def _save_target(settings: Settings, target_class: str, save_model: str) -> tuple[Path, str]:
    """Where `--save-model [PATH]` writes: the folder and the file name. A .joblib PATH whose folder does not
    exist here (the plan's container path /app/models) is saved under its name in the model folder, where
    validate-model and backtest look for it by the same PATH."""
    from services.trainer.artifacts import plan_survival_file_name

    if not save_model:
        return settings.model_path, plan_survival_file_name(target_class)
    path = Path(save_model).expanduser()
    if path.suffix != ".joblib":
        return path, plan_survival_file_name(target_class)
    folder = path.parent
    if not folder.is_dir():
        folder = settings.model_path
        print(f"note: {path.parent} does not exist here; saving {path.name} in the model folder {folder}, where "
              f"`flare validate-model {save_model}` and `flare backtest --model {save_model}` find it",
              file=sys.stderr)
    if (folder / path.name).exists():
        raise ValueError(f"{folder / path.name} exists already; a saved model is never overwritten (its digest is "
                         "registered): name another file, or give --save-model without PATH")
    return folder, path.name


def _model_reference(settings: Settings, reference: str) -> str:
    """A .joblib path that does not exist here but whose file is in the model folder (saved there by
    `train-survival --save-model PATH`) means that file."""
    path = Path(reference).expanduser()
    if path.suffix != ".joblib" or path.exists() or not (settings.model_path / path.name).exists():
        return reference
    print(f"note: {reference} does not exist here; using {settings.model_path / path.name} from the model folder",
          file=sys.stderr)
    return str(settings.model_path / path.name)


def _evaluate_only(args: argparse.Namespace) -> int:
    """train-survival without --save-model: fit and report the comparison; nothing is written."""
    import asyncio

    from tqdm import tqdm

    from services.trainer.data import load_history
    from services.trainer.training import train, training_steps

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
    from services.trainer.pipeline import validate_registered

    settings = context.settings()

    async def work(conn) -> int:
        report = await validate_registered(conn, settings, _model_reference(settings, args.model), start=args.start,
                                           end=_last_instant(args.end))
        if report.period:
            print(f"model {report.version}; "
                  f"forecasts from {report.period[0]:%Y-%m-%d %H:%M} to {report.period[1]:%Y-%m-%d %H:%M} UTC")
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            print(f"{'PASS' if check.passed else 'FAIL'}  {check.name:<{width}}  {check.detail}")
        failed = [c.name for c in report.checks if not c.passed]
        print(f"\n{len(report.checks) - len(failed)} passed, {len(failed)} failed"
              + (f": {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0

    return _with_database(work)


def cmd_backtest(args: argparse.Namespace) -> int:
    from services.trainer.backtest import write_outputs
    from services.trainer.pipeline import backtest_registered

    settings = context.settings()
    # the deployment plan's `data/backtest_report.txt`, in the project (the reference data folder is read-only)
    out_dir = args.out or project_root() / "data"

    async def work(conn) -> int:
        result = await backtest_registered(conn, settings, _model_reference(settings, args.model), start=args.start,
                                           end=_last_instant(args.end))
        report, forecasts = write_outputs(result, settings, out_dir)
        print(report.read_text(), end="")
        print(f"\n{result.issued} forecasts in {result.seconds:.1f} s "
              f"({result.issued / max(result.seconds, 1e-9):.0f}/s)")
        print(f"report    {report}\nforecasts {forecasts}")
        return 0

    return _with_database(work)
