"""Training: survival models of the time to the next flare of at least C, M and X, and a calibrated
classifier of the largest flare class in the next 24 h, from the history up to a cut-off.

The history up to the cut-off is split chronologically: models are fit on the earlier part and compared on
the later (validation) part, where the probability threshold is also chosen; the winning estimator is then
refit on everything up to the cut-off. Targets of the earlier part are censored at the split, so nothing
the validation part holds leaks into the fit. The models fit before the split are returned too
(`holdout_artifacts`): their scores on the validation part are honest out-of-sample evidence.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from services.trainer.data import History
from services.trainer.targets import OUTCOME_CLASSES, Outcomes, observability, outcomes
from shared import scoring
from shared.features import (
    HOUR_NS, TARGET_CLASSES, FeatureParams, feature_names, feature_table, flare_feature_names, flare_timeline,
)
from shared.forecast_model import (
    CLASSIFICATION_KIND, FLARE_HISTORY_SURVIVAL_KIND, SURVIVAL_KIND, SigmoidCalibratedClassifier, bucket_edges,
    fit_hazard_recalibration, recalibrate_survival, survival_at,
)
from shared.logging import get_logger
from shared.settings import ModelSettings, Settings

log = get_logger(__name__)
CLASSIFIER_NAME = "classification"


def survival_artifact_name(target: str) -> str:
    return f"survival_{target}"


def flare_history_artifact_name(target: str) -> str:
    return f"flare_history_survival_{target}"


class TrainingError(Exception):
    """Training cannot go on; the message says why and what to do about it."""


class InsufficientHistory(TrainingError):
    pass


class Progress(Protocol):
    """What training reports progress to (a tqdm bar fits)."""

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None: ...
    def update(self, n: float = 1) -> bool | None: ...


@contextmanager
def progress_step(progress: Progress | None, label: str) -> Iterator[None]:
    if progress is not None:
        progress.set_description_str(label)
    log.info("trainer.step", step=label)
    yield
    if progress is not None:
        progress.update(1)


def training_steps(targets: Sequence[str], estimators: Sequence[str], with_classifier: bool) -> int:
    """How many steps `train` reports: features, per target each candidate and the refit, the classifier."""
    return 1 + len(targets) * (len(estimators) + 1) + (1 if with_classifier else 0)


# ---- estimators -------------------------------------------------------------------------------------------


def make_estimator(name: str, model: ModelSettings) -> Any:
    if name == "coxph":
        return Pipeline([("scale", StandardScaler()),
                         ("cox", CoxPHSurvivalAnalysis(alpha=model.coxph_alpha, ties="efron"))])
    if name == "rsf":
        return RandomSurvivalForest(
            n_estimators=model.rsf_n_estimators, min_samples_leaf=model.rsf_min_samples_leaf,
            max_depth=model.rsf_max_depth, max_samples=model.rsf_max_samples, max_features="sqrt",
            n_jobs=2, random_state=model.random_state,
        )
    if name == "gbsa":
        return GradientBoostingSurvivalAnalysis(
            loss="coxph", n_estimators=model.gbsa_n_estimators, learning_rate=model.gbsa_learning_rate,
            max_depth=3, random_state=model.random_state,
        )
    raise TrainingError(f"unknown survival estimator {name!r}: use coxph, rsf or gbsa")


def estimator_hyperparameters(name: str, model: ModelSettings) -> dict[str, Any]:
    keys = {
        "coxph": ["coxph_alpha"],
        "rsf": ["rsf_n_estimators", "rsf_min_samples_leaf", "rsf_max_depth", "rsf_max_samples"],
        "gbsa": ["gbsa_n_estimators", "gbsa_learning_rate"],
    }[name]
    return {key: getattr(model, key) for key in keys}


def _fit_quietly(estimator: Any, X: np.ndarray, y: Any) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X, y)
    for warning in {str(w.message) for w in caught}:
        log.debug("trainer.fit_warning", warning=warning[:200])
    if "n_jobs" in estimator.get_params():
        # threaded prediction sums the trees in whatever order threads finish: the last bits would differ
        # between two forecasts of the same features (stream vs REST); one thread makes them identical
        estimator.set_params(n_jobs=1)
    return estimator


def survival_outcomes(out: Outcomes, target: str, rows: np.ndarray):
    """scikit-survival targets. Times are rounded up to whole hours: bucket edges are whole hours, so
    P(a < T <= b) is unchanged, and fewer distinct times make the fits much faster."""
    return Surv.from_arrays(out.event[target][rows], np.ceil(out.time_hours[target][rows]))


# ---- the training set -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSet:
    issue_ns: np.ndarray
    features: pd.DataFrame
    X: np.ndarray
    fit_outcomes: Outcomes   # censored at the split
    all_outcomes: Outcomes   # censored at the cut-off
    split_ns: int
    start: datetime
    end: datetime

    @property
    def sufficient(self) -> np.ndarray:
        return self.features["sufficient"].to_numpy(dtype=bool)

    @property
    def before_split(self) -> np.ndarray:
        return self.issue_ns < self.split_ns

    def subsample(self, every_hours: int) -> np.ndarray:
        return (self.issue_ns // HOUR_NS) % every_hours == 0

    def flare_history_only(self, params: FeatureParams) -> "TrainingSet":
        """The same hours and outcomes with the flare-history columns as inputs, usable wherever the flare
        record covers the lookback (with or without flux): what the degraded forecasts are fit on."""
        usable = pd.DataFrame({"sufficient": self.features["flare_history"]}, index=self.features.index)
        return replace(self, features=usable, X=self.features[flare_feature_names(params)].to_numpy(dtype=float))


def _utc(ns: int) -> datetime:
    return pd.Timestamp(ns, tz="UTC").to_pydatetime()


def training_set(history: History, settings: Settings, until: datetime | None) -> TrainingSet:
    """Features and targets for every hour of the history up to `until`, refusing too short a history."""
    params = FeatureParams.from_settings(settings.features)
    model = settings.model
    known = history.until(until) if until is not None else history
    if model.training_window_days is not None and len(known.observations):
        # recency: issue times (which follow the flux record) only in the last window, so the models learn the
        # activity level of the recent cycle phase; earlier flares stay, for the flare-history lookbacks
        window_end = pd.Timestamp(until) if until is not None else known.observations["time_tag"].max()
        start = window_end - pd.Timedelta(days=model.training_window_days)
        known = History(known.observations[known.observations["time_tag"] >= start], known.flares)
    record = observability(known.observations, model.censor_gap_hours)
    if until is not None:
        record = record.with_end(int(pd.Timestamp(until).value))
    days = record.span_days
    if days < model.min_history_days:
        window = (f"from {_utc(record.start_ns):%Y-%m-%d} to {_utc(record.end_ns):%Y-%m-%d}"
                  if record.end_ns else "none")
        cutoff = f" up to {pd.Timestamp(until):%Y-%m-%d %H:%M}" if until is not None else ""
        raise InsufficientHistory(
            f"refusing to train: only {days:.0f} days of X-ray flux history{cutoff} ({window}); "
            f"training needs at least {model.min_history_days} days (about 6 months). "
            "Ingest more history (`flare ingest PATH`) or move --until later."
        )
    first_issue = record.start_ns + params.flux_lookback_hours * HOUR_NS
    issue_ns = np.arange(first_issue - first_issue % HOUR_NS + HOUR_NS, record.end_ns, HOUR_NS, dtype=np.int64)
    features = feature_table(known.observations, known.flares, pd.DatetimeIndex(issue_ns, tz="UTC"), params)
    timeline = flare_timeline(known.flares)
    span = issue_ns[-1] - issue_ns[0]
    split_ns = int(issue_ns[0] + span * (1 - model.validation_fraction))
    split_ns -= split_ns % HOUR_NS
    return TrainingSet(
        issue_ns=issue_ns,
        features=features,
        X=features[feature_names(params)].to_numpy(dtype=float),
        fit_outcomes=outcomes(issue_ns, timeline, record.with_end(split_ns), model.horizon_hours),
        all_outcomes=outcomes(issue_ns, timeline, record, model.horizon_hours),
        split_ns=split_ns,
        start=_utc(record.start_ns),
        end=_utc(record.end_ns),
    )


# ---- survival -----------------------------------------------------------------------------------------


def evaluate_survival(estimator: Any, X: np.ndarray, out: Outcomes, target: str, horizon_hours: int) -> dict[str, Any]:
    """C-index, integrated Brier score (hourly to the horizon) and the 24-hour Brier score on held-out rows."""
    grid = np.arange(1.0, horizon_hours, 1.0)
    curves = survival_at(estimator, X, grid)
    observed = out.observed_24h
    p24 = 1.0 - curves[:, 23]
    return {
        "rows": int(len(X)),
        "events": int(out.event[target].sum()),
        "c_index": scoring.concordance_index(out.event[target], out.time_hours[target], estimator.predict(X)),
        "integrated_brier": scoring.integrated_brier(out.event[target], np.ceil(out.time_hours[target]), curves, grid),
        "brier_24h": scoring.brier_score(p24[observed], out.within_24h(target)[observed]),
        "p24": p24,
    }


@dataclass(frozen=True)
class SurvivalChoice:
    target: str
    estimator_name: str
    holdout_estimator: Any
    final_estimator: Any
    threshold: float
    climatology: float
    holdout_climatology: float
    validation: dict[str, Any]
    recalibration: dict[str, float] | None = None


def train_survival(data: TrainingSet, target: str, settings: Settings,
                   progress: Progress | None = None) -> SurvivalChoice:
    model = settings.model
    usable = data.sufficient
    sub = data.subsample(model.survival_subsample_hours)
    fit_rows = usable & data.before_split & (data.fit_outcomes.follow_up_hours > 0) & sub
    val_rows = usable & ~data.before_split & (data.all_outcomes.follow_up_hours > 0)
    all_rows = usable & (data.all_outcomes.follow_up_hours > 0) & sub
    fit_events = int(data.fit_outcomes.event[target][fit_rows].sum())
    if fit_events == 0:
        raise TrainingError(
            f"no flare of class {target} or above before {_utc(data.split_ns):%Y-%m-%d} in the training data: "
            f"a model of the time to the next >={target} flare cannot be fit; train on a longer history"
        )
    val_out = data.all_outcomes.take(val_rows)
    candidates: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Any] = {}
    for name in model.survival_estimators:
        with progress_step(progress, f">={target}: fit {name} on {int(fit_rows.sum())} issue times"):
            estimator = _fit_quietly(make_estimator(name, model), data.X[fit_rows],
                                     survival_outcomes(data.fit_outcomes, target, fit_rows))
            fitted[name] = estimator
            candidates[name] = evaluate_survival(estimator, data.X[val_rows], val_out, target, model.horizon_hours)
    scored = [n for n in model.survival_estimators if candidates[n]["integrated_brier"] is not None]
    # the lower integrated Brier score on the validation period wins; without events there, the first listed
    chosen = min(scored, key=lambda n: candidates[n]["integrated_brier"]) if scored else model.survival_estimators[0]
    observed = val_out.observed_24h
    y_val = val_out.within_24h(target)[observed]
    p_val = candidates[chosen]["p24"][observed]
    # the most recent period's outcomes, forecast out of sample by the estimator fit before it, set the level
    recalibration = fit_hazard_recalibration(p_val, y_val) if model.recalibration == "recent_hazard" else None
    p_val = 1.0 - recalibrate_survival((1.0 - p_val)[:, None], recalibration)[:, 0]
    threshold = scoring.best_threshold(p_val, y_val) if y_val.sum() else 0.5
    clim_rows = usable & data.all_outcomes.observed_24h
    climatology = float(data.all_outcomes.within_24h(target)[clim_rows].mean())
    holdout_rows = clim_rows & data.before_split & data.fit_outcomes.observed_24h
    holdout_climatology = float(data.fit_outcomes.within_24h(target)[holdout_rows].mean())
    with progress_step(progress, f">={target}: refit {chosen} on {int(all_rows.sum())} issue times"):
        final = _fit_quietly(make_estimator(chosen, model), data.X[all_rows],
                             survival_outcomes(data.all_outcomes, target, all_rows))
    validation = {
        "chosen": chosen,
        "criterion": "lowest integrated Brier score on the validation period",
        "threshold": threshold,
        "threshold_rule": "maximises F1 of P(24 h) on the validation period",
        "candidates": {n: {k: v for k, v in c.items() if k != "p24"} for n, c in candidates.items()},
        "fit_rows": int(fit_rows.sum()),
        "fit_events": fit_events,
        "refit_rows": int(all_rows.sum()),
        "climatology": climatology,
        "recalibration": recalibration,
    }
    log.info("trainer.survival_chosen", target=target, chosen=chosen, **{
        f"{n}_ibs": c["integrated_brier"] for n, c in candidates.items()})
    return SurvivalChoice(target, chosen, fitted[chosen], final, threshold, climatology, holdout_climatology,
                          validation, recalibration)


# ---- classification ---------------------------------------------------------------------------------------


def fit_sigmoid_calibration(classifier: Any, X: np.ndarray, labels: np.ndarray) -> SigmoidCalibratedClassifier:
    raw = SigmoidCalibratedClassifier.logits(classifier.predict_proba(X))
    slopes, intercepts = np.ones(len(classifier.classes_)), np.zeros(len(classifier.classes_))
    for column, label in enumerate(classifier.classes_):
        y = (labels == label).astype(int)
        if 0 < y.sum() < len(y):
            platt = LogisticRegression(C=1e4).fit(raw[:, [column]], y)
            slopes[column], intercepts[column] = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    return SigmoidCalibratedClassifier(classifier, slopes, intercepts)


def train_classifier(data: TrainingSet, settings: Settings,
                     progress: Progress | None = None) -> tuple[SigmoidCalibratedClassifier, dict[str, Any]]:
    """Gradient boosting on the earlier part, sigmoid-calibrated on the validation part."""
    model = settings.model
    labels = np.asarray(OUTCOME_CLASSES, dtype=object)[data.all_outcomes.largest_class_24h]
    fit_labels = np.asarray(OUTCOME_CLASSES, dtype=object)[data.fit_outcomes.largest_class_24h]
    fit_rows = data.sufficient & data.before_split & data.fit_outcomes.observed_24h
    cal_rows = data.sufficient & ~data.before_split & data.all_outcomes.observed_24h
    with progress_step(progress,
                       f"classifier: fit on {int(fit_rows.sum())}, calibrate on {int(cal_rows.sum())} issue times"):
        booster = HistGradientBoostingClassifier(
            max_iter=model.classifier_max_iter, learning_rate=model.classifier_learning_rate, max_leaf_nodes=15,
            min_samples_leaf=50, l2_regularization=1.0, early_stopping=False, random_state=model.random_state,
        )
        booster.fit(data.X[fit_rows], fit_labels[fit_rows].astype(str))
        calibrated = fit_sigmoid_calibration(booster, data.X[cal_rows], labels[cal_rows].astype(str))
    counts = {c: int((labels[cal_rows] == c).sum()) for c in OUTCOME_CLASSES}
    return calibrated, {"fit_rows": int(fit_rows.sum()), "calibration_rows": int(cal_rows.sum()),
                        "calibration_counts": counts}


# ---- everything ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingResult:
    artifacts: dict[str, dict[str, Any]]          # the models to register: refit on all data up to the cut-off
    holdout_artifacts: dict[str, dict[str, Any]]  # the same choices fit before the split: for honest evidence
    data_window: tuple[datetime, datetime]
    split_at: datetime
    validation: dict[str, Any]
    hyperparameters: dict[str, Any]



def survival_artifacts(choice: SurvivalChoice, common: dict[str, Any], target: str,
                       model: ModelSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The artifact a version serves for `target`, and its holdout twin (the model fit before the validation
    period, whose forecasts are the version's evidence), from one `train_survival` choice."""
    base = {**common, "target_class": target, "estimator_name": choice.estimator_name, "threshold": choice.threshold,
            "hyperparameters": estimator_hyperparameters(choice.estimator_name, model)}
    # the holdout models stay raw: their recalibration was fit on the very period their evidence covers
    return ({**base, "estimator": choice.final_estimator, "climatology": choice.climatology,
             "recalibration": choice.recalibration},
            {**base, "estimator": choice.holdout_estimator, "climatology": choice.holdout_climatology})

