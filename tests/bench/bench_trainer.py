"""Benchmark (not a timed test): training time of each model on the GOES-15 hourly history (2010-09 to
2014-12) with the configured sizes, each beside the simplest fit on the same rows (a logistic regression), full
training beside the sum of its parts timed alone, and walk-forward backtest forecasts per second beside the bare
feature + model forecast loop over the same year. Only the configured survival estimators are timed: gbsa
(scikit-survival's Cox loss is quadratic in rows) took minutes alone and is not configured.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_trainer.py`). Frames are read from the
data files, so the figures are the models' and the feature function's, not the database's.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime, timezone

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from services.trainer.backtest import run_backtest
from services.trainer.training import fit_sigmoid_calibration, make_estimator, survival_outcomes, train, training_set
from shared.features import feature_table, hourly_issue_times
from shared.forecast_model import ForecastModel
from shared.settings import load_settings
from tests.support.trainer_data import history

pytestmark = pytest.mark.slow
UTC = timezone.utc
UNTIL = datetime(2015, 1, 1, tzinfo=UTC)
BACKTEST_END = datetime(2015, 12, 31, 23, tzinfo=UTC)


def seconds_to(fit, *args) -> float:
    started = time.perf_counter()
    fit(*args)
    return time.perf_counter() - started


def simplest_fit(X: np.ndarray, labels: np.ndarray) -> float:
    """Seconds a standardised logistic regression with scikit-learn's defaults (lbfgs, at most 100 iterations)
    takes on the same rows: the floor for a fit on them. Whether it converged does not matter here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return seconds_to(make_pipeline(StandardScaler(), LogisticRegression()).fit, X, labels)


def test_training_time_of_each_model_and_backtest_forecasts_per_second(bench_figures):
    settings = load_settings()
    model = settings.model
    data = history("2010-09-01", "2016-01-01")

    started = time.perf_counter()
    prepared = training_set(data, settings, until=UNTIL)
    parts_seconds = features_seconds = time.perf_counter() - started
    bench_figures("trainer", "features and targets", features_seconds, "s",
                  note=f"{len(prepared.issue_ns):,} hourly issue times to {UNTIL:%Y-%m-%d}")

    rows = (prepared.sufficient & (prepared.all_outcomes.follow_up_hours > 0)
            & prepared.subsample(model.survival_subsample_hours))
    for target in ("C", "M", "X"):
        y = survival_outcomes(prepared.all_outcomes, target, rows)
        baseline = (f"logistic regression, >={target} rows", simplest_fit(prepared.X[rows], y["event"]))
        for name in model.survival_estimators:
            seconds = seconds_to(make_estimator(name, model).fit, prepared.X[rows], y)
            parts_seconds += seconds
            bench_figures("trainer", f"fit >={target} {name}", seconds, "s", baseline=baseline,
                          note=f"{int(rows.sum()):,} issue times (every {model.survival_subsample_hours} h)")

    labels = prepared.all_outcomes.largest_class_24h.astype(str)
    usable = prepared.sufficient & prepared.all_outcomes.observed_24h
    started = time.perf_counter()
    booster = HistGradientBoostingClassifier(max_iter=model.classifier_max_iter,
                                             learning_rate=model.classifier_learning_rate, max_leaf_nodes=15,
                                             min_samples_leaf=50, early_stopping=False).fit(
        prepared.X[usable], labels[usable])
    fit_sigmoid_calibration(booster, prepared.X[usable][-5000:], labels[usable][-5000:])
    classifier_seconds = time.perf_counter() - started
    parts_seconds += classifier_seconds
    bench_figures("trainer", "fit classifier (boosting + calibration)", classifier_seconds, "s",
                  baseline=("logistic regression, same rows", simplest_fit(prepared.X[usable], labels[usable])),
                  note=f"{int(usable.sum()):,} issue times")

    started = time.perf_counter()
    trained = train(data, settings, until=UNTIL)
    bench_figures("trainer", "full training to 2014-12-31", time.perf_counter() - started, "s",
                  baseline=("its parts timed alone, summed", parts_seconds),
                  note="all targets, both candidates on the split, refit, classifier; the parts: features once, "
                       "one fit of each configured estimator per target, the classifier")

    forecast_model = ForecastModel("bench", trained.artifacts)
    result = run_backtest(forecast_model, data, settings, start=UNTIL, end=BACKTEST_END)
    assert result.issued == 8760
    started = time.perf_counter()
    table = forecast_model.forecast_table(feature_table(data.observations, data.flares,
                                                        hourly_issue_times(UNTIL, BACKTEST_END),
                                                        forecast_model.feature_params))
    bare_seconds = time.perf_counter() - started
    assert len(table.issued_at) == result.issued
    bench_figures("trainer", "backtest 2015 with scoring", result.issued / result.seconds, "forecasts/s",
                  baseline=("features + models forecast alone", len(table.issued_at) / bare_seconds),
                  note=f"{result.issued:,} hourly forecasts in {result.seconds:.1f} s")
