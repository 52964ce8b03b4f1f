"""Calibration that follows the cycle: at each retrain the survival models' hazard is rescaled to the most
recent period's 24 h outcomes, keeping every curve a survival curve."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from services.trainer.training import train
from shared.features import feature_table
from shared.forecast_model import ForecastModel, fit_hazard_recalibration, recalibrate_survival, survival_at
from shared.settings import load_settings
from tests.support.trainer_data import history


def test_the_fit_recovers_a_known_hazard_scale_and_power():
    # models whose hazards are twice the truth: the truth is 0.5 x H
    rng = np.random.default_rng(3)
    raw_hazard = rng.uniform(0.05, 2.0, 20_000)
    y = (rng.random(len(raw_hazard)) < 1.0 - np.exp(-0.5 * raw_hazard)).astype(int)
    fit = fit_hazard_recalibration(1.0 - np.exp(-raw_hazard), y)
    assert np.exp(fit["log_scale"]) == pytest.approx(0.5, rel=0.08)
    assert fit["power"] == pytest.approx(1.0, abs=0.06)


def test_recalibrated_curves_stay_survival_curves_and_keep_the_ranking():
    curves = np.array([[1.0, 0.9, 0.6, 0.2], [1.0, 0.95, 0.8, 0.7], [1.0, 1.0, 1.0, 1.0]])
    recalibrated = recalibrate_survival(curves, {"log_scale": np.log(0.5), "power": 1.3})
    assert (np.diff(recalibrated, axis=1) <= 0).all() and ((recalibrated >= 0) & (recalibrated <= 1)).all()
    np.testing.assert_allclose(recalibrated[:, 0], 1.0)
    np.testing.assert_allclose(recalibrated[2], 1.0)  # no hazard stays no hazard
    assert (np.argsort(recalibrated[:, -1]) == np.argsort(curves[:, -1])).all()
    # halving the hazard: S' = S ** 0.5 when the power is 1
    np.testing.assert_allclose(recalibrate_survival(curves, {"log_scale": np.log(0.5), "power": 1.0}), curves ** 0.5)
    assert recalibrate_survival(curves, None) is curves


def test_without_both_outcomes_there_is_nothing_to_fit():
    assert fit_hazard_recalibration(np.array([0.2, 0.4]), np.array([0, 0])) is None
    assert fit_hazard_recalibration(np.array([0.2, 0.4]), np.array([1, 1])) is None


def test_a_retrain_with_recent_recalibration_stores_it_and_forecasts_with_it():
    settings = load_settings()
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={
        "survival_estimators": ["coxph"], "recalibration": "recent_hazard"})})
    data = history("2011-06-01", "2012-03-20")
    until = datetime(2012, 2, 1, tzinfo=timezone.utc)
    result = train(data, settings, until=until, targets=("C", "M"), with_classifier=False)
    artifact = result.artifacts["survival_C"]
    assert set(artifact["recalibration"]) == {"log_scale", "power"}
    assert result.validation["C"]["recalibration"] == artifact["recalibration"]
    assert "recalibration" not in result.holdout_artifacts["survival_C"]
    model = ForecastModel("v-recalibrated", result.artifacts)
    features = feature_table(data.observations, data.flares, [datetime(2012, 2, 10, tzinfo=timezone.utc)],
                             model.feature_params)
    raw = survival_at(artifact["estimator"], features[model.feature_names].to_numpy(dtype=float), [24.0])
    expected = 1.0 - recalibrate_survival(raw, artifact["recalibration"])[0, 0]
    assert model.forecast_table(features).p_within("C", 24.0)[0] == pytest.approx(expected)


def test_a_training_window_trains_on_the_recent_days_only():
    settings = load_settings()
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={
        "survival_estimators": ["coxph"], "training_window_days": 190})})
    until = datetime(2012, 2, 1, tzinfo=timezone.utc)
    result = train(history("2011-01-01", "2012-03-20"), settings, until=until, targets=("C",), with_classifier=False)
    start, end = result.data_window
    assert (until - start).days <= 190 and end <= until
    assert result.hyperparameters["model"]["training_window_days"] == 190
