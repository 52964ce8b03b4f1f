"""Benchmark (not a timed test): what computing every forecast in blocks of ROW_BLOCK rows costs a single one.

`shared.forecast_model.in_row_blocks` pads each model call to ROW_BLOCK rows so that a forecast's numbers do not
depend on how many were computed beside it (live one at a time, or a replay in batches). A lone forecast (the
live stream, an uncached REST answer) therefore pays for ROW_BLOCK rows; the baseline is the same call on one
unpadded row, timed in the same run.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_forecast_model.py -o addopts=""`).
"""

from __future__ import annotations

import timeit
from datetime import datetime, timezone

import pandas as pd
import pytest

import shared.forecast_model as forecast_model
from shared.features import feature_table
from tests.unit.test_predictor_stream import july_readings, model, observations_before

CALLS = 200


@pytest.mark.slow
def test_one_forecast_in_a_padded_row_block_beside_one_unpadded_row(bench_figures, monkeypatch):
    served = model("v-bench")
    at = datetime(2015, 7, 5, tzinfo=timezone.utc)
    observations = observations_before(july_readings(), at)
    no_flares = pd.DataFrame(columns=["peak_time", "peak_flux", "scaling_era", "source"])
    row = feature_table(observations, no_flares, [at], served.feature_params)

    def seconds_per_call() -> float:
        served.forecast_table(row)  # warm
        return timeit.timeit(lambda: served.forecast_table(row), number=CALLS) / CALLS

    blocks = forecast_model.ROW_BLOCK
    padded = seconds_per_call()
    monkeypatch.setattr(forecast_model, "ROW_BLOCK", 1)
    unpadded = seconds_per_call()
    bench_figures("forecast model", f"one forecast, padded to {blocks} rows", padded * 1000,
                  "ms", baseline=("the same forecast, one unpadded row", unpadded * 1000),
                  note="the price of batch-independent numbers on the live and REST paths")
