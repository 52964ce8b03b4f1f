"""Walk-forward backtest: a forecast every hour of a period from only the data available at that instant,
scored against the flares that followed, with the scores the evaluator streams (shared.scoring).

No look-ahead by construction: `feature_table` reads only hourly bins that ended by the issue time and flares
that peaked by it (a test deletes everything after `t` and gets the same forecast). The references are
climatology (the training period's base rate, stored with the model) and persistence (a flare of the class in
the previous 24 h -> 1, else 0). The decision threshold is the one chosen on training data.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.trainer.data import History
from services.trainer.targets import OUTCOME_CLASSES, observability, outcomes, persistence
from shared import scoring
from shared.features import HOUR_NS, TARGET_CLASSES, feature_table, flare_timeline, hourly_issue_times
from shared.forecast_model import ForecastModel, ForecastTable
from shared.settings import Settings

# A verdict on F1/precision from a handful of flares would be noise; fewer distinct flares -> not assessed.
MIN_FLARES_FOR_VERDICT = 5


@dataclass
class BacktestResult:
    model_version: str
    start: datetime
    end: datetime
    forecasts: pd.DataFrame
    table: ForecastTable
    scores: dict[str, dict[str, Any]]
    classifier: dict[str, Any] | None
    verdict: dict[str, Any]
    thresholds: dict[str, float]
    issued: int
    insufficient: int
    scorable: int
    degraded: int = 0
    # the degraded forecasts (flare history alone) scored apart, so they never move the model's own scores
    degraded_scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the registry and ModelTrained carry: headline numbers the gates read, and the details."""
        per_target = {t: {k: v for k, v in s.items() if k != "reliability"} for t, s in self.scores.items()}
        return {
            **self.verdict["headline"],
            "period": [self.start.isoformat(), self.end.isoformat()],
            "issued": self.issued, "insufficient": self.insufficient, "scorable": self.scorable,
            "degraded": self.degraded, "degraded_scores": self.degraded_scores,
            "passed": self.verdict["passed"], "assessed_targets": self.verdict["assessed"],
            "per_target": per_target, "classifier": self.classifier,
        }


def _distinct_flares(timeline, target: str, start_ns: int, end_ns: int) -> int:
    peaks = timeline.at_least(target)
    return int(((peaks > start_ns) & (peaks <= end_ns)).sum())