def train(
    history: History, settings: Settings, *, until: datetime | None = None,
    targets: Sequence[str] = TARGET_CLASSES, with_classifier: bool = True, progress: Progress | None = None,
) -> TrainingResult:
    """Train the survival models of `targets` (and the classifier) on the history up to `until`."""
    params = FeatureParams.from_settings(settings.features)
    model = settings.model
    with progress_step(progress, "features and targets"):
        data = training_set(history, settings, until)
    names = feature_names(params)
    trained_at = datetime.now(timezone.utc).isoformat()
    common = {
        "feature_names": names,
        "feature_params": params.to_dict(),
        "horizon_hours": model.horizon_hours,
        "bucket_edges_hours": bucket_edges(model.time_bucket_edges_hours, model.horizon_hours),
        "data_window": [data.start.isoformat(), data.end.isoformat()],
        "split_at": _utc(data.split_ns).isoformat(),
        "trained_at": trained_at,
    }
    artifacts: dict[str, dict[str, Any]] = {}
    holdout: dict[str, dict[str, Any]] = {}
    validation: dict[str, Any] = {}
    hyperparameters: dict[str, Any] = {"features": params.to_dict(), "survival": {}, "model": {
        "horizon_hours": model.horizon_hours, "validation_fraction": model.validation_fraction,
        "censor_gap_hours": model.censor_gap_hours, "survival_subsample_hours": model.survival_subsample_hours,
        "survival_estimators": list(model.survival_estimators), "random_state": model.random_state,
        "recalibration": model.recalibration, "training_window_days": model.training_window_days}}
    for target in targets:
        choice = train_survival(data, target, settings, progress)
        name = survival_artifact_name(target)
        artifacts[name], holdout[name] = survival_artifacts(choice, {**common, "kind": SURVIVAL_KIND}, target, model)
        validation[target] = choice.validation
        hyperparameters["survival"][target] = {"estimator": choice.estimator_name,
                                               **artifacts[name]["hyperparameters"]}
    if model.flare_history_models:
        # Cox alone: a handful of counts and times since flares, and the fits double for every version
        cox_only = settings.model_copy(update={"model": model.model_copy(update={"survival_estimators": ["coxph"]})})
        history_only = data.flare_history_only(params)
        validation["flare_history"] = {}
        for target in targets:
            choice = train_survival(history_only, target, cox_only, progress)
            name = flare_history_artifact_name(target)
            artifacts[name], holdout[name] = survival_artifacts(choice, {
                **common, "feature_names": flare_feature_names(params), "kind": FLARE_HISTORY_SURVIVAL_KIND}, target,
                model)
            validation["flare_history"][target] = choice.validation
    if with_classifier:
        classifier, info = train_classifier(data, settings, progress)
        artifacts[CLASSIFIER_NAME] = holdout[CLASSIFIER_NAME] = {
            **common, "kind": CLASSIFICATION_KIND, "pipeline": classifier, "classes": list(OUTCOME_CLASSES),
        }
        validation["classifier"] = info
        hyperparameters["classifier"] = {"max_iter": model.classifier_max_iter,
                                         "learning_rate": model.classifier_learning_rate,
                                         "calibration": "sigmoid one-vs-rest on the validation period"}
    return TrainingResult(artifacts, holdout, (data.start, data.end), _utc(data.split_ns), validation, hyperparameters)
