"""The skill benchmark's pure scores, on small examples worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from shared import scoring


def test_murphy_decomposition_adds_up_to_the_brier_score_of_a_two_bin_forecast():
    # two forecasts of 0.1 (one event) and two of 0.9 (two events); base rate 0.75
    p, y = [0.1, 0.1, 0.9, 0.9], [0, 1, 1, 1]
    parts = scoring.murphy_decomposition(p, y)
    assert parts["reliability"] == pytest.approx(0.5 * 0.4 ** 2 + 0.5 * 0.1 ** 2)  # 0.085
    assert parts["resolution"] == pytest.approx(0.5 * 0.25 ** 2 + 0.5 * 0.25 ** 2)  # 0.0625
    assert parts["uncertainty"] == pytest.approx(0.75 * 0.25)  # 0.1875
    assert parts["reliability"] - parts["resolution"] + parts["uncertainty"] == pytest.approx(scoring.brier_score(p, y))


def test_murphy_decomposition_of_no_forecast_is_undefined():
    assert scoring.murphy_decomposition([], []) == {"reliability": None, "resolution": None, "uncertainty": None}


def test_bss_against_the_sample_climatology():
    # a perfect forecast is 1; the sample's own rate is 0; a worse-than-climatology forecast is negative
    assert scoring.sample_climatology_bss([0, 1, 1, 1], [0, 1, 1, 1]) == pytest.approx(1.0)
    assert scoring.sample_climatology_bss([0.75] * 4, [0, 1, 1, 1]) == pytest.approx(0.0)
    # BS = (0.25 + 0 + 0 + 1) / 4 = 0.3125 against 0.1875: 1 - 0.3125 / 0.1875 = -2/3
    assert scoring.sample_climatology_bss([0.5, 1, 1, 0], [0, 1, 1, 1]) == pytest.approx(-2 / 3)
    assert scoring.sample_climatology_bss([0.2, 0.3], [0, 0]) is None


def test_tss_and_hss_of_a_hand_table():
    # hits 3, false alarms 2, misses 1, correct negatives 4
    p = [0.9, 0.8, 0.7, 0.6, 0.55, 0.1, 0.2, 0.3, 0.1, 0.4]
    table = scoring.contingency(p, [1, 1, 1, 0, 0, 1, 0, 0, 0, 0], 0.5)
    assert (table.hits, table.false_alarms, table.misses, table.correct_negatives) == (3, 2, 1, 4)
    assert table.tss() == pytest.approx(3 / 4 - 2 / 6)
    assert table.hss() == pytest.approx(2 * (3 * 4 - 2 * 1) / ((3 + 1) * (1 + 4) + (3 + 2) * (2 + 4)))


def test_block_bootstrap_resamples_whole_blocks_of_consecutive_days():
    rows = scoring.block_bootstrap_indices(7, 3, resamples=200, seed=1)
    assert rows.shape == (200, 7)
    block_starts = {0, 3, 6}
    for row in rows:
        assert row[0] in block_starts
        for previous, current in zip(row, row[1:]):
            # inside a block the days follow each other; a new block starts at a block boundary
            assert current == previous + 1 and current not in block_starts or current in block_starts
    # every block is drawn sometimes, and the same seed draws the same days
    assert set(rows[:, 0]) == block_starts
    np.testing.assert_array_equal(rows, scoring.block_bootstrap_indices(7, 3, resamples=200, seed=1))


def test_block_bootstrap_refuses_an_empty_series():
    with pytest.raises(ValueError):
        scoring.block_bootstrap_indices(0, 27, resamples=10)


def test_percentile_interval_leaves_out_undefined_resamples():
    values = np.concatenate([np.arange(101, dtype=float), [np.nan, np.nan]])
    assert scoring.percentile_interval(values) == pytest.approx((2.5, 97.5))
    assert scoring.percentile_interval([np.nan]) is None
