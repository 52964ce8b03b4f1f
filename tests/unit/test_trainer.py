"""Training from real GOES-15 history (small models, a few months), what the model forecasts, and the
walk-forward backtest, without a database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from services.trainer.backtest import run_backtest, write_outputs
from services.trainer.data import History
from services.trainer.targets import Observability, observability, outcomes, persistence
from services.trainer.training import InsufficientHistory, train, training_set
from services.trainer.validation import assessed_c_index, validate
from shared.features import HOUR_NS, FeatureVector, feature_table, flare_timeline
from shared.forecast_model import ForecastModel, forecast_message
from shared.settings import load_settings
from tests.support.trainer_data import history

UTC = timezone.utc
TRAIN_FROM, TRAIN_UNTIL = "2011-06-01", datetime(2012, 2, 1, tzinfo=UTC)


def small_settings():
    """The configured settings with small models, so a training takes seconds, and two survival estimators, so
    the choice between them on the validation period is exercised (the configuration names rsf alone)."""
    settings = load_settings()
    return settings.model_copy(update={"model": settings.model.model_copy(update={
        "rsf_n_estimators": 10, "classifier_max_iter": 30, "survival_subsample_hours": 6,
        "survival_estimators": ["coxph", "rsf"]})})


@pytest.fixture(scope="module")
def data() -> History:
    return history(TRAIN_FROM, "2012-03-20")


@pytest.fixture(scope="module")
def trained(data):
    return train(data, small_settings(), until=TRAIN_UNTIL)


@pytest.fixture(scope="module")
def model(trained) -> ForecastModel:
    return ForecastModel("v-test", trained.artifacts)


def ns(text: str) -> int:
    return pd.Timestamp(text, tz="UTC").value


# ---- targets -------------------------------------------------------------------------------------------------


def test_time_to_the_first_flare_is_censored_at_gaps_the_end_of_data_and_the_horizon():
    flares = pd.DataFrame({
        "peak_time": pd.to_datetime(["2012-01-01 02:00", "2012-01-02 06:00", "2012-01-20 00:00"], utc=True),
        "peak_flux": [2e-6, 5e-5, 2e-4], "scaling_era": "swpc_scaled", "source": "catalog",
    })
    timeline = flare_timeline(flares)
    # flux complete from Jan 1 to Jan 25 except a gap from Jan 1 10:00 to 16:00
    record = Observability(ns("2012-01-01"), ns("2012-01-25"), np.array([ns("2012-01-01 10:00")]),
                           np.array([ns("2012-01-01 16:00")]))
    issue = np.array([ns("2012-01-01 00:00"), ns("2012-01-01 17:00"), ns("2012-01-10 00:00"), ns("2012-01-24 00:00")])
    out = outcomes(issue, timeline, record, horizon_hours=168)

    assert out.event["C"][0] and out.time_hours["C"][0] == 2.0            # a C2 two hours later
    assert not out.event["M"][0] and out.time_hours["M"][0] == 10.0      # the M5 comes after a gap: censored at it
    assert out.event["M"][1] and out.time_hours["M"][1] == 13.0          # issued after the gap, the M5 is seen
    assert out.event["C"][1] and out.time_hours["C"][1] == 13.0          # "at least C" includes the M5
    assert not out.event["X"][2] and out.time_hours["X"][2] == 168.0     # the X2 is 240 h away: horizon
    assert not out.event["X"][3] and out.time_hours["X"][3] == 24.0      # the data end 24 h later
    assert list(out.observed_24h) == [False, True, True, True]
    assert list(out.largest_class_24h[1:]) == [2, 0, 0]  # M within 24 h of the second; none later
    assert list(persistence(issue, timeline, "C")) == [0.0, 1.0, 0.0, 0.0]


def test_observability_cuts_out_gaps_of_the_configured_length_only():
    observations = history("2012-06-01", "2012-06-04").observations
    observations.loc[observations["time_tag"].between(pd.Timestamp("2012-06-02 03:00", tz="UTC"),
                                                      pd.Timestamp("2012-06-02 05:00", tz="UTC")), "xrsb_flux"] = np.nan
    observations.loc[observations["time_tag"].between(pd.Timestamp("2012-06-02 12:00", tz="UTC"),
                                                      pd.Timestamp("2012-06-02 16:00", tz="UTC")), "xrsb_flux"] = np.nan
    record = observability(observations, censor_gap_hours=3)
    assert [pd.Timestamp(v, tz="UTC") for v in record.gap_start_ns] == [pd.Timestamp("2012-06-02 12:00", tz="UTC")]
    follow_up = record.follow_up_hours(np.array([ns("2012-06-02 01:00"), ns("2012-06-02 13:00")]))
    assert list(follow_up) == [11.0, 0.0]


# ---- training --------------------------------------------------------------------------------------------------


def test_too_short_a_history_is_refused_with_a_clear_message():
    with pytest.raises(InsufficientHistory) as refused:
        train(history("2012-01-01", "2012-04-01"), small_settings())
    message = str(refused.value)
    assert "refusing to train: only 91 days of X-ray flux history" in message
    assert "at least 182 days" in message and "flare ingest" in message


def test_training_uses_only_data_up_to_the_cut_off_and_splits_chronologically(data, trained):
    settings = small_settings()
    window_start, window_end = trained.data_window
    assert window_end == TRAIN_UNTIL and window_start < TRAIN_UNTIL
    assert window_start + (window_end - window_start) * 0.75 < trained.split_at < window_end
    prepared = training_set(data, settings, TRAIN_UNTIL)
    assert prepared.issue_ns.max() < pd.Timestamp(TRAIN_UNTIL).value
    # targets of the earlier part never look past the split; the rest never past the cut-off
    before = prepared.issue_ns < prepared.split_ns
    assert np.all(prepared.issue_ns[before] + prepared.fit_outcomes.follow_up_hours[before] * HOUR_NS
                  <= prepared.split_ns)
    assert np.all(prepared.issue_ns + prepared.all_outcomes.follow_up_hours * HOUR_NS
                  <= pd.Timestamp(TRAIN_UNTIL).value)
    for target in ("C", "M", "X"):
        chosen = trained.validation[target]
        assert chosen["chosen"] in ("coxph", "rsf") and set(chosen["candidates"]) == {"coxph", "rsf"}
        assert trained.artifacts[f"survival_{target}"]["estimator_name"] == chosen["chosen"]


def test_a_forecast_has_consistent_curves_buckets_and_class_probabilities(data, model):
    t = datetime(2012, 3, 6, 12, tzinfo=UTC)
    features = feature_table(data.observations, data.flares, [t], model.feature_params)
    forecast = model.forecast(FeatureVector.from_table(features))
    assert forecast.status == "ok" and set(forecast.survival) == {"C", "M", "X"}
    for target, survival in forecast.survival.items():
        curve = np.array(survival.survival_probabilities)
        assert np.all(np.diff(curve) <= 0) and np.all((curve >= 0) & (curve <= 1))
        assert sum(survival.probability_distribution.values()) == pytest.approx(1.0, abs=1e-12)
        assert list(survival.probability_distribution)[-1] == "none_within_168h"
        s24 = curve[survival.time_points_hours.index(24.0)]
        assert survival.probability_within_24h == pytest.approx(1 - s24)
    p = {c: forecast.survival[c].probability_within_24h for c in "CMX"}
    assert p["C"] >= p["M"] >= p["X"] > 0  # an active region the day before the X5.4
    assert sum(forecast.class_probabilities.values()) == pytest.approx(1.0, abs=1e-12)
    assert set(forecast.class_probabilities) == {"none", "C", "M", "X"}
    message = forecast_message(forecast, model.version, horizon_hours=model.horizon_hours)
    assert message.event_time == t and message.model_version == "v-test"
    assert message.predicted_class in ("none", "C", "M", "X")
    # one instant or many at once: the same numbers
    table = model.forecast_table(feature_table(data.observations, data.flares, [t - timedelta(hours=1), t],
                                               model.feature_params))
    assert model.forecast_at(table, 1) == forecast


def test_a_forecast_at_t_is_unchanged_when_everything_after_t_is_deleted(data, model):
    t = datetime(2012, 3, 7, 0, tzinfo=UTC)  # 24 minutes before the X5.4 peak
    full = feature_table(data.observations, data.flares, [t], model.feature_params)
    observations = data.observations[data.observations["time_tag"] <= t]
    flares = data.flares[data.flares["peak_time"] <= t]
    truncated = feature_table(observations, flares, [t], model.feature_params)
    before, after = model.forecast_table(full), model.forecast_table(truncated)
    assert model.forecast_at(before, 0) == model.forecast_at(after, 0)
    assert model.forecast_at(before, 0).status == "ok"


def test_stale_flux_gives_a_degraded_forecast_and_nothing_at_all_gives_insufficient_data(data, model):
    t = datetime(2012, 3, 7, 0, tzinfo=UTC)
    stale = data.observations[data.observations["time_tag"] < t - timedelta(hours=6)]
    forecast = model.forecast_at(model.forecast_table(feature_table(stale, data.flares, [t], model.feature_params)), 0)
    assert forecast.status == "ok" and forecast.degraded
    assert forecast.reason == "degraded: latest flux is older than 180 minutes; forecast from the flare history alone"
    assert set(forecast.survival) == {"C", "M", "X"} and sum(forecast.class_probabilities.values()) == pytest.approx(1)
    message = forecast_message(forecast, model.version, horizon_hours=168)
    assert message.degraded and message.status == "ok" and message.reason == forecast.reason
    # neither flux nor a flare in the lookbacks: no forecast, and no numbers
    empty = feature_table(data.observations.iloc[:0], data.flares.iloc[:0], [t], model.feature_params)
    nothing = model.forecast_at(model.forecast_table(empty), 0)
    assert nothing.status == "insufficient_data" and "no XRS-B flux" in nothing.reason and not nothing.degraded
    assert nothing.survival == {} and nothing.class_probabilities == {}
    message = forecast_message(nothing, model.version, horizon_hours=168)
    assert message.status == "insufficient_data" and not message.degraded and message.reason == nothing.reason


# ---- backtest ----------------------------------------------------------------------------------------------------


def test_backtest_scores_every_hour_after_the_cut_off_and_writes_report_and_forecasts(data, model, tmp_path):
    settings = small_settings()
    result = run_backtest(model, data, settings, start=TRAIN_UNTIL, end=datetime(2012, 3, 10, 23, tzinfo=UTC))
    assert result.issued == 39 * 24 + 24 - 24  # every hour from Feb 1 00:00 to Mar 10 23:00
    report, forecasts = write_outputs(result, settings, tmp_path)
    text = report.read_text()
    for needle in (">= C within 24 h", ">= M within 24 h", ">= X within 24 h", "Brier skill", "vs climatology",
                   "vs persistence", "ROC AUC", "precision", "recall", "F1", "TSS", "HSS", "reliability",
                   "C-index", "integrated Brier", "deployment plan", "overall against the deployment plan"):
        assert needle in text, needle
    frame = pd.read_csv(forecasts)
    assert len(frame) == result.issued
    for column in ("issued_at", "model_version", "p_ge_c_24h", "p_ge_m_24h", "p_ge_x_24h",
                   "observed_ge_c_24h", "observed_ge_m_24h", "observed_ge_x_24h", "observed_class_24h"):
        assert column in frame.columns, column
    assert frame["issued_at"].iloc[0] == "2012-02-01T00:00:00Z"
    assert (pd.to_datetime(frame["issued_at"]).dt.minute == 0).all()
    # the X5.4 of 2012-03-07 00:24 is an observed >=X outcome for the forecasts of the day before it
    day_before = frame[frame["issued_at"] == "2012-03-06T06:00:00Z"].iloc[0]
    assert day_before["observed_ge_x_24h"] == 1 and day_before["observed_class_24h"] == "X"
    scored = frame[frame["scorable"]]
    assert result.scores["C"]["count"] == len(scored)
    assert result.scores["C"]["brier"] == pytest.approx(
        np.mean((scored["p_ge_c_24h"] - scored["observed_ge_c_24h"]) ** 2))


def test_validation_judges_the_flare_history_models_on_forecasts_made_with_the_flux_withheld(data, model):
    settings = small_settings()
    period = dict(start=TRAIN_UNTIL, end=datetime(2012, 3, 10, 23, tzinfo=UTC))
    withheld = run_backtest(model, data, settings, flux_withheld=True, **period)
    # every hour is the flare-history models' (the flare list covers the lookbacks), scored on what the flux saw
    assert withheld.degraded == withheld.issued and withheld.scorable == 0
    assert withheld.degraded_scores["C"]["count"] > 0 and withheld.degraded_scores["C"]["flares"] >= 5
    with_flux = run_backtest(model, data, settings, **period)
    assert with_flux.degraded == 0
    assert withheld.degraded_scores["C"]["c_index"] != with_flux.scores["C"]["c_index"]

    report = validate(model, data, settings, **period)
    [check] = [c for c in report.checks if c.name == "flare_history_c_index"]
    judged = {t: v for t, v in assessed_c_index(withheld, degraded=True).items()
              if t in settings.thresholds.backtest_targets}
    assert report.flare_history_c_index == judged and set(judged) <= {"C", "M"} and judged
    assert check.passed == all(v > settings.thresholds.min_c_index for v in report.flare_history_c_index.values())
    assert report.evidence()["flare_history_c_index"] == report.flare_history_c_index
    # a floor the history models cannot reach fails the check, whatever the flux models score
    strict = settings.model_copy(update={"thresholds": settings.thresholds.model_copy(update={"min_c_index": 0.99})})
    [failed] = [c for c in validate(model, data, strict, **period).checks if c.name == "flare_history_c_index"]
    assert not failed.passed and "without flux" in failed.detail
