"""No silent hours: across every gap of the GOES-15 hourly record (2010-09 to 2015-12) and of the GOES-18 minutes
with real gaps (2026-02-26 to 03-09), every hour gets a forecast. Where the flux cannot be used the forecast is
degraded: the version's flare-history models, flagged, with the reason; "insufficient data" is left only where
neither flux nor flare history covers the lookback. The stream, the batch and the backtest issue the same."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from services.ingestor.readers import read_path
from services.predictor.models import ModelSlots
from services.predictor.stream import forecast_batch
from services.trainer.backtest import run_backtest
from services.trainer.data import History as TrainerHistory
from shared import messages as m
from shared.features import hourly_issue_times
from shared.forecast_model import ForecastModel, forecast_message
from shared.settings import load_settings
from tests.conftest import DATA_DIR
from tests.support.predictor_models import FLARE_LIST, HOURLY, trained
from tests.support.stream_forecasting import forecaster

UTC = timezone.utc
HOUR = pd.Timedelta(hours=1)
GOES18 = DATA_DIR / "goes16_1m" / "goes18_xrs_1m_2026-02-26_2026-03-09_with_gaps.csv.gz"
NO_FLARES = pd.DataFrame(columns=["peak_time", "peak_flux", "scaling_era", "source"])


@lru_cache(maxsize=1)
def model() -> ForecastModel:
    return ForecastModel("v-coverage", trained().artifacts)


def frame(records) -> pd.DataFrame:
    return pd.DataFrame([
        {"time_tag": r.time_tag, "satellite": r.satellite, "cadence_seconds": r.cadence_seconds,
         "scaling_era": r.scaling_era, "xrsa_flux": r.xrsa_flux, "xrsb_flux": r.xrsb_flux}
        for r in records if r.usable
    ])


def catalogue() -> pd.DataFrame:
    return pd.DataFrame([{"peak_time": f.peak_time, "peak_flux": f.peak_flux, "scaling_era": f.scaling_era,
                          "source": f.source} for f in read_path(FLARE_LIST).flares])


def missing_hour_runs(hour_starts: pd.DatetimeIndex, with_flux: pd.DatetimeIndex) -> list[pd.DatetimeIndex]:
    """The runs of hours (between the first and the last hour) that hold no XRS-B value."""
    every = pd.date_range(hour_starts.min(), hour_starts.max(), freq="h")
    missing = ~every.isin(with_flux)
    edges = np.diff(np.concatenate([[0], missing.astype(int), [0]]))
    return [every[a:b] for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


def raw_hourly_gaps() -> list[pd.DatetimeIndex]:
    """The record's gaps read from the file itself: hours with no value > 0 (the sample's README's rule)."""
    raw = pd.read_csv(HOURLY)
    hours = pd.to_datetime(raw["time"], utc=True).dt.floor("h")
    return missing_hour_runs(pd.DatetimeIndex(hours), pd.DatetimeIndex(hours[raw["xrsb_long_0.1-0.8nm"] > 0]))


def test_every_hour_of_every_gap_in_the_hourly_record_gets_a_forecast():
    gaps = raw_hourly_gaps()
    assert len(gaps) >= 45 and max(len(g) for g in gaps) > 72  # some gaps are longer than the flux lookback
    # each gap's hours, and the day after it while the flux coverage builds up again
    issue_times = sorted({t + HOUR for gap in gaps for t in gap.append(gap[-1] + pd.timedelta_range(HOUR, periods=24,
                                                                                                   freq="h"))})
    with threadpool_limits(limits=1):
        [forecasts] = forecast_batch([model()], frame(read_path(HOURLY).flux), catalogue(), issue_times)

    assert [f.issued_at for f in forecasts] == [t.to_pydatetime() for t in issue_times]
    assert not [f.issued_at for f in forecasts if f.status != "ok"]
    degraded = [f for f in forecasts if f.degraded]
    assert len(degraded) > 500  # the long gaps: hundreds of hours without usable flux
    assert all(f.reason.startswith("degraded: ") and "flare history alone" in f.reason for f in degraded)
    assert all(f.reason is None for f in forecasts if not f.degraded)
    for forecast in degraded[::50]:
        assert set(forecast.survival) == {"C", "M", "X"}
        assert sum(forecast.class_probabilities.values()) == pytest.approx(1.0)
        p = [forecast.survival[t].probability_within_24h for t in ("C", "M", "X")]
        assert 0 < p[2] <= p[1] <= p[0] < 1
    # the longest gap: forecasts all through it, degraded once the last flux is older than the staleness limit
    longest = max(gaps, key=len)
    inside = [f for f in forecasts if longest[0] + 4 * HOUR <= f.issued_at <= longest[-1]]
    assert inside and all(f.degraded and ("older than 180 minutes" in f.reason or "no XRS-B" in f.reason)
                          for f in inside)


def goes18_readings() -> list[m.FluxObserved]:
    return [m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag,
                           satellite=r.satellite, cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era,
                           xrsa_flux=r.xrsa_flux, xrsb_flux=r.xrsb_flux, source="test")
            for r in read_path(GOES18).flux if r.usable]


async def test_the_goes18_minutes_with_gaps_get_a_forecast_every_hour_on_the_stream_as_in_the_batch():
    served = model()

    readings = goes18_readings()
    stream = forecaster(ModelSlots(champion=served), served.feature_params)
    issued = []
    with threadpool_limits(limits=1):
        for start in range(0, len(readings), 720):
            issued += await stream.on_readings(readings[start:start + 720])
        observations = frame(read_path(GOES18).flux)
        expected_times = list(hourly_issue_times(readings[0].event_time + timedelta(minutes=1),
                                                 readings[-1].event_time))
        [batch] = forecast_batch([served], observations, NO_FLARES, expected_times)

    hours = pd.DatetimeIndex(pd.to_datetime(observations["time_tag"], utc=True)).floor("h")
    gaps = missing_hour_runs(hours, hours[observations["xrsb_flux"].notna().to_numpy()])
    assert max(len(g) for g in gaps) >= 5  # gaps of hours, longer than the 3 h staleness limit
    assert [f.event_time for f in issued] == [t.to_pydatetime() for t in expected_times]
    assert all(f.status == "ok" for f in issued)  # no hour left without a forecast
    assert any(f.degraded for f in issued) and any(not f.degraded for f in issued)
    assert issued == [forecast_message(f, served.version, horizon_hours=served.horizon_hours) for f in batch]


def test_the_backtest_issues_what_the_stream_does_and_scores_degraded_forecasts_apart():
    served = model()
    history = TrainerHistory(frame(read_path(HOURLY).flux), catalogue())
    start, end = datetime(2012, 10, 15, tzinfo=UTC), datetime(2012, 11, 25, tzinfo=UTC)  # holds a 12-day gap
    with threadpool_limits(limits=1):
        result = run_backtest(served, history, load_settings(), start=start, end=end)
        times = list(hourly_issue_times(start, end))
        [streamed] = forecast_batch([served], history.observations, history.flares, times)

    forecasts = result.forecasts
    assert forecasts["degraded"].tolist() == [f.degraded for f in streamed]
    assert forecasts["status"].tolist() == [f.status for f in streamed]
    assert forecasts["p_ge_m_24h"].tolist() == pytest.approx(
        [f.survival["M"].probability_within_24h if f.survival else np.nan for f in streamed], nan_ok=True)
    assert result.degraded == int(forecasts["degraded"].sum()) > 0 and result.insufficient == 0
    # scored apart: the model's own scores count none of them
    assert not (forecasts["scorable"] & forecasts["degraded"]).any()
    assert result.degraded_scores["M"]["count"] > 0
