"""Model validation: pass/fail checks of a model version's forecasts over a period, and its comparison with
the current champion on the same data.

Checks (deployment plan): the files load and their digests match the registry, no NaN in predictions,
probabilities sum to 1 (class probabilities and time-bucket distributions), survival curves non-increasing
within [0, 1], C-index above the floor, and better than the champion (mean 24-hour Brier score over the
targets, on the same forecasts' period).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from services.trainer.backtest import MIN_FLARES_FOR_VERDICT, BacktestResult, run_backtest
from services.trainer.data import History
from shared.forecast_model import ForecastModel
from shared.settings import Settings

SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def mean_brier(result: BacktestResult) -> float | None:
    values = [s["brier"] for s in result.scores.values() if s["brier"] is not None]
    return float(np.mean(values)) if values else None


def forecast_checks(model: ForecastModel, result: BacktestResult, settings: Settings) -> list[Check]:
    """Checks on the forecasts a model made over a period (`result` of `run_backtest`)."""
    table = result.table
    ok = table.sufficient
    checks: list[Check] = []
    if not ok.any():
        return [Check("predictions", False,
                      f"no forecast could be made from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}: "
                      "insufficient data at every hour")]
    arrays = [table.survival[t][ok] for t in model.targets] + [table.risk[t][ok] for t in model.targets]
    if table.class_probabilities is not None:
        arrays.append(table.class_probabilities[ok])
    bad = sum(int((~np.isfinite(a)).sum()) for a in arrays)
    checks.append(Check("no_nan", bad == 0, f"{bad} non-finite values in {int(ok.sum())} forecasts"))

    worst = 0.0
    sample = np.flatnonzero(ok)[:: max(1, int(ok.sum()) // 200)]
    for row in sample:
        forecast = model.forecast_at(table, int(row))
        for survival in forecast.survival.values():
            worst = max(worst, abs(sum(survival.probability_distribution.values()) - 1.0))
        if forecast.class_probabilities:
            worst = max(worst, abs(sum(forecast.class_probabilities.values()) - 1.0))
    if table.class_probabilities is not None:
        worst = max(worst, float(np.max(np.abs(table.class_probabilities[ok].sum(axis=1) - 1.0))))
    checks.append(Check("probabilities_sum_to_one", worst < SUM_TOLERANCE,
                        f"largest |sum - 1| = {worst:.1e} (class probabilities and time-bucket distributions)"))

    rising = 0
    outside = 0
    for target in model.targets:
        curves = table.survival[target][ok]
        rising += int((np.diff(curves, axis=1) > 1e-12).any(axis=1).sum())
        outside += int(((curves < 0) | (curves > 1)).any(axis=1).sum())
    checks.append(Check("survival_non_increasing", rising == 0 and outside == 0,
                        f"{rising} curves rise somewhere, {outside} leave [0, 1]"))

    floor = settings.thresholds.min_c_index
    indices = assessed_c_index(result)
    unassessed = [t for t in result.scores if t not in indices]
    detail = ", ".join(f">={t} {v:.3f}" for t, v in indices.items()) or "none computable"
    if unassessed:
        detail += (f"; >={', >='.join(unassessed)} not assessed: fewer than {MIN_FLARES_FOR_VERDICT} flares in the"
                   " period to rank against")
    checks.append(Check("c_index", bool(indices) and all(v > floor for v in indices.values()),
                        f"{detail} (needs > {floor})"))
    return checks


def assessed_c_index(result: BacktestResult, *, degraded: bool = False) -> dict[str, float]:
    """The C-index of each target with enough flares in the period for a ranking to mean something (of the
    degraded forecasts, with `degraded`)."""
    scores = result.degraded_scores if degraded else result.scores
    return {t: s["c_index"] for t, s in scores.items()
            if s["c_index"] is not None and s["flares"] >= MIN_FLARES_FOR_VERDICT}


def flare_history_check(
    model: ForecastModel, history: History, settings: Settings, *, start: datetime, end: datetime,
) -> tuple[Check, dict[str, float]] | None:
    """The flare-history models, which forecast when no flux is stored, judged on their own: every hour of the
    period forecast with the flux withheld, ranked against what followed (None: the version has none). Judged
    on the classes the plan's thresholds judge (`thresholds.backtest_targets`): from flare counts alone, the
    few X flares of a validation period rank no better than chance (>=X 0.41 on May-Dec 2013, while >=C and
    >=M were 0.70 and 0.73), and that must not keep every flux model from serving."""
    if not model.flare_history:
        return None
    result = run_backtest(model, history, settings, start=start, end=end, flux_withheld=True)
    assessed = assessed_c_index(result, degraded=True)
    judged = {t: v for t, v in assessed.items() if t in settings.thresholds.backtest_targets}
    floor = settings.thresholds.min_c_index
    detail = ", ".join(f">={t} {v:.3f}" + ("" if t in judged else " (not judged)") for t, v in assessed.items())
    detail = (detail or "none computable") + f" over {result.degraded} forecasts made without flux (needs > {floor})"
    return Check("flare_history_c_index", bool(judged) and all(v > floor for v in judged.values()), detail), judged


def champion_comparison(candidate: BacktestResult, champion: BacktestResult | None,
                        champion_version: str | None) -> tuple[Check, dict[str, Any] | None]:
    """The candidate against the champion on the same period: lower mean 24-hour Brier score is better."""
    if champion is None or champion_version is None:
        return Check("better_than_champion", True, "no champion yet: nothing to compare with"), None
    ours, theirs = mean_brier(candidate), mean_brier(champion)
    comparison = {"champion_version": champion_version, "metric": "brier", "candidate": ours, "champion": theirs,
                  "lower_is_better": True, "period": [candidate.start.isoformat(), candidate.end.isoformat()]}
    if ours is None or theirs is None:
        return Check("better_than_champion", False, "no scorable forecasts to compare"), comparison
    return Check("better_than_champion", ours < theirs,
                 f"mean 24-hour Brier {ours:.4f} vs champion {champion_version} {theirs:.4f}"), comparison


@dataclass(frozen=True)
class ValidationReport:
    version: str
    checks: list[Check]
    c_index: dict[str, float]
    comparison: dict[str, Any] | None
    period: tuple[datetime, datetime] | None  # None when the model was refused before forecasting
    flare_history_c_index: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def evidence(self) -> dict[str, Any]:
        """As the registry and the gatekeeper read it."""
        return {
            "checks": {c.name: c.passed for c in self.checks},
            "details": [asdict(c) for c in self.checks],
            "c_index": self.c_index,
            "flare_history_c_index": self.flare_history_c_index,
            "period": [self.period[0].isoformat(), self.period[1].isoformat()] if self.period else None,
            "passed": self.passed,
        }


def validate(
    model: ForecastModel, history: History, settings: Settings, *, start: datetime, end: datetime,
    champion: ForecastModel | None = None, loading_checks: list[Check] | None = None,
) -> ValidationReport:
    result = run_backtest(model, history, settings, start=start, end=end)
    checks = list(loading_checks or []) + forecast_checks(model, result, settings)
    champion_result = None
    if champion is not None and champion.version != model.version:
        champion_result = run_backtest(champion, history, settings, start=start, end=end)
    check, comparison = champion_comparison(result, champion_result, champion.version if champion_result else None)
    checks.append(check)
    flare_history = flare_history_check(model, history, settings, start=start, end=end)
    if flare_history:
        checks.append(flare_history[0])
    return ValidationReport(model.version, checks, assessed_c_index(result), comparison, (result.start, result.end),
                            flare_history[1] if flare_history else {})