def run_backtest(
    model: ForecastModel, history: History, settings: Settings, *, start: datetime, end: datetime,
    flux_withheld: bool = False,
) -> BacktestResult:
    """Forecast every hour in [start, end] and score what is scorable. With `flux_withheld` the forecasts are
    made as if no flux were stored (the flare-history models' degraded forecasts, at every hour the flare
    history covers), and scored against what happened, which the flux still says."""
    began = time.perf_counter()
    issue_times = hourly_issue_times(start, end)
    if len(issue_times) == 0:
        raise ValueError(f"no whole hour between {start} and {end}")
    issue_ns = issue_times.asi8
    inputs = history.observations.iloc[0:0] if flux_withheld else history.observations
    features = feature_table(inputs, history.flares, issue_times, model.feature_params)
    table = model.forecast_table(features)
    timeline = flare_timeline(history.flares)
    record = observability(history.observations, settings.model.censor_gap_hours)
    outs = outcomes(issue_ns, timeline, record, model.horizon_hours)
    scorable = table.sufficient & ~table.degraded & outs.observed_24h
    degraded_scorable = table.degraded & outs.observed_24h

    frame = pd.DataFrame({
        "issued_at": issue_times.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_version": model.version,
        "status": np.where(table.sufficient, "ok", "insufficient_data"),
        "degraded": table.degraded,
    })
    scores: dict[str, dict[str, Any]] = {}
    degraded_scores: dict[str, dict[str, Any]] = {}
    for target in model.targets:
        p24 = table.p_within(target, 24.0)
        y = outs.within_24h(target)
        pers = persistence(issue_ns, timeline, target)
        key = target.lower()
        frame[f"p_ge_{key}_24h"] = np.where(table.sufficient, p24, np.nan)
        flares = _distinct_flares(timeline, target, int(issue_ns[0]), int(issue_ns[-1]) + 24 * HOUR_NS)
        if degraded_scorable.any():
            degraded_scores[target] = scoring.binary_scores(
                p24[degraded_scorable], y[degraded_scorable], threshold=model.threshold(target),
                climatology=model.climatology(target), persistence=pers[degraded_scorable])
            followed_degraded = table.degraded & (outs.follow_up_hours > 0)
            degraded_scores[target]["c_index"] = scoring.concordance_index(
                outs.event[target][followed_degraded], outs.time_hours[target][followed_degraded],
                table.risk[target][followed_degraded])
            degraded_scores[target]["flares"] = flares
        scores[target] = scoring.binary_scores(
            p24[scorable], y[scorable], threshold=model.threshold(target), climatology=model.climatology(target),
            persistence=pers[scorable],
        )
        scores[target]["reliability"] = scoring.reliability_table(p24[scorable], y[scorable])
        scores[target]["flares"] = flares
        followed = table.sufficient & ~table.degraded & (outs.follow_up_hours > 0)
        scores[target]["c_index"] = scoring.concordance_index(
            outs.event[target][followed], outs.time_hours[target][followed], table.risk[target][followed])
        grid = np.arange(1.0, model.horizon_hours, 1.0)
        X = features.loc[followed, model.feature_names].to_numpy(dtype=float)
        curves = model.survival_curves(target, X, grid) if len(X) else np.zeros((0, len(grid)))
        scores[target]["integrated_brier"] = scoring.integrated_brier(
            outs.event[target][followed], np.ceil(outs.time_hours[target][followed]), curves, grid)
    if table.class_probabilities is not None:
        for column, label in enumerate(OUTCOME_CLASSES):
            frame[f"p_class_{label.lower()}"] = np.where(table.sufficient, table.class_probabilities[:, column], np.nan)
        frame["predicted_class"] = np.where(
            table.sufficient, np.asarray(OUTCOME_CLASSES)[np.argmax(table.class_probabilities, axis=1)], "")
    frame["scorable"] = scorable
    for target in TARGET_CLASSES:
        key = target.lower()
        frame[f"observed_ge_{key}_24h"] = np.where(outs.observed_24h, outs.within_24h(target), -1)
        frame[f"persistence_ge_{key}_24h"] = persistence(issue_ns, timeline, target).astype(int)
        frame[f"hours_to_first_ge_{key}"] = np.where(outs.event[target], np.round(outs.time_hours[target], 3), np.nan)
    frame["observed_class_24h"] = np.where(outs.observed_24h, np.asarray(OUTCOME_CLASSES)[outs.largest_class_24h], "")

    classifier = None
    if table.class_probabilities is not None and scorable.any():
        observed = outs.largest_class_24h[scorable]
        probabilities = table.class_probabilities[scorable]
        onehot = np.eye(len(OUTCOME_CLASSES))[observed]
        classifier = {
            "multiclass_brier": float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1))),
            "accuracy": float(np.mean(np.argmax(probabilities, axis=1) == observed)),
            "max_sum_deviation": float(np.max(np.abs(probabilities.sum(axis=1) - 1.0))),
        }
    result = BacktestResult(
        model_version=model.version, start=issue_times[0].to_pydatetime(), end=issue_times[-1].to_pydatetime(),
        forecasts=frame, table=table, scores=scores, classifier=classifier,
        verdict=verdict(scores, settings), thresholds={t: model.threshold(t) for t in model.targets},
        issued=len(issue_ns), insufficient=int((~table.sufficient).sum()), scorable=int(scorable.sum()),
        degraded=int(table.degraded.sum()), degraded_scores=degraded_scores,
    )
    result.seconds = time.perf_counter() - began
    return result


