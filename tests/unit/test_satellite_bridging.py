"""Two satellites at once, as SWPC runs them: the real GOES-14 and GOES-15 minutes of 27-31 October 2010 (the
bundled sample, gaps listed in its GAPS.md). Features read one satellite per hour, the primary, and bridge its
gaps with the other's flux; the predictor's stream computes the same numbers as the trainer's batch table."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from services.ingestor.pipeline import detect_in
from services.ingestor.readers import read_path
from services.predictor.models import ModelSlots
from services.predictor.stream import forecast_batch
from shared import messages as m
from shared.features import (
    FLARE_COLUMNS, FeatureParams, FeatureState, feature_names, feature_table, hourly_issue_times,
)
from shared.forecast_model import ForecastModel, forecast_message
from shared.settings import load_settings
from tests.conftest import DATA_DIR
from tests.support.predictor_models import trained
from tests.support.stream_forecasting import forecaster

UTC = timezone.utc
HOUR = timedelta(hours=1)
OVERLAP = DATA_DIR / "goes_overlap"
FILES = {"GOES-14": OVERLAP / "g14_xrs_1m_20101027_20101031.csv.gz",
         "GOES-15": OVERLAP / "g15_xrs_1m_20101027_20101031.csv.gz"}
# issue times with a full day of flux behind them, to the last hour the files cover
ISSUE_TIMES = list(hourly_issue_times(datetime(2010, 10, 28, tzinfo=UTC), datetime(2010, 10, 31, 23, tzinfo=UTC)))
CONFIGURED = FeatureParams.from_settings(load_settings().features)


@lru_cache(maxsize=1)
def readings() -> list[m.FluxObserved]:
    """Both satellites' valid minutes in time order, as the ingestor publishes them."""
    merged = [
        m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag, satellite=r.satellite,
                       cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era, xrsa_flux=r.xrsa_flux,
                       xrsb_flux=r.xrsb_flux, source="test")
        for path in FILES.values() for r in read_path(path).flux if r.usable
    ]
    return sorted(merged, key=lambda r: (r.event_time, r.satellite))


def observations(satellites=tuple(FILES)) -> pd.DataFrame:
    return pd.DataFrame([
        {"time_tag": r.event_time, "satellite": r.satellite, "cadence_seconds": r.cadence_seconds,
         "scaling_era": r.scaling_era, "xrsa_flux": r.xrsa_flux, "xrsb_flux": r.xrsb_flux}
        for r in readings() if r.satellite in satellites
    ])


NO_FLARES = pd.DataFrame(columns=["peak_time", "peak_flux", "scaling_era", "source"])


def hourly_mean_b(satellite: str, hour: str) -> float:
    """The file's own mean of the valid XRS-B minutes in an hour (valid: B_AVG > 0 and B_QUAL_FLAG 0, as
    GAPS.md counts them), read without the ingestor."""
    raw = pd.read_csv(FILES[satellite], parse_dates=["time_tag"])
    start = pd.Timestamp(hour)
    minutes = raw[(raw["time_tag"] >= start) & (raw["time_tag"] < start + HOUR)]
    valid = minutes[(minutes["B_AVG"] > 0) & (minutes["B_QUAL_FLAG"] == 0)]
    return float(valid["B_AVG"].mean())


def stream_features(params: FeatureParams) -> pd.DataFrame:
    """The predictor's feature state fed reading by reading; at each issue time the features are taken when
    the first reading at or after it arrives, before that reading is added (as StreamForecaster does)."""
    state, rows, due = FeatureState(params), [], list(ISSUE_TIMES)
    for reading in readings():
        while due and reading.event_time >= due[0]:
            rows.append(state.features_at(due.pop(0).to_pydatetime()).as_frame())
        state.update_flux(reading)
    assert not due, "the files end before the last issue time"
    return pd.concat(rows)


def test_goes15_bridges_the_two_hour_gap_of_goes14_made_primary():
    # an operator who makes GOES-14 the primary: its 124-minute gap of 10-30 07:02-09:05 is read from GOES-15
    goes14_primary = dataclasses.replace(CONFIGURED, satellite_preference=("GOES-14", "GOES-15"))
    both = feature_table(observations(), NO_FLARES, ISSUE_TIMES, goes14_primary)
    alone = feature_table(observations(("GOES-14",)), NO_FLARES, ISSUE_TIMES, goes14_primary)
    at = {hour: pd.Timestamp(f"2010-10-30 {hour:02d}:00", tz="UTC") for hour in (7, 8, 9, 10, 11)}

    # the hour before each issue time comes from the satellite covering most of it: GOES-14 when whole
    assert both.at[at[7], "xrsb_latest"] == pytest.approx(np.log10(hourly_mean_b("GOES-14", "2010-10-30 06:00")))
    assert both.at[at[8], "xrsb_latest"] == pytest.approx(np.log10(hourly_mean_b("GOES-15", "2010-10-30 07:00")))
    assert both.at[at[9], "xrsb_latest"] == pytest.approx(np.log10(hourly_mean_b("GOES-15", "2010-10-30 08:00")))
    assert both.at[at[10], "xrsb_latest"] == pytest.approx(np.log10(hourly_mean_b("GOES-15", "2010-10-30 09:00")))
    assert both.at[at[11], "xrsb_latest"] == pytest.approx(np.log10(hourly_mean_b("GOES-14", "2010-10-30 10:00")))
    # GOES-14 alone has no minute in 08:00-09:00: that hour is missing there, bridged with both
    assert alone.at[at[9], "xrsb_latest"] == pytest.approx(np.log10(hourly_mean_b("GOES-14", "2010-10-30 07:00")))
    assert alone["coverage_24h"].min() < 1.0
    assert both["coverage_24h"].eq(1.0).all() and both["sufficient"].all()


