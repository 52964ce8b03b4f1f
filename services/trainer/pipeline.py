"""Train, validate, backtest and register: what `flare train`, `flare train-survival` and the trainer service
do, and `validate-model` / `backtest` on a registered version.

Evidence recorded with a new version:
- validation: the registered files load with their digests, and their forecasts over the validation period
  have no NaN, probabilities summing to 1 and non-increasing survival curves; the C-index and the comparison
  with the champion come from the models fit before the validation period (out of sample).
- backtest: the walk-forward backtest of those same out-of-sample models over the validation period.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

import asyncpg
import pandas as pd

from services.trainer.artifacts import save_version
from services.trainer import store
from services.trainer.backtest import BacktestResult, run_backtest
from services.trainer.data import History, load_history
from services.trainer.training import (
    Progress, TrainingResult, progress_step, survival_artifact_name, train, training_steps,
)
from services.trainer.validation import (
    Check, ValidationReport, assessed_c_index, champion_comparison, flare_history_check, forecast_checks, validate,
)
from shared import registry
from shared.features import TARGET_CLASSES
from shared.forecast_model import DigestMismatch, ForecastModel, ModelFileError
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    kind: str
    artifacts: dict[str, str]
    digests: dict[str, str]
    evidence: dict[str, Any]
    training: TrainingResult
    holdout_backtest: BacktestResult


async def current_champion(conn: asyncpg.Connection, kind: str) -> tuple[ForecastModel | None, str | None]:
    """The champion of `kind`, loaded and verified; a champion that cannot be loaded is reported, not used."""
    row = await registry.champion(conn, kind)
    if row is None:
        return None, None
    try:
        return registry.load_model(row), None
    except (DigestMismatch, ModelFileError) as exc:
        log.warning("trainer.champion_unloadable", version=row["version"], error=str(exc))
        return None, f"champion {row['version']} could not be loaded: {exc}"


def training_evidence(
    model: ForecastModel, holdout: ForecastModel, history: History, settings: Settings, *, start: datetime,
    end: datetime, champion: ForecastModel | None,
) -> tuple[ValidationReport, BacktestResult]:
    """Validation and backtest evidence of a just-trained version over its validation period."""
    registered = run_backtest(model, history, settings, start=start, end=end)
    out_of_sample = run_backtest(holdout, history, settings, start=start, end=end)
    loaded = [Check("digest_matches", True, "every file's sha256 matches the registered digest"),
              Check("loads", True,
                    f"{len(model.survival)} survival model(s)" + (", classifier" if model.classifier else ""))]
    sanity = [c for c in forecast_checks(model, registered, settings) if c.name != "c_index"]
    c_index = [replace(c, detail=f"{c.detail}; out of sample: models fit before {start:%Y-%m-%d}")
               for c in forecast_checks(holdout, out_of_sample, settings) if c.name == "c_index"]
    champion_result = run_backtest(champion, history, settings, start=start, end=end) if champion else None
    comparison_check, comparison = champion_comparison(out_of_sample, champion_result,
                                                       champion.version if champion else None)
    # out of sample too: the holdout twin's flare-history models were fit before the validation period
    flare_history = flare_history_check(holdout, history, settings, start=start, end=end)
    report = ValidationReport(
        model.version, loaded + sanity + c_index + [comparison_check] + ([flare_history[0]] if flare_history else []),
        assessed_c_index(out_of_sample),
        comparison, (out_of_sample.start, out_of_sample.end), flare_history[1] if flare_history else {},
    )
    return report, out_of_sample


def pipeline_steps(targets: Sequence[str], estimators: Sequence[str], with_classifier: bool) -> int:
    """Progress steps of `train_and_register`: training's, then the evidence."""
    return training_steps(targets, estimators, with_classifier) + 1


async def train_and_register(
    conn: asyncpg.Connection, settings: Settings, *, until: datetime | None, actor: str, reason: str,
    targets: Sequence[str] = TARGET_CLASSES, with_classifier: bool = True, request_id: str | None = None,
    save_to: Path | None = None, file_name: str | None = None, progress: Progress | None = None,
) -> RegisteredVersion:
    """Train on the stored history up to `until`, save the files (in `save_to`, default the model folder;
    a single survival model as `file_name`), gather evidence and register a candidate."""
    if with_classifier and set(targets) != set(TARGET_CLASSES) or not with_classifier and len(targets) != 1:
        raise ValueError("train either the full forecast model (all targets and the classifier) or one survival model")
    kind = registry.FORECAST_KIND if with_classifier else registry.survival_kind(targets[0])
    history = await load_history(conn, until=until)
    result = await asyncio.to_thread(
        train, history, settings, until=until, targets=targets, with_classifier=with_classifier, progress=progress)
    # `file_name` names the survival model itself; what else the version holds keeps the plan's names
    file_names = {survival_artifact_name(targets[0]): file_name} if file_name and not with_classifier else None
    saved = save_version(result.artifacts, save_to or settings.model_path, file_names=file_names)
    model = ForecastModel.load(saved.version, saved.artifacts, saved.digests)
    holdout = ForecastModel(f"{saved.version}+holdout", result.holdout_artifacts)
    champion, champion_problem = await current_champion(conn, kind)
    period_end = pd.Timestamp(result.data_window[1]).floor("h").to_pydatetime() - timedelta(hours=1)
    with progress_step(progress, f"validation and holdout backtest from {result.split_at:%Y-%m-%d}"):
        report, out_of_sample = await asyncio.to_thread(
            training_evidence, model, holdout, history, settings, start=result.split_at, end=period_end,
            champion=champion)
    backtest = {**out_of_sample.summary(), "kind": "holdout",
                "note": f"walk-forward over the validation period by the same estimators fit on data before "
                        f"{result.split_at:%Y-%m-%d}; thresholds chosen on that period"}
    validation = report.evidence()
    if champion_problem:
        validation["champion_problem"] = champion_problem
    evidence = {"validation": validation, "backtest": backtest, "comparison": report.comparison, "kind": kind,
                "data_window": [result.data_window[0].isoformat(), result.data_window[1].isoformat()],
                "split_at": result.split_at.isoformat(), "training": result.validation}
    await store.register(
        conn, version=saved.version, kind=kind, artifacts=saved.artifacts, digests=saved.digests,
        data_window=result.data_window, hyperparameters=result.hyperparameters,
        validation={**validation, "training": result.validation}, backtest=backtest, actor=actor, reason=reason,
        request_id=request_id,
    )
    log.info("trainer.registered", version=saved.version, kind=kind, passed=report.passed)
    return RegisteredVersion(saved.version, kind, saved.artifacts, saved.digests, evidence, result, out_of_sample)


