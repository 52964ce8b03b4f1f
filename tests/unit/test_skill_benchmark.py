"""A forecaster reruns the skill benchmark on the bundled record: one year from small models (Cox only), and the
held-out scoring of files in the same formats. The full four-year run with the configured models is
`make skill`; the two whole command runs here are marked slow (`pytest -m slow tests/unit/test_skill_benchmark.py`)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.trainer import skill
from shared.settings import ModelSettings, load_settings
from tests.conftest import DATA_DIR, PROJECT_ROOT

HOURLY = DATA_DIR / skill.DEFAULT_INPUTS[0]
FLARES = DATA_DIR / skill.DEFAULT_INPUTS[1]


@pytest.fixture(scope="module")
def record() -> skill.History:
    return skill.read_history(skill.default_inputs(DATA_DIR))


@pytest.fixture(scope="module")
def small_settings():
    return load_settings(data_dir=DATA_DIR, model=ModelSettings(survival_estimators=["coxph"]))


@pytest.fixture(scope="module")
def year_2012(record, small_settings) -> skill.PeriodForecasts:
    return skill.rolling_origin(record, small_settings, [2012])[0]


def test_a_year_is_forecast_daily_at_00_ut_by_every_method_on_the_same_days(year_2012):
    assert len(year_2012.issued_at) == 366
    assert (year_2012.issued_at.hour == 0).all() and year_2012.issued_at[0] == pd.Timestamp("2012-01-01", tz="UTC")
    assert year_2012.train_until == skill.year_start(2012)
    covered = year_2012.covered
    assert 0.9 < covered.mean() <= 1.0
    for target in skill.BENCHMARK_TARGETS:
        model = year_2012.forecasts["model"][target]
        assert np.isfinite(model[covered]).all() and np.isnan(model[~covered]).all()
        for method in skill.REFERENCES:
            assert np.isfinite(year_2012.forecasts[method][target]).all()
        assert set(np.unique(year_2012.forecasts["persistence"][target])) <= {0.0, 1.0}
    # >=C1 days were common in 2012 and >=M1 days were not
    assert year_2012.observed["C"].mean() > 0.5 > year_2012.observed["M"].mean() > 0.1


def test_the_forecasts_of_a_day_use_nothing_after_it(record, small_settings, year_2012):
    cut = pd.Timestamp("2012-04-01", tz="UTC")
    earlier = skill.forecast_period(
        record.until(cut.to_pydatetime()), small_settings, label="2012 Q1", train_until=skill.year_start(2012),
        issue_times=year_2012.issued_at[year_2012.issued_at < cut])
    days = len(earlier.issued_at)
    for method in skill.METHODS:
        for target in skill.BENCHMARK_TARGETS:
            np.testing.assert_allclose(earlier.forecasts[method][target], year_2012.forecasts[method][target][:days])


def test_scores_of_a_year_beside_its_references(year_2012):
    (scores,) = skill.score_periods([year_2012], resamples=50)
    c = scores.targets["C"]
    assert c.days == 366 and c.covered_days == int(year_2012.covered.sum())
    # climatology cannot rank days; the model and the event history can
    assert c.methods["climatology"]["auc"] == pytest.approx(0.5)
    assert c.methods["model"]["auc"] > 0.75 and c.methods["event_history"]["auc"] > 0.7
    # binary persistence is penalised hard by the Brier score
    assert c.methods["persistence"]["bss"] < c.methods["model"]["bss"]
    for reference in skill.REFERENCES:
        difference = c.differences[reference]["bss"]
        low, high = difference["interval"]
        assert low <= difference["value"] <= high
    assert c.differences["persistence"]["bss"]["interval"][0] > 0


@pytest.mark.slow  # a whole `flare skill` run in a subprocess (~25 s); the same functions run in-process above
def test_flare_skill_writes_the_table_the_html_report_and_the_daily_forecasts(tmp_path):
    out = tmp_path / "skill"
    done = _flare_skill(tmp_path, "--years", "2012", "--resamples", "30", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Leka et al. 2019" in done.stdout and ">=M1 within 24 h" in done.stdout
    assert (out / "skill.txt").read_text() in done.stdout
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert len(forecasts) == 366 and {"model_ge_c", "event_history_ge_m", "observed_ge_m"} <= set(forecasts.columns)


@pytest.mark.slow  # a whole `flare skill` run in a subprocess (~20 s)
def test_held_out_files_are_scored_by_the_same_protocol(tmp_path):
    # held-out files in the bundled formats: the first quarter of 2012, models trained up to 2011-12-31
    hourly = pd.read_csv(HOURLY)
    held_out = hourly[(hourly["time"] >= "2012-01-01") & (hourly["time"] < "2012-04-01")]
    with gzip.open(tmp_path / "g15_hourly_2012q1.csv.gz", "wt") as handle:
        held_out.to_csv(handle, index=False)
    flares = pd.read_csv(FLARES)
    flares[(flares["event_peaktime"] >= "2012-01-01") & (flares["event_peaktime"] < "2012-04-01")].to_csv(
        tmp_path / "flarelist_2012q1.csv", index=False)
    done = _flare_skill(
        tmp_path, "--data", str(HOURLY), str(FLARES), "--train-until", "2011-12-31", "--resamples", "30",
        "--score", str(tmp_path / "g15_hourly_2012q1.csv.gz"), str(tmp_path / "flarelist_2012q1.csv"),
        "--out", str(tmp_path / "held_out"))
    assert done.returncode == 0, done.stderr
    # the last day whose 24 h the held-out flux still covers is 30 March
    assert "held-out 2012-01-01..2012-03-30" in done.stdout
    assert len(pd.read_csv(tmp_path / "held_out" / "forecasts.csv")) == 90


def test_unreadable_input_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a NOAA file\n")
    done = _flare_skill(tmp_path, "--data", str(bad), "--years", "2012")
    assert done.returncode == 1 and "notes.txt" in done.stderr


def _flare_skill(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STATE_DIR": str(tmp_path / "state"), "DATA_DIR": str(DATA_DIR),
           "MODEL__SURVIVAL_ESTIMATORS": '["coxph"]'}
    return subprocess.run([sys.executable, "-m", "flare_cli.main", "skill", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
