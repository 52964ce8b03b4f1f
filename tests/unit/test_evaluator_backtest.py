"""The evaluator scores a trained model's forecasts exactly as the trainer's walk-forward backtest does.

A small model is trained on real GOES-15 history (June 2011 to January 2012) and backtested over February and
early March 2012 by the trainer's own code. The backtest's forecasts, as the predictor would publish them,
then go through the evaluator with the flux and flares of the same period: every binary score per target
class equals the backtest's to floating-point precision.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from services.evaluator.core import Evaluator
from services.evaluator.metrics import MetricBook, Reference
from services.evaluator.store import reference_from_evidence
from services.trainer.backtest import run_backtest
from services.trainer.training import train
from shared import messages as m
from shared.forecast_model import ForecastModel, forecast_message
from tests.support.trainer_data import history
from tests.unit.test_trainer import small_settings

UTC = timezone.utc
TRAIN_UNTIL, BACKTEST_END = datetime(2012, 2, 1, tzinfo=UTC), datetime(2012, 3, 10, 23, tzinfo=UTC)
COMPARED = ("count", "events", "base_rate", "brier", "brier_climatology", "bss_climatology", "roc_auc", "threshold",
            "hits", "false_alarms", "misses", "correct_negatives", "precision", "recall", "f1", "tss", "hss")


@pytest.fixture(scope="module")
def backtested():
    settings = small_settings()
    data = history("2011-06-01", "2012-03-20")
    trained = train(data, settings, until=TRAIN_UNTIL)
    model = ForecastModel("v-backtested", trained.artifacts)
    result = run_backtest(model, data, settings, start=TRAIN_UNTIL, end=BACKTEST_END)
    return settings, data, trained, model, result


def flux_messages(observations: pd.DataFrame) -> list[m.FluxObserved]:
    return [
        m.FluxObserved(message_id=m.stable_id(row.satellite, row.time_tag.isoformat()),
                       event_time=row.time_tag.to_pydatetime(), satellite=row.satellite,
                       cadence_seconds=int(row.cadence_seconds), scaling_era=row.scaling_era,
                       xrsb_flux=None if np.isnan(row.xrsb_flux) else float(row.xrsb_flux), source="test")
        for row in observations.itertuples()
    ]


def flare_messages(flares: pd.DataFrame) -> list[m.FlareObserved]:
    messages = []
    for row in flares.itertuples():
        letter = ("X" if row.peak_flux >= 1e-4 else "M" if row.peak_flux >= 1e-5
                  else "C" if row.peak_flux >= 1e-6 else "B")
        floor = {"B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}[letter]
        peak = row.peak_time.to_pydatetime()
        messages.append(m.FlareObserved(
            message_id=m.stable_id(row.source, peak.isoformat()), event_time=peak, start_time=peak, peak_time=peak,
            goes_class=f"{letter}{row.peak_flux / floor:.1f}", class_letter=letter, peak_flux=float(row.peak_flux),
            scaling_era=row.scaling_era, source=row.source))
    return messages


def test_streamed_scores_of_the_backtests_forecasts_equal_the_backtest(backtested):
    settings, data, trained, model, result = backtested
    forecasts = [forecast_message(model.forecast_at(result.table, i), model.version, horizon_hours=model.horizon_hours)
                 for i in range(result.issued)]
    observations = data.observations[data.observations["time_tag"] >= pd.Timestamp(TRAIN_UNTIL - timedelta(days=2))]

    evaluator = Evaluator.for_settings(settings, MetricBook())
    evaluator.references[model.version] = Reference(
        thresholds=dict(result.thresholds), climatology={t: model.climatology(t) for t in model.targets})
    for flare in flare_messages(data.flares):
        evaluator.take_flare(flare)
    upcoming = iter(forecasts)
    next_forecast = next(upcoming, None)
    as_of = 0
    for reading in flux_messages(observations):  # the forecast of t follows the readings before t, as published
        while next_forecast is not None and next_forecast.event_time <= reading.event_time:
            evaluator.settle(evaluator.take_forecast(next_forecast))
            next_forecast = next(upcoming, None)
        settled = evaluator.settle(evaluator.take_flux(reading))
        as_of = settled.dirty.get((model.version, False), as_of)

    [cumulative] = [u for u in evaluator.metrics((model.version, False), as_of) if u.window == "all"]
    assert cumulative.scored_count == result.scorable > 800
    assert cumulative.metrics["resolved_count"] == result.issued
    for target in model.targets:
        expected = result.scores[target]
        for name in COMPARED:
            assert cumulative.metrics[f"{target}.{name}"] == pytest.approx(
                expected[name], rel=1e-12, abs=1e-15), (target, name)
        assert [row for row in cumulative.reliability if row["target"] == target] == [
            {"target": target, **row} for row in expected["reliability"]]


def test_the_registry_evidence_gives_the_thresholds_and_the_drift_baseline(backtested):
    """What the trainer records with a version (its validation and backtest evidence) is what the evaluator
    scores the version against."""
    _, _, trained, model, result = backtested
    reference = reference_from_evidence({"training": trained.validation}, result.summary())
    assert reference.thresholds == result.thresholds
    assert reference.baseline_brier == {t: result.scores[t]["brier"] for t in model.targets}