# ---- registered versions ------------------------------------------------------------------------------------


class NotRegistered(Exception):
    """The model file or version is not in the registry, so its digest cannot be verified: it is not loaded."""


async def resolve(conn: asyncpg.Connection, reference: str) -> dict[str, Any]:
    row = await registry.find(conn, reference)
    if row is None:
        raise NotRegistered(
            f"{reference}: not a registered model version or file; an unregistered file has no digest to verify "
            "and is never loaded (train and register it with `flare train`)"
        )
    return row


async def history_for_period(conn: asyncpg.Connection, model: ForecastModel, start: datetime, end: datetime) -> History:
    """What a walk-forward over [start, end] reads: the lookbacks before it and the follow-up after it."""
    return await load_history(
        conn, start=start - timedelta(hours=model.feature_params.flux_lookback_hours + 2),
        until=end + timedelta(hours=model.horizon_hours + 1),
        flare_lookback=model.feature_params.flare_lookback.to_pytimedelta(),
    )


async def stored_span(conn: asyncpg.Connection) -> tuple[datetime, datetime] | None:
    row = await conn.fetchrow(
        "SELECT min(time_tag) AS first, max(time_tag) AS last FROM flux_observations WHERE xrsb_flux IS NOT NULL")
    if row is None or row["first"] is None:
        return None
    return row["first"], row["last"]


async def default_period(conn: asyncpg.Connection, row: dict[str, Any], start: datetime | None, end: datetime | None,
                         *, recent_days: int | None = None) -> tuple[datetime, datetime]:
    """The period to walk through: as given; else after the model's training window (or the last
    `recent_days` of stored data), up to the end of the stored data."""
    span = await stored_span(conn)
    if span is None:
        raise ValueError("no flux is stored: ingest data first (`flare ingest PATH`)")
    last = pd.Timestamp(span[1]).floor("h").to_pydatetime()
    end = end or last
    if start is None:
        if recent_days is not None:
            start = end - timedelta(days=recent_days)
        else:
            window_end = row.get("data_window_end")
            start = window_end if window_end is not None and window_end < end else end - timedelta(days=365)
    if start >= end:
        raise ValueError(f"empty period: {start:%Y-%m-%d %H:%M} is not before {end:%Y-%m-%d %H:%M}")
    return start, end


async def backtest_registered(
    conn: asyncpg.Connection, settings: Settings, reference: str, *, start: datetime | None = None,
    end: datetime | None = None, actor: str = "cli",
) -> BacktestResult:
    row = await resolve(conn, reference)
    model = registry.load_model(row)
    start, end = await default_period(conn, row, start, end)
    history = await history_for_period(conn, model, start, end)
    result = await asyncio.to_thread(run_backtest, model, history, settings, start=start, end=end)
    await store.update_evidence(conn, model.version, backtest={**result.summary(), "kind": "walk-forward"},
                                   actor=actor, reason=f"backtest {start:%Y-%m-%d} to {end:%Y-%m-%d}")
    return result


async def validate_registered(
    conn: asyncpg.Connection, settings: Settings, reference: str, *, start: datetime | None = None,
    end: datetime | None = None, actor: str = "cli", recent_days: int = 90,
) -> ValidationReport:
    """validate-model: registration and digests first; a model that fails them is never unpickled."""
    row = await registry.find(conn, reference)
    if row is None:
        return ValidationReport(reference, [Check("registered", False, str(NotRegistered(
            f"{reference}: not a registered model version or file; without a registered digest it is not loaded")))],
            {}, None, None)
    checks = [Check("registered", True, f"version {row['version']} ({row['kind']}, {row['status']})")]
    try:
        model = registry.load_model(row)
    except DigestMismatch as exc:
        return ValidationReport(row["version"], checks + [Check("digest_matches", False, str(exc))], {}, None, None)
    except ModelFileError as exc:
        return ValidationReport(row["version"], checks + [Check("loads", False, str(exc))], {}, None, None)
    checks += [Check("digest_matches", True, f"{len(row['digests'])} file(s), sha256 as registered"),
               Check("loads", True, ", ".join(sorted(row["artifacts"])))]
    start, end = await default_period(conn, row, start, end, recent_days=recent_days)
    champion, problem = await current_champion(conn, row["kind"])
    history = await history_for_period(conn, model, start, end)
    report = await asyncio.to_thread(validate, model, history, settings, start=start, end=end, champion=champion,
                                     loading_checks=checks)
    evidence = report.evidence()
    if problem:
        evidence["champion_problem"] = problem
    if report.comparison:
        evidence["comparison"] = report.comparison
    await store.update_evidence(conn, model.version, validation={**(row.get("validation") or {}), **evidence},
                                   actor=actor, reason=f"validate-model over {start:%Y-%m-%d} to {end:%Y-%m-%d}")
    return report
