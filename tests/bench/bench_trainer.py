"""Benchmark (not a timed test): training time of each model on the 2010-09 to 2015-12 hourly history with
the configured sizes, and walk-forward backtest forecasts per second.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_trainer.py`). Frames are read from the
data files, so the figures are the models' and the feature function's, not the database's.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from services.trainer.backtest import run_backtest
from sklearn.ensemble import HistGradientBoostingClassifier

from services.trainer.training import fit_sigmoid_calibration, make_estimator, survival_outcomes, train, training_set
from shared.features import feature_table, hourly_issue_times
from shared.forecast_model import ForecastModel
from shared.settings import load_settings
from tests.support.trainer_data import history

pytestmark = pytest.mark.slow
UTC = timezone.utc


def test_training_time_of_each_model_and_backtest_forecasts_per_second():
    settings = load_settings()
    model = settings.model
    data = history("2010-09-01", "2016-01-01")

    started = time.perf_counter()
    prepared = training_set(data, settings, until=None)
    features_seconds = time.perf_counter() - started
    print(f"\nfeatures and targets for {len(prepared.issue_ns)} hourly issue times: {features_seconds:.1f} s")

    rows = prepared.sufficient & (prepared.all_outcomes.follow_up_hours > 0) & prepared.subsample(model.survival_subsample_hours)
    print(f"survival fits on {int(rows.sum())} issue times (every {model.survival_subsample_hours} h):")
    for target in ("C", "M", "X"):
        y = survival_outcomes(prepared.all_outcomes, target, rows)
        # gbsa (not configured by default: scikit-survival's Cox loss is quadratic in rows) once, for the record
        for name in ("coxph", "rsf", "gbsa") if target == "M" else ("coxph", "rsf"):
            started = time.perf_counter()
            make_estimator(name, model).fit(prepared.X[rows], y)
            print(f"  >={target} {name:<6} {time.perf_counter() - started:6.1f} s")

    labels = prepared.all_outcomes.largest_class_24h.astype(str)
    usable = prepared.sufficient & prepared.all_outcomes.observed_24h
    started = time.perf_counter()
    booster = HistGradientBoostingClassifier(max_iter=model.classifier_max_iter, learning_rate=model.classifier_learning_rate,
                                             max_leaf_nodes=15, min_samples_leaf=50, early_stopping=False).fit(
        prepared.X[usable], labels[usable])
    fit_sigmoid_calibration(booster, prepared.X[usable][-5000:], labels[usable][-5000:])
    print(f"classifier on {int(usable.sum())} issue times: {time.perf_counter() - started:.1f} s")

    until = datetime(2015, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    trained = train(data, settings, until=until)
    print(f"full training (all targets, both candidates, refit, classifier) to 2014-12-31: {time.perf_counter() - started:.1f} s")
    forecast_model = ForecastModel("bench", trained.artifacts)
    result = run_backtest(forecast_model, data, settings, start=until, end=datetime(2015, 12, 31, 23, tzinfo=UTC))
    print(f"backtest 2015 with scoring: {result.issued} forecasts in {result.seconds:.1f} s = {result.issued / result.seconds:.0f}/s")
    started = time.perf_counter()
    table = forecast_model.forecast_table(
        feature_table(data.observations, data.flares, hourly_issue_times(until, datetime(2015, 12, 31, 23, tzinfo=UTC)),
                      forecast_model.feature_params))
    seconds = time.perf_counter() - started
    print(f"forecasts alone (features + 3 survival models + classifier): {len(table.issued_at) / seconds:.0f}/s")
    assert result.issued == 8760