def test_the_stream_computes_the_batch_numbers_from_two_satellites():
    # the configured primary is checked through the predictor's forecasts below
    goes14_primary = dataclasses.replace(CONFIGURED, satellite_preference=("GOES-14", "GOES-15"))
    batch = feature_table(observations(), NO_FLARES, ISSUE_TIMES, goes14_primary)
    streamed = stream_features(goes14_primary)
    names = feature_names(goes14_primary)
    assert streamed["sufficient"].all()
    np.testing.assert_array_equal(streamed[names].to_numpy(), batch[names].to_numpy())
    np.testing.assert_array_equal(streamed["coverage_24h"].to_numpy(), batch["coverage_24h"].to_numpy())


def test_with_the_configured_primary_goes15_s_seven_minute_gap_hour_is_read_from_goes14():
    # GOES-15 is primary by the configuration; 10-28 18:02-18:08 it misses 7 minutes, GOES-14 has all 60
    table = feature_table(observations(), NO_FLARES, [datetime(2010, 10, 28, 19, tzinfo=UTC),
                                                     datetime(2010, 10, 28, 20, tzinfo=UTC)], CONFIGURED)
    gap_hour, next_hour = table["xrsb_latest"]
    assert gap_hour == pytest.approx(np.log10(hourly_mean_b("GOES-14", "2010-10-28 18:00")))
    assert next_hour == pytest.approx(np.log10(hourly_mean_b("GOES-15", "2010-10-28 19:00")))


async def test_stream_forecasts_over_two_satellites_equal_the_batch_forecasts():
    model = ForecastModel("v-two-satellites", trained().artifacts)

    stream = forecaster(ModelSlots(champion=model), model.feature_params)
    issued, merged = [], readings()
    # six hours of both satellites a batch, as a backlog arrives; one thread: the classifier's OpenMP threads
    # spin-wait for each other on a busy machine
    with threadpool_limits(limits=1):
        for start in range(0, len(merged), 720):
            issued += await stream.on_readings(merged[start:start + 720])
        wanted = [f for f in issued if f.event_time >= ISSUE_TIMES[0]]
        [batch] = forecast_batch([model], observations(), NO_FLARES, [f.event_time for f in wanted])

    assert [f.event_time for f in wanted] == [t.to_pydatetime() for t in ISSUE_TIMES[:len(wanted)]]
    assert len(wanted) == len(ISSUE_TIMES)
    assert all(f.status == "ok" for f in wanted)
    assert wanted == [forecast_message(f, model.version, horizon_hours=model.horizon_hours) for f in batch]


def test_a_flare_the_detector_finds_in_both_satellites_counts_once_in_the_batch_and_on_the_stream():
    # the ingestor's detector runs on each satellite's minutes: the C1.2, C1.7 and C5.3 of these days come twice
    detected = [flare for path in FILES.values()
                for flare in detect_in([r for r in read_path(path).flux if r.usable])]
    c_or_above = [f for f in detected if f.class_letter in "CMX"]
    assert len(c_or_above) == 6 and {f.satellite for f in c_or_above} == {"GOES-14", "GOES-15"}
    flares = pd.DataFrame([(f.peak_time, f.peak_flux, f.scaling_era, f.source, f.satellite) for f in detected],
                          columns=list(FLARE_COLUMNS))
    at = datetime(2010, 10, 31, 12, tzinfo=UTC)  # C1.7 (03:18) and C5.3 (04:31) in the day before
    batch = feature_table(observations(), flares, [at], CONFIGURED).iloc[0]
    state = FeatureState(CONFIGURED)
    for reading in readings():
        if reading.event_time < at:
            state.update_flux(reading)
    for flare in detected:
        if flare.known_at <= at:  # the stream counts a detected flare from its end
            state.update_flare(flare)
    streamed = state.features_at(at)

    assert batch["flares_ge_c_1d"] == 2 and batch["flares_ge_c_7d"] == 3
    assert [streamed.values[name] for name in feature_names(CONFIGURED)] == batch[feature_names(CONFIGURED)].tolist()