def verdict(scores: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """Pass/fail of each target against the deployment plan (F1, precision, Brier), and the headline the gates
    read: the worst value over the assessed targets."""
    t = settings.thresholds
    checks: dict[str, dict[str, Any]] = {}
    assessed = []
    for target, s in scores.items():
        if target not in t.backtest_targets:
            checks[target] = {"assessed": False, "reason": f">= {target} is not among thresholds.backtest_targets"}
            continue
        if s["flares"] < MIN_FLARES_FOR_VERDICT:
            checks[target] = {"assessed": False, "reason": f"only {s['flares']} flare(s) >= {target} in the period"}
            continue
        if not s["count"]:  # every forecast degraded or insufficient (the flux withheld, or never stored)
            checks[target] = {"assessed": False, "reason": "no forecast from flux could be scored in the period"}
            continue
        assessed.append(target)
        checks[target] = {
            "assessed": True,
            "f1": (s["f1"] or 0.0) > t.backtest_min_f1,
            "precision": (s["precision"] or 0.0) > t.backtest_min_precision,
            "brier": s["brier"] is not None and s["brier"] < t.backtest_max_brier,
        }
        checks[target]["passed"] = all(checks[target][k] for k in ("f1", "precision", "brier"))
    headline: dict[str, float | None] = {"f1": None, "precision": None, "brier": None}
    if assessed:
        headline = {
            "f1": min(scores[c]["f1"] or 0.0 for c in assessed),
            "precision": min(scores[c]["precision"] or 0.0 for c in assessed),
            "brier": max(scores[c]["brier"] for c in assessed),
        }
    return {"checks": checks, "assessed": assessed,
            "passed": bool(assessed) and all(checks[c]["passed"] for c in assessed), "headline": headline}


# ---- report -------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def report_text(result: BacktestResult, settings: Settings) -> str:
    t = settings.thresholds
    lines = [
        "Flare+ backtest report",
        "======================",
        f"model version      {result.model_version}",
        f"period             {result.start:%Y-%m-%d %H:%M} UTC to {result.end:%Y-%m-%d %H:%M} UTC"
        " (a forecast every hour)",
        f"forecasts          {result.issued} issued, {result.degraded} degraded (flare history alone), "
        f"{result.insufficient} with insufficient data, "
        f"{result.scorable} scorable (24 h window fully observed)",
        "walk-forward       each forecast uses only flux hours ended and flares peaked by its issue time",
        "references         climatology = training-period base rate;"
        " persistence = a flare of the class in the previous 24 h",
        f"deployment plan    F1 > {t.backtest_min_f1}, precision > {t.backtest_min_precision},"
        f" Brier < {t.backtest_max_brier}",
        "",
    ]
    for target, s in result.scores.items():
        check = result.verdict["checks"][target]
        lines += [
            f">= {target} within 24 h",
            "-" * 20,
            f"  events             {s['events']} of {s['count']} scorable forecasts"
            f" (base rate {_fmt(s['base_rate'])}); "
            f"{s['flares']} distinct flares",
            f"  Brier score        {_fmt(s['brier'], 4)}   (climatology {_fmt(s['brier_climatology'], 4)}, "
            f"persistence {_fmt(s['brier_persistence'], 4)})",
            f"  Brier skill        vs climatology {_signed(s['bss_climatology'])}"
            f"   vs persistence {_signed(s['bss_persistence'])}",
            f"  beats climatology  {'yes' if (s['bss_climatology'] or 0) > 0 else 'NO'}; "
            f"beats persistence {'yes' if (s['bss_persistence'] or 0) > 0 else 'NO'}",
            f"  ROC AUC            {_fmt(s['roc_auc'])}",
            f"  threshold          {_fmt(s['threshold'], 2)}"
            " (chosen on training data: max F1 on the validation period)",
            f"  precision {_fmt(s['precision'])}  recall {_fmt(s['recall'])}  F1 {_fmt(s['f1'])}"
            f"  TSS {_fmt(s['tss'])}  "
            f"HSS {_fmt(s['hss'])}",
            f"  contingency        hits {s['hits']}, false alarms {s['false_alarms']}, misses {s['misses']}, "
            f"correct negatives {s['correct_negatives']}",
            f"  survival model     C-index {_fmt(s['c_index'])},"
            f" integrated Brier score {_fmt(s['integrated_brier'], 4)} (1-{settings.model.horizon_hours - 1} h)",
        ]
        if check["assessed"]:
            marks = ", ".join(f"{k} {'pass' if check[k] else 'FAIL'}" for k in ("f1", "precision", "brier"))
            lines.append(f"  deployment plan    {'PASS' if check['passed'] else 'FAIL'} ({marks})")
        else:
            lines.append(f"  deployment plan    not assessed: {check['reason']}"
                         f" (at least {MIN_FLARES_FOR_VERDICT} needed)")
        lines.append("  reliability        bin          n    mean p   observed")
        for row in s["reliability"]:
            if row["count"]:
                lines.append(f"                     {row['bin_lower']:.1f}-{row['bin_upper']:.1f}  {row['count']:>6}   "
                             f"{row['mean_forecast']:.3f}    {row['observed_frequency']:.3f}")
        lines.append("")
    if result.classifier:
        c = result.classifier
        lines += [
            "largest class in 24 h (classifier: none / C / M / X)",
            "-" * 20,
            f"  multi-class Brier {_fmt(c['multiclass_brier'], 4)}, accuracy {_fmt(c['accuracy'])}, "
            f"largest |sum of probabilities - 1| {c['max_sum_deviation']:.1e}",
            "",
        ]
    overall = "PASS" if result.verdict["passed"] else "FAIL"
    lines.append(f"overall against the deployment plan: {overall}"
                 f" (assessed: {', '.join(result.verdict['assessed']) or 'none'})")
    skill = [f">={c}: BSS vs climatology {_signed(s['bss_climatology'])},"
             f" vs persistence {_signed(s['bss_persistence'])}"
             for c, s in result.scores.items()]
    lines.append("skill summary: " + "; ".join(skill))
    lines += result.notes
    return "\n".join(lines) + "\n"


def write_outputs(result: BacktestResult, settings: Settings, out_dir: Path) -> tuple[Path, Path]:
    """`backtest_report.txt` and `forecasts.csv` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "backtest_report.txt"
    report.write_text(report_text(result, settings))
    forecasts = out_dir / "forecasts.csv"
    result.forecasts.to_csv(forecasts, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.6g")
    return report, forecasts
