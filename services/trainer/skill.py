"""The skill benchmark: the trainer's models scored the way the field's operational benchmark scores flare
forecasts (Leka et al. 2019, ApJS 243:36): full disk, issued daily at 00 UT, valid 24 h, events >=C1 and >=M1.

Rolling origin: for each year Y, the trainer's own `train` fits on everything known before Y-01-01 (flux
tagged and flares peaked before it) and its forecasts are issued at 00 UT on every day of Y from the same batch
features the predictor computes (`shared.features.feature_table`). Beside the model, on the same days:
- climatology: the training period's event rate (what the model stores as its climatology);
- persistence: 1 if a flare of the class peaked in the 24 h before the issue time, else 0;
- event history: a logistic regression on the counts of >=C and >=M flares in the previous 1, 3 and 27 days
  (the feature function's flare-history columns), fit on the 00 UT days before Y.

The outcome of a day is the flare list's: a flare of the class peaking in (t, t + 24 h]. The benchmark reads
the files directly (the ingestor's readers, format told by content), so it needs no running system.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from services.ingestor.readers import read_path
from services.trainer.data import History, history_from_rows
from services.trainer.targets import Observability, outcomes, persistence
from services.trainer.training import Progress, progress_step, train
from shared import scoring
from shared.features import (
    HOUR_NS, FeatureParams, feature_table, flare_history_features, flare_timeline, hourly_issue_times,
)
from shared.forecast_model import ForecastModel
from shared.settings import Settings

BENCHMARK_TARGETS = ("C", "M")
METHODS = ("model", "persistence", "climatology", "event_history")
REFERENCES = METHODS[1:]
# the bundled record the benchmark trains and scores on, relative to the settings' data_dir
DEFAULT_INPUTS = ("goes15_hourly/goes15_xrs_hourly_2010-09_2015-12.csv.gz",
                  "flare_lists/swpc_flarelist_sc24_2010_2015.csv.gz")
EVENT_HISTORY_DAYS = (1, 3, 27)
EVENT_HISTORY_CLASSES = ("c", "m")
CONTINGENCY_THRESHOLD = 0.5
BLOCK_DAYS = 27
DAY_NS = 24 * HOUR_NS


class SkillError(ValueError):
    """The benchmark cannot run on these inputs; the message says why."""


# ---- inputs ---------------------------------------------------------------------------------------------------


def default_inputs(data_dir: Path) -> list[Path]:
    paths = [data_dir / name for name in DEFAULT_INPUTS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SkillError(f"benchmark data not found: {', '.join(missing)} (set DATA_DIR or pass --data FILE...)")
    return paths


def read_history(paths: Iterable[Path]) -> History:
    """Flux readings and flares from NOAA files, read as the ingestor reads them; an unreadable file is an error."""
    flux: list[tuple] = []
    flares: list[tuple] = []
    for path in paths:
        result = read_path(Path(path))
        if result.error:
            raise SkillError(f"{path}: {result.error}")
        flux += [(r.time_tag, r.satellite, r.cadence_seconds, r.scaling_era, r.xrsa_flux, r.xrsb_flux)
                 for r in result.flux if r.xrsa_flux is not None or r.xrsb_flux is not None]
        flares += [(f.peak_time, f.peak_flux, f.scaling_era, f.source, f.satellite) for f in result.flares]
    # sorted() is stable: readings of equal times keep the order of the files
    return history_from_rows(sorted(flux, key=itemgetter(0)), sorted(flares, key=itemgetter(0)))


def merge_histories(first: History, second: History) -> History:
    observations = pd.concat([first.observations, second.observations]).sort_values("time_tag", kind="stable")
    flares = pd.concat([first.flares, second.flares]).sort_values("peak_time", kind="stable")
    return History(observations.reset_index(drop=True), flares.reset_index(drop=True))


def daily_issue_times(start: datetime, end: datetime) -> pd.DatetimeIndex:
    """00 UT of every day from `start` (rounded up to a day) to `end` (inclusive)."""
    hours = hourly_issue_times(start, end)
    return hours[hours.hour == 0]


def year_start(year: int) -> datetime:
    return pd.Timestamp(f"{year}-01-01", tz="UTC").to_pydatetime()


# ---- forecasts ------------------------------------------------------------------------------------------------


def observed_events(history: History, issue_times: pd.DatetimeIndex, target: str) -> np.ndarray:
    """1 where a flare of at least `target` in the flare list peaked in (t, t + 24 h]."""
    issue_ns = issue_times.asi8
    everything = Observability(int(issue_ns[0]), int(issue_ns[-1] + DAY_NS), np.array([], dtype=np.int64),
                               np.array([], dtype=np.int64))
    return outcomes(issue_ns, flare_timeline(history.flares), everything, 24).within_24h(target)


def event_history_params(settings: Settings) -> FeatureParams:
    return replace(FeatureParams.from_settings(settings.features), flare_count_days=EVENT_HISTORY_DAYS)


def _event_history_matrix(history: History, issue_times: pd.DatetimeIndex, params: FeatureParams) -> np.ndarray:
    table = flare_history_features(history.flares, issue_times, params)
    columns = [f"flares_ge_{c}_{d}d" for d in EVENT_HISTORY_DAYS for c in EVENT_HISTORY_CLASSES]
    return np.log1p(table[columns].to_numpy(dtype=float))


def event_history_forecasts(
    history: History, settings: Settings, cutoff: datetime, issue_times: pd.DatetimeIndex,
) -> dict[str, np.ndarray]:
    """The event-history reference: per target, a logistic regression on flare counts fit on the 00 UT days
    whose 24 h window closed by `cutoff` (from 27 days into the flux record)."""
    params = event_history_params(settings)
    known = history.until(cutoff)
    first = known.observations["time_tag"].min() + pd.Timedelta(days=max(EVENT_HISTORY_DAYS))
    train_times = daily_issue_times(first.to_pydatetime(), cutoff - timedelta(days=1))
    if len(train_times) < 2:
        raise SkillError(f"too little history before {cutoff:%Y-%m-%d} for the event-history reference")
    X_train = _event_history_matrix(known, train_times, params)
    X = _event_history_matrix(history, issue_times, params)
    out: dict[str, np.ndarray] = {}
    for target in BENCHMARK_TARGETS:
        y = observed_events(known, train_times, target)
        if 0 < y.sum() < len(y):
            out[target] = LogisticRegression(C=1.0).fit(X_train, y).predict_proba(X)[:, 1]
        else:
            out[target] = np.full(len(issue_times), float(y.mean()))
    return out


@dataclass
class PeriodForecasts:
    """One scored period (a year, or the held-out days): the forecasts of every method on its 00 UT days."""

    label: str
    issued_at: pd.DatetimeIndex
    covered: np.ndarray                       # the model issued a forecast (not insufficient data)
    observed: dict[str, np.ndarray]           # target -> 0/1
    forecasts: dict[str, dict[str, np.ndarray]]  # method -> target -> probability (NaN where not covered)
    train_until: datetime
    seconds: dict[str, float] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """One row per day: what every method forecast and what happened."""
        frame = pd.DataFrame({"period": self.label, "issued_at": self.issued_at.strftime("%Y-%m-%dT%H:%MZ"),
                              "covered": self.covered})
        for target in BENCHMARK_TARGETS:
            frame[f"observed_ge_{target.lower()}"] = self.observed[target]
            for method in METHODS:
                frame[f"{method}_ge_{target.lower()}"] = self.forecasts[method][target]
        return frame


def forecast_period(
    history: History, settings: Settings, *, label: str, train_until: datetime, issue_times: pd.DatetimeIndex,
    progress: Progress | None = None,
) -> PeriodForecasts:
    """Train on what was known at `train_until`, then forecast every issue time with every method."""
    if len(issue_times) == 0:
        raise SkillError(f"{label}: no day to score")
    if issue_times[0] < pd.Timestamp(train_until):
        raise SkillError(f"{label}: the first scored day {issue_times[0]:%Y-%m-%d} is before the training cut-off")
    with progress_step(progress, f"{label}: train on data before {train_until:%Y-%m-%d}"):
        result = train(history.until(train_until), settings, until=train_until, targets=BENCHMARK_TARGETS,
                       with_classifier=False)
        model = ForecastModel(f"skill-{label}", result.artifacts)
    with progress_step(progress, f"{label}: forecast {len(issue_times)} days"):
        features = feature_table(history.observations, history.flares, issue_times, model.feature_params)
        table = model.forecast_table(features)
        issue_ns = issue_times.asi8
        timeline = flare_timeline(history.flares)
        covered = table.sufficient.copy()
        history_p = event_history_forecasts(history, settings, train_until, issue_times)
        forecasts: dict[str, dict[str, np.ndarray]] = {method: {} for method in METHODS}
        for target in BENCHMARK_TARGETS:
            forecasts["model"][target] = np.where(covered, table.p_within(target, 24.0), np.nan)
            forecasts["persistence"][target] = persistence(issue_ns, timeline, target)
            forecasts["climatology"][target] = np.full(len(issue_ns), model.climatology(target))
            forecasts["event_history"][target] = history_p[target]
        observed = {target: observed_events(history, issue_times, target) for target in BENCHMARK_TARGETS}
    return PeriodForecasts(label, issue_times, covered, observed, forecasts, train_until)


def rolling_origin(
    history: History, settings: Settings, years: Sequence[int], progress: Progress | None = None,
) -> list[PeriodForecasts]:
    """For each year: train on everything before it, forecast each of its days."""
    return [
        forecast_period(history, settings, label=str(year), train_until=year_start(year),
                        issue_times=daily_issue_times(year_start(year), year_start(year + 1) - timedelta(days=1)),
                        progress=progress)
        for year in years
    ]


def held_out(
    training: History, scored: History, settings: Settings, *, train_until: datetime, progress: Progress | None = None,
) -> PeriodForecasts:
    """Train on `training` up to `train_until`; score the whole days the `scored` flux covers after it."""
    if scored.observations.empty:
        raise SkillError("the files to score hold no flux")
    start = max(scored.observations["time_tag"].min().floor("D").to_pydatetime(), train_until)
    # the last day whose 24 h window the scored record still covers
    end = scored.observations["time_tag"].max().to_pydatetime() - timedelta(days=1)
    issue_times = daily_issue_times(start, end)
    label = f"held-out {issue_times[0]:%Y-%m-%d}..{issue_times[-1]:%Y-%m-%d}" if len(issue_times) else "held-out"
    # each record only on its own side of the cut-off: where the two overlap, a flare would count twice
    cut = pd.Timestamp(train_until)
    after = History(scored.observations[scored.observations["time_tag"] >= cut],
                    scored.flares[scored.flares["peak_time"] > cut])
    return forecast_period(merge_histories(training.until(train_until), after), settings, label=label,
                           train_until=train_until, issue_times=issue_times, progress=progress)


# ---- scores ---------------------------------------------------------------------------------------------------


def method_scores(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    table = scoring.contingency(p, y, CONTINGENCY_THRESHOLD)
    return {
        "brier": scoring.brier_score(p, y),
        "bss": scoring.sample_climatology_bss(p, y),
        "auc": scoring.roc_auc(p, y),
        "tss": table.tss(),
        "hss": table.hss(),
        **scoring.murphy_decomposition(p, y),
        "reliability_table": scoring.reliability_table(p, y),
    }


def _nan_if_none(value: float | None) -> float:
    return np.nan if value is None else value


DIFFERENCE_STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "bss": scoring.sample_climatology_bss,
    "auc": scoring.roc_auc,
}


@dataclass
class TargetScores:
    target: str
    days: int
    covered_days: int
    events: int
    methods: dict[str, dict[str, Any]]
    differences: dict[str, dict[str, dict[str, Any]]]  # reference -> statistic -> {value, interval}


@dataclass
class PeriodScores:
    label: str
    targets: dict[str, TargetScores]


def score_days(
    label: str, days: int, covered: np.ndarray, observed: dict[str, np.ndarray],
    forecasts: dict[str, dict[str, np.ndarray]], *, resamples: int, seed: int,
) -> PeriodScores:
    """Every method scored on the days the model covered, and the model's differences from each reference with
    27-day block-bootstrap intervals (the same resampled days for every method)."""
    rows = np.flatnonzero(covered)
    indices = scoring.block_bootstrap_indices(len(rows), BLOCK_DAYS, resamples, seed) if len(rows) else None
    targets: dict[str, TargetScores] = {}
    for target in BENCHMARK_TARGETS:
        y = observed[target][rows]
        p = {method: forecasts[method][target][rows] for method in METHODS}
        methods = {method: method_scores(p[method], y) for method in METHODS}
        differences: dict[str, dict[str, dict[str, Any]]] = {}
        resampled: dict[str, dict[str, np.ndarray]] = {}
        if indices is not None:
            for name, statistic in DIFFERENCE_STATISTICS.items():
                resampled[name] = {method: np.array([_nan_if_none(statistic(p[method][i], y[i])) for i in indices])
                                   for method in METHODS}
        for reference in REFERENCES:
            differences[reference] = {}
            for name in DIFFERENCE_STATISTICS:
                model_value, reference_value = methods["model"][name], methods[reference][name]
                value = None if model_value is None or reference_value is None else model_value - reference_value
                interval = (scoring.percentile_interval(resampled[name]["model"] - resampled[name][reference])
                            if resampled else None)
                differences[reference][name] = {"value": value, "interval": interval}
        targets[target] = TargetScores(target, days, len(rows), int(y.sum()), methods, differences)
    return PeriodScores(label, targets)


def score_periods(periods: Sequence[PeriodForecasts], *, resamples: int = 1000, seed: int = 0) -> list[PeriodScores]:
    """Each period, then (with more than one) all of them pooled."""
    scored = [score_days(p.label, len(p.issued_at), p.covered, p.observed, p.forecasts, resamples=resamples, seed=seed)
              for p in periods]
    if len(periods) > 1:
        covered = np.concatenate([p.covered for p in periods])
        observed = {t: np.concatenate([p.observed[t] for p in periods]) for t in BENCHMARK_TARGETS}
        forecasts = {m: {t: np.concatenate([p.forecasts[m][t] for p in periods]) for t in BENCHMARK_TARGETS}
                     for m in METHODS}
        scored.append(score_days("pooled", len(covered), covered, observed, forecasts, resamples=resamples, seed=seed))
    return scored


def settings_note(settings: Settings) -> str:
    """The settings a benchmark result depends on, for its report."""
    model, features = settings.model, settings.features
    return (f"survival estimators {'/'.join(model.survival_estimators)} (rsf {model.rsf_n_estimators} trees), "
            f"flux windows {features.flux_windows_hours} h, flare counts {features.flare_count_days} d")
