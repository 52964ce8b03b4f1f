"""The deployment plan's backtest thresholds judge the targets the configuration names, with enough flares."""

from __future__ import annotations

from services.trainer.backtest import verdict
from shared.settings import ThresholdSettings, load_settings


def scores(f1: float, precision: float, brier: float, flares: int = 20, count: int = 500) -> dict:
    return {"f1": f1, "precision": precision, "brier": brier, "flares": flares, "count": count}


SKILFUL_C_WEAK_M = {"C": scores(0.9, 0.8, 0.1), "M": scores(0.39, 0.25, 0.12), "X": scores(0.0, 0.0, 0.01, flares=2)}


def test_a_weak_m_forecast_fails_the_default_gate_with_the_worst_figures_as_headline():
    result = verdict(SKILFUL_C_WEAK_M, load_settings())
    assert result["assessed"] == ["C", "M"] and not result["passed"]
    assert result["headline"] == {"f1": 0.39, "precision": 0.25, "brier": 0.12}
    assert not result["checks"]["X"]["assessed"]


def test_a_target_with_too_few_flares_is_not_judged():
    settings = load_settings(thresholds=ThresholdSettings(backtest_targets=["C", "X"]))
    result = verdict(SKILFUL_C_WEAK_M, settings)
    assert result["assessed"] == ["C"] and result["passed"]
    assert "only 2 flare(s)" in result["checks"]["X"]["reason"]


def test_a_target_without_a_forecast_from_flux_is_not_judged():
    only_degraded = {**SKILFUL_C_WEAK_M, "M": scores(None, None, None, count=0)}  # the flux withheld, or never stored
    result = verdict(only_degraded, load_settings())
    assert result["assessed"] == ["C"] and result["passed"]
    assert "no forecast from flux" in result["checks"]["M"]["reason"]


def test_judging_c_only_is_a_configuration_choice_the_verdict_states():
    settings = load_settings(thresholds=ThresholdSettings(backtest_targets=["C"]))
    result = verdict(SKILFUL_C_WEAK_M, settings)
    assert result["assessed"] == ["C"] and result["passed"]
    assert "not among thresholds.backtest_targets" in result["checks"]["M"]["reason"]


def test_the_c_index_is_judged_only_where_enough_flares_rank_it():
    from types import SimpleNamespace

    from services.trainer.validation import assessed_c_index

    result = SimpleNamespace(scores={"C": {"c_index": 0.7, "flares": 40}, "M": {"c_index": 0.6, "flares": 5},
                                     "X": {"c_index": 0.33, "flares": 1}})
    assert assessed_c_index(result) == {"C": 0.7, "M": 0.6}
