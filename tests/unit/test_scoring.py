"""Verification scores on small cases worked out by hand, and against scikit-learn / scikit-survival."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shared import scoring


def test_brier_and_skill_against_climatology_and_persistence():
    p = [0.9, 0.2, 0.7, 0.1]
    y = [1, 0, 0, 0]
    assert scoring.brier_score(p, y) == pytest.approx((0.01 + 0.04 + 0.49 + 0.01) / 4)
    climatology = 0.25
    assert scoring.brier_score([climatology] * 4, y) == pytest.approx((0.5625 + 3 * 0.0625) / 4)
    assert scoring.brier_skill_score(p, y, [climatology] * 4) == pytest.approx(1 - 0.1375 / 0.1875)
    persistence = [1, 1, 0, 0]  # yesterday's outcome
    assert scoring.brier_skill_score(p, y, persistence) == pytest.approx(1 - 0.1375 / 0.25)
    assert scoring.brier_skill_score(y, y, y) is None  # a perfect reference leaves nothing to beat


def test_roc_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.uniform(size=500) * 0.5 + y * 0.3, 1)  # coarse: many ties
    assert scoring.roc_auc(p, y) == pytest.approx(roc_auc_score(y, p))
    assert scoring.roc_auc([0.2, 0.4], [1, 1]) is None


def test_contingency_scores_from_a_hand_table():
    # hits 3, false alarms 1, misses 2, correct negatives 4
    p = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]
    y = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    table = scoring.contingency(p, y, threshold=0.5)
    assert (table.hits, table.false_alarms, table.misses, table.correct_negatives) == (3, 1, 2, 4)
    assert table.precision() == pytest.approx(0.75)
    assert table.recall() == pytest.approx(0.6)
    assert table.f1() == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert table.tss() == pytest.approx(0.6 - 0.2)
    assert table.hss() == pytest.approx(2 * (3 * 4 - 1 * 2) / ((3 + 2) * (2 + 4) + (3 + 1) * (1 + 4)))
    scores = scoring.binary_scores(p, y, threshold=0.5, climatology=0.5, persistence=[0] * 10)
    assert scores["f1"] == table.f1() and scores["hits"] == 3 and scores["events"] == 5


def test_threshold_is_the_one_with_the_best_f1_on_the_data_given():
    p = [0.9, 0.8, 0.35, 0.3, 0.25, 0.2, 0.1]
    y = [1, 1, 1, 1, 0, 0, 0]
    chosen = scoring.best_threshold(p, y)
    assert 0.25 < chosen <= 0.3
    assert scoring.contingency(p, y, chosen).f1() == 1.0


def test_reliability_table_counts_and_frequencies():
    p = [0.05, 0.08, 0.55, 0.58, 0.95, 1.0]
    y = [0, 0, 1, 0, 1, 1]
    rows = scoring.reliability_table(p, y, bins=10)
    assert len(rows) == 10 and sum(r["count"] for r in rows) == 6
    assert rows[0]["count"] == 2 and rows[0]["observed_frequency"] == 0.0
    assert rows[5]["mean_forecast"] == pytest.approx(0.565) and rows[5]["observed_frequency"] == 0.5
    assert rows[9]["count"] == 2 and rows[9]["observed_frequency"] == 1.0
    assert rows[3]["count"] == 0 and rows[3]["mean_forecast"] is None


def test_c_index_ranks_earlier_flares_higher_and_integrated_brier_rewards_the_truth():
    time = np.array([2.0, 5.0, 10.0, 20.0, 30.0])
    event = np.array([True, True, False, True, False])
    assert scoring.concordance_index(event, time, [5, 4, 3, 2, 1]) == 1.0
    assert scoring.concordance_index(event, time, [1, 2, 3, 4, 5]) == 0.0
    assert scoring.concordance_index([False] * 5, time, [1, 2, 3, 4, 5]) is None
    grid = np.array([3.0, 6.0, 12.0, 25.0])
    truth = np.array([[float(t < ti) for t in grid] for ti in time])  # S(t) = 1 until the event
    vague = np.full_like(truth, 0.5)
    assert scoring.integrated_brier(event, time, truth, grid) < scoring.integrated_brier(event, time, vague, grid)
