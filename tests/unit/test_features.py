"""The one feature function: the predictor's streaming state and the trainer's batch table agree, nothing
after the issue time is read, gaps give an explicit "insufficient data" and never NaN."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from shared import messages as m
from shared.features import (
    FeatureParams, FeatureState, feature_names, feature_table, flare_feature_names, flare_history_features,
    flare_timeline, flux_feature_names, hourly_bins, hourly_issue_times,
)
from shared.settings import FeatureSettings
from tests.support.trainer_data import flare_list, hourly_observations

PARAMS = FeatureParams.from_settings(FeatureSettings())
UTC = timezone.utc


def flux_messages(observations: pd.DataFrame) -> list[m.FluxObserved]:
    return [
        m.FluxObserved(
            message_id=m.stable_id(row.satellite, row.time_tag.isoformat()), event_time=row.time_tag.to_pydatetime(),
            satellite=row.satellite, cadence_seconds=row.cadence_seconds, scaling_era=row.scaling_era,
            xrsa_flux=None if np.isnan(row.xrsa_flux) else row.xrsa_flux,
            xrsb_flux=None if np.isnan(row.xrsb_flux) else row.xrsb_flux, source="test",
        )
        for row in observations.itertuples()
    ]


def flare_messages(flares: pd.DataFrame) -> list[m.FlareObserved]:
    return [
        m.FlareObserved(
            message_id=m.stable_id(row.source, row.start_time.isoformat(), row.peak_time.isoformat()),
            event_time=row.peak_time.to_pydatetime(),
            start_time=row.start_time.to_pydatetime(), peak_time=row.peak_time.to_pydatetime(),
            goes_class=row.goes_class, class_letter=row.class_letter, peak_flux=row.peak_flux, source=row.source,
        )
        for row in flares.itertuples()
    ]


def test_streaming_state_fed_message_by_message_agrees_with_the_batch_table():
    observations = hourly_observations("2011-02-01", "2011-03-20")
    flares = flare_list("2010-11-01", "2011-03-20")
    instants = [datetime(2011, 2, 15, 12, tzinfo=UTC), datetime(2011, 3, 1, 0, tzinfo=UTC),
                datetime(2011, 3, 19, 23, tzinfo=UTC)]
    batch = feature_table(observations, flares, instants, PARAMS)

    state = FeatureState(PARAMS)
    for flare in flare_messages(flares[flares["peak_time"] < pd.Timestamp("2011-02-01", tz="UTC")]):
        state.update_flare(flare)
    later_flares = flare_messages(flares[flares["peak_time"] >= pd.Timestamp("2011-02-01", tz="UTC")])
    compared = 0
    for reading in flux_messages(observations):
        while later_flares and later_flares[0].peak_time <= reading.event_time:
            state.update_flare(later_flares.pop(0))
        state.update_flux(reading)
        for position, instant in enumerate(instants):
            # the predictor issues at t once the reading of the hour ending at t has arrived
            if reading.event_time.replace(minute=0, second=0) == instant - timedelta(hours=1):
                while later_flares and later_flares[0].peak_time <= instant:
                    state.update_flare(later_flares.pop(0))
                streamed = state.features_at(instant)
                expected = batch.iloc[position]
                assert streamed.sufficient and expected["sufficient"]
                assert list(streamed.values) == feature_names(PARAMS)
                assert list(streamed.values.values()) == expected[feature_names(PARAMS)].tolist()
                compared += 1
    assert compared == len(instants)


def test_features_at_t_do_not_change_when_everything_after_t_is_deleted():
    observations = hourly_observations("2012-02-20", "2012-03-20")
    flares = flare_list("2011-12-01", "2012-03-20")
    t = datetime(2012, 3, 7, 0, tzinfo=UTC)  # the X5.4 of 2012-03-07 00:24 peaks after t
    full = feature_table(observations, flares, [t], PARAMS)
    cut = feature_table(
        observations[observations["time_tag"] <= t], flares[flares["start_time"] <= t], [t], PARAMS)
    pd.testing.assert_frame_equal(full, cut)
    # and the hour that ends after t is indeed not used: changing it changes nothing
    changed = observations.copy()
    changed.loc[changed["time_tag"] > t, "xrsb_flux"] = 1e-3
    pd.testing.assert_frame_equal(full, feature_table(changed, flares, [t], PARAMS))


def test_one_minute_readings_give_the_features_of_their_hourly_means():
    hours = pd.date_range("2015-07-01", periods=30, freq="h", tz="UTC")
    rng = np.random.default_rng(7)
    minutes = pd.DataFrame({
        "time_tag": pd.date_range("2015-07-01", periods=30 * 60, freq="min", tz="UTC"),
        "satellite": "GOES-15", "cadence_seconds": 60, "scaling_era": "swpc_scaled",
        "xrsa_flux": 10 ** rng.uniform(-8.5, -7.5, 30 * 60), "xrsb_flux": 10 ** rng.uniform(-6.5, -5.5, 30 * 60),
    })
    means = minutes.groupby(minutes["time_tag"].dt.floor("h"))[["xrsa_flux", "xrsb_flux"]].mean()
    hourly = pd.DataFrame({
        "time_tag": hours + pd.Timedelta(minutes=30), "satellite": "GOES-15", "cadence_seconds": 3600,
        "scaling_era": "swpc_scaled", "xrsa_flux": means["xrsa_flux"].to_numpy(),
        "xrsb_flux": means["xrsb_flux"].to_numpy(),
    })
    no_flares = pd.DataFrame(columns=["peak_time", "peak_flux", "scaling_era", "source"])
    t = hours[-1] + pd.Timedelta(hours=1)
    from_minutes = feature_table(minutes, no_flares, [t], PARAMS)
    from_hours = feature_table(hourly, no_flares, [t], PARAMS)
    names = feature_names(PARAMS)
    np.testing.assert_allclose(from_minutes[names].to_numpy(), from_hours[names].to_numpy(), rtol=1e-12, atol=1e-12)


def test_true_flux_is_scaled_to_the_swpc_equivalent_before_features():
    scaled = hourly_observations("2013-05-01", "2013-05-05")
    true_flux = scaled.assign(
        satellite="GOES-16", scaling_era="true_flux", xrsb_flux=scaled["xrsb_flux"] / 0.7,
        xrsa_flux=scaled["xrsa_flux"] / 0.85)
    flares = flare_list("2013-04-01", "2013-05-05")
    t = datetime(2013, 5, 4, 12, tzinfo=UTC)
    names = feature_names(PARAMS)
    np.testing.assert_allclose(
        feature_table(true_flux, flares, [t], PARAMS)[names].to_numpy(),
        feature_table(scaled, flares, [t], PARAMS)[names].to_numpy(), rtol=1e-9)
    bins = hourly_bins(true_flux)
    assert bins["xrsb"].iloc[0] == pytest.approx(scaled["xrsb_flux"].iloc[0])


def test_a_gap_gives_insufficient_data_with_the_reason_and_never_nan():
    observations = hourly_observations("2012-06-01", "2012-06-10")
    gap = (observations["time_tag"] >= pd.Timestamp("2012-06-05 00:00", tz="UTC")) & (
        observations["time_tag"] < pd.Timestamp("2012-06-06 12:00", tz="UTC"))
    observations.loc[gap, ["xrsa_flux", "xrsb_flux"]] = np.nan
    times = hourly_issue_times(datetime(2012, 6, 4, tzinfo=UTC), datetime(2012, 6, 8, tzinfo=UTC))
    table = feature_table(observations, flare_list("2012-03-01", "2012-06-10"), times, PARAMS)

    assert not table[feature_names(PARAMS)].isna().any().any()
    stale = table.loc[pd.Timestamp("2012-06-05 06:00", tz="UTC")]
    assert not stale["sufficient"] and "older than 180 minutes" in stale["reason"]
    assert (stale[flux_feature_names(PARAMS)] == 0).all()
    # the flare history stays: what a degraded forecast reads
    assert stale["flare_history"]
    history = flare_history_features(flare_list("2012-03-01", "2012-06-10"), [stale.name], PARAMS).iloc[0]
    assert stale[flare_feature_names(PARAMS)].tolist() == history[flare_feature_names(PARAMS)].tolist()
    # two hours into the gap the last reading is recent enough: a forecast, from the latest values
    recent = table.loc[pd.Timestamp("2012-06-05 02:00", tz="UTC")]
    assert recent["sufficient"] and recent["reason"] is None
    assert recent["xrsb_mean_1h"] == recent["xrsb_latest"]
    # after the gap, once 24 h hold enough flux again, forecasts resume
    assert table.loc[pd.Timestamp("2012-06-07 06:00", tz="UTC"), "sufficient"]
    thin = table.loc[pd.Timestamp("2012-06-06 14:00", tz="UTC")]
    assert not thin["sufficient"] and "less than 50%" in thin["reason"]


def test_the_same_flare_from_two_sources_counts_once_and_classes_are_at_least():
    peak = pd.Timestamp("2014-01-07 18:32", tz="UTC")
    flares = pd.DataFrame({
        "peak_time": [peak, peak + pd.Timedelta(minutes=2), peak - pd.Timedelta(hours=5), peak - pd.Timedelta(hours=6)],
        "peak_flux": [1.2e-4, 1.2e-4, 3e-6, 2e-7],
        "scaling_era": "swpc_scaled",
        "source": ["catalog:swpc", "detected", "catalog:swpc", "catalog:ngdc"],
    })
    timeline = flare_timeline(flares)
    assert len(timeline.peak_ns) == 2  # the X1.2 once, the C3.0; the B2 flare is not counted
    observations = hourly_observations("2014-01-06", "2014-01-08")
    row = feature_table(observations, flares, [peak + pd.Timedelta(hours=1)], PARAMS).iloc[0]
    assert (row["flares_ge_c_1d"], row["flares_ge_m_1d"], row["flares_ge_x_1d"]) == (2, 1, 1)
    assert row["max_flare_log_flux_1d"] == pytest.approx(np.log10(1.2e-4))
    assert row["log_hours_since_ge_x"] == pytest.approx(np.log1p(1.0))


def test_a_redelivered_or_corrected_reading_replaces_the_earlier_one():
    observations = hourly_observations("2012-01-01", "2012-01-05")
    state = FeatureState(PARAMS)
    messages = flux_messages(observations)
    for reading in messages:
        state.update_flux(reading)
    t = datetime(2012, 1, 5, tzinfo=UTC)
    before = state.features_at(t)
    for reading in messages[-10:]:
        state.update_flux(reading)  # redelivered
    assert state.features_at(t) == before
    last = messages[-1]
    state.update_flux(last.model_copy(update={"xrsb_flux": last.xrsb_flux * 10, "is_correction": True}))
    assert state.features_at(t).values["xrsb_latest"] == pytest.approx(np.log10(last.xrsb_flux * 10))
