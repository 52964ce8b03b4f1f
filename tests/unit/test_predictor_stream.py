"""The stream side of the predictor without a broker: readings in, forecasts on the cadence out, and each equal
to the forecast computed in one batch from the same data (what the REST API does from the database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

import pandas as pd
import pytest

from services.ingestor.readers import read_path
from services.predictor.models import ModelSlots
from services.predictor.store import History
from services.predictor.stream import StreamForecaster, compute_points
from shared import messages as m
from shared.features import FeatureParams, observations_from_rows
from shared.forecast_model import ForecastModel
from shared.settings import load_settings
from tests.support.predictor_models import JULY_2015, trained
from tests.support.stream_forecasting import forecaster, inline, nothing_logged, nothing_stored

HOUR = timedelta(hours=1)


@lru_cache(maxsize=1)
def july_readings() -> list[m.FluxObserved]:
    return [
        m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag, correlation_id="july",
                       satellite=r.satellite, cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era,
                       xrsa_flux=r.xrsa_flux, xrsb_flux=r.xrsb_flux, source="test")
        for r in read_path(JULY_2015).flux if r.usable
    ]


def model(version: str, coxph_alpha: float = 100.0) -> ForecastModel:
    return ForecastModel(version, trained(coxph_alpha=coxph_alpha).artifacts)


async def feed(stream: StreamForecaster, readings) -> list[m.ForecastIssued]:
    issued = []
    for reading in readings:
        issued += await stream.on_flux(reading)
    return issued


def observations_before(readings, at: datetime, since: datetime | None = None) -> pd.DataFrame:
    """The readings tagged before `at` (and from `since`) as the frame the features read."""
    return observations_from_rows(
        {"time_tag": r.event_time, "satellite": r.satellite, "cadence_seconds": r.cadence_seconds,
         "scaling_era": r.scaling_era, "xrsa_flux": r.xrsa_flux, "xrsb_flux": r.xrsb_flux}
        for r in readings if r.event_time < at and (since is None or r.event_time >= since))


def batch_forecast(forecast_model: ForecastModel, readings, flares: list[m.FlareObserved],
                   at: datetime) -> m.ForecastIssued:
    """The forecast at `at` from all readings before it, computed in one go."""
    observations = observations_before(readings, at)
    known = pd.DataFrame([{"peak_time": f.peak_time, "peak_flux": f.peak_flux, "scaling_era": f.scaling_era,
                           "source": f.source} for f in flares if f.peak_time <= at],
                         columns=["peak_time", "peak_flux", "scaling_era", "source"])
    [point] = compute_points([forecast_model], observations, known, at)
    return point.message(correlation_id="july")


async def test_three_days_of_minutes_give_one_forecast_per_hour_stamped_with_the_model_version():
    stream = forecaster(ModelSlots(champion=model("v-champion")))
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 4, tzinfo=timezone.utc)]
    issued = await feed(stream, readings)

    assert [f.event_time for f in issued] == [datetime(2015, 7, 1, tzinfo=timezone.utc) + i * HOUR for i in range(72)]
    assert {f.model_version for f in issued} == {"v-champion"}
    assert len({f.message_id for f in issued}) == 72
    # the first hours have too little flux behind them, and say so; once a day is covered, forecasts are real
    assert issued[0].status == "insufficient_data" and "flux" in issued[0].reason
    assert all(f.status == "ok" for f in issued[24:])
    assert all(f.correlation_id == "july" for f in issued)
    ok = issued[-1]
    assert set(ok.survival) == {"C", "M", "X"}
    assert sum(ok.class_probabilities.values()) == pytest.approx(1.0)
    assert sum(ok.survival["C"].probability_distribution.values()) == pytest.approx(1.0)


async def test_each_stream_forecast_equals_the_batch_forecast_from_the_same_data():
    champion = model("v-champion")
    stream = forecaster(ModelSlots(champion=champion))
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 3, 6, tzinfo=timezone.utc)]
    issued = await feed(stream, readings)
    for forecast in issued[22::7]:
        assert forecast == batch_forecast(champion, readings, [], forecast.event_time)
    # live, each hour's forecast was computed from the reading before it (all but the first, and any hour whose
    # last minute is missing)
    assert len(issued) / 2 < stream.computed_ahead < len(issued)


async def test_a_forecast_computed_ahead_is_computed_again_when_a_late_reading_or_a_flare_changes_what_it_reads():
    champion = model("v-champion")
    stream = forecaster(ModelSlots(champion=champion))
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 2, 10, tzinfo=timezone.utc)]
    due_at, flare_due_at = datetime(2015, 7, 2, 9, tzinfo=timezone.utc), datetime(2015, 7, 2, 10, tzinfo=timezone.utc)
    before = [r for r in readings if r.event_time < due_at]
    await feed(stream, before)  # the last reading of 08:59 has started the forecast at 09:00
    ahead = stream.computed_ahead
    late = before[-30].model_copy(update={"xrsb_flux": 9e-5, "message_id": "a-corrected-reading"})
    [at_nine] = await feed(stream, [late, next(r for r in readings if r.event_time >= due_at)])
    corrected = [late if r.event_time == late.event_time else r for r in readings]
    assert at_nine == batch_forecast(champion, corrected, [], due_at)
    assert stream.computed_ahead == ahead

    rest = [r for r in corrected if due_at < r.event_time < flare_due_at]
    await feed(stream, rest)
    peak = flare_due_at - HOUR / 4
    flare = m.FlareObserved(message_id="flare-1", event_time=peak, start_time=peak - HOUR / 4, peak_time=peak,
                            goes_class="M2.0", class_letter="M", peak_flux=2e-5, source="catalogue")
    stream.on_flare(flare)  # known once the flux reaches its peak, which it has
    [at_ten] = await feed(stream, [next(r for r in july_readings() if r.event_time >= flare_due_at)])
    assert at_ten == batch_forecast(champion, corrected, [flare], flare_due_at)
    assert stream.computed_ahead == ahead


async def test_a_gap_in_the_flux_gives_degraded_forecasts_from_the_flare_history_not_stale_ones():
    stream = forecaster(ModelSlots(champion=model("v-champion")))
    start, gap_from, gap_to = (datetime(2015, 7, d, h, tzinfo=timezone.utc) for d, h in ((1, 0), (2, 12), (2, 20)))
    readings = [r for r in july_readings()
                if start <= r.event_time < gap_from or gap_to <= r.event_time < gap_to + HOUR]
    issued = await feed(stream, readings)
    by_time = {f.event_time: f for f in issued}

    assert by_time[gap_from].status == "ok"
    assert by_time[gap_from + 2 * HOUR].status == "ok"  # flux two hours old is still within the limit
    stale = [by_time[gap_from + h * HOUR] for h in range(4, 9)]
    assert all(f.status == "ok" and f.degraded for f in stale)
    assert all(f.reason.startswith("degraded: latest flux is older than 180 minutes") for f in stale)
    assert all(set(f.survival) == {"C", "M", "X"} for f in stale)
    assert not any(by_time[gap_from + h * HOUR].degraded for h in range(3))


async def test_a_flare_that_arrives_before_the_flux_reaches_it_counts_only_from_its_peak_on():
    champion = model("v-champion")
    stream = forecaster(ModelSlots(champion=champion))
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 2, 12, tzinfo=timezone.utc)]
    peak = datetime(2015, 7, 2, 3, 30, tzinfo=timezone.utc)
    flare = m.FlareObserved(message_id="flare-1", event_time=peak, start_time=peak - HOUR / 4, peak_time=peak,
                            goes_class="M2.0", class_letter="M", peak_flux=2e-5, source="catalogue")
    await feed(stream, readings[:60])  # the flux has reached 01:00 on the first day
    stream.on_flare(flare)
    stream.on_flare(flare.model_copy(update={"correlation_id": "a-second-ingestion-run"}))  # replayed: held once
    issued = {f.event_time: f for f in await feed(stream, readings[60:])}

    before, after = issued[peak - HOUR / 2], issued[peak + HOUR / 2]
    assert before == batch_forecast(champion, readings, [], before.event_time)
    assert after == batch_forecast(champion, readings, [flare], after.event_time)
    without_flare = batch_forecast(champion, readings, [], after.event_time)
    assert after.survival["M"].probability_within_24h != without_flare.survival["M"].probability_within_24h


async def test_a_challenger_is_forecast_in_shadow_beside_the_champion_and_a_swap_applies_from_the_next_issue_time():
    slots = ModelSlots(champion=model("v-old"), challenger=model("v-new", coxph_alpha=1.0))
    stream = forecaster(slots)
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 2, 6, tzinfo=timezone.utc)]
    half = len(readings) // 2
    first = await feed(stream, readings[:half])
    slots.champion, slots.challenger = slots.challenger, None
    second = await feed(stream, readings[half:])

    assert {(f.model_version, f.shadow) for f in first} == {("v-old", False), ("v-new", True)}
    champion_times = [f.event_time for f in first if not f.shadow] + [f.event_time for f in second]
    assert champion_times == [datetime(2015, 7, 1, tzinfo=timezone.utc) + i * HOUR for i in range(30)]
    assert {f.model_version for f in second} == {"v-new"} and not any(f.shadow for f in second)
    shadow = next(f for f in first if f.shadow and f.status == "ok")
    live = next(f for f in first if not f.shadow and f.event_time == shadow.event_time)
    assert shadow.message_id != live.message_id
    assert shadow.survival["C"].probability_within_24h != live.survival["C"].probability_within_24h


async def test_without_a_model_nothing_is_issued_and_the_skips_are_counted():
    stream = forecaster(ModelSlots())
    issued = await feed(stream, july_readings()[:180])
    assert issued == [] and stream.skipped_without_model == 3


async def test_a_forecast_the_log_already_holds_is_neither_computed_nor_issued_again():
    first = forecaster(ModelSlots(champion=model("v-champion")))
    readings = july_readings()[:6 * 60]
    issued = await feed(first, readings)
    log = {f.message_id for f in issued[:4]}

    async def logged(forecast_ids: list[str]) -> set[str]:
        return log & set(forecast_ids)

    again = forecaster(ModelSlots(champion=model("v-champion")), logged=logged)
    assert await feed(again, readings) == issued[4:]
    assert again.already_logged == 4


def stored_before(readings, flares=()):
    """What the database holds for a restart: the readings before an instant, as flux_observations rows."""
    async def history(until: datetime) -> History:
        rows = [{"time_tag": r.event_time, "satellite": r.satellite, "cadence_seconds": r.cadence_seconds,
                 "scaling_era": r.scaling_era, "xrsa_flux": r.xrsa_flux, "xrsb_flux": r.xrsb_flux,
                 "message_id": r.message_id, "quality": r.quality, "source": r.source}
                for r in readings if until - timedelta(hours=74) <= r.event_time < until]
        return History(rows, list(flares))
    return history


async def test_a_restart_mid_stream_continues_from_the_stored_history_and_loses_or_repeats_nothing():
    champion = model("v-champion")
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 3, 12, tzinfo=timezone.utc)]
    uninterrupted = await feed(forecaster(ModelSlots(champion=champion)), readings)

    crashed_at, resumed_from = 2000, 1900  # the last 100 readings before the crash are delivered again
    before = await feed(forecaster(ModelSlots(champion=champion)), readings[:crashed_at])
    log = {f.message_id for f in before}

    async def logged(forecast_ids: list[str]) -> set[str]:
        return log & set(forecast_ids)

    params = FeatureParams.from_settings(load_settings().features)
    restarted = StreamForecaster(params, timedelta(hours=1), ModelSlots(champion=champion),
                                 stored_before(readings), logged, run=inline)
    after = await feed(restarted, readings[resumed_from:])

    assert before + after == uninterrupted
    redelivered_hours = [f for f in before if f.event_time >= readings[resumed_from].event_time]
    assert len(redelivered_hours) == 2 and restarted.already_logged == 2  # made due again, not issued again


async def test_a_restart_counts_a_stored_detected_flare_from_its_end_as_the_live_stream_did():
    champion = model("v-champion")
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 3, 12, tzinfo=timezone.utc)]
    crashed_at, resumed_from, ends_at = 2000, 1900, 2100
    flare = m.FlareObserved(
        message_id="detected-1", event_time=readings[1950].event_time, start_time=readings[1890].event_time,
        peak_time=readings[1950].event_time, end_time=readings[ends_at].event_time, goes_class="M2.0",
        class_letter="M", peak_flux=2e-5, source=m.DETECTED_SOURCE,
    )

    flares_known_before_its_end = []

    async def live(stream: StreamForecaster, first: int) -> list[m.ForecastIssued]:
        """The detector reports the flare at its end: the ingestor publishes it with the reading of that minute."""
        issued = await feed(stream, readings[first:ends_at])
        flares_known_before_its_end.append(len(stream.state.flares()))
        stream.on_flare(flare)
        return issued + await feed(stream, readings[ends_at:])

    uninterrupted = await live(forecaster(ModelSlots(champion=champion)), 0)
    before = await feed(forecaster(ModelSlots(champion=champion)), readings[:crashed_at])
    log = {f.message_id for f in before}

    async def logged(forecast_ids: list[str]) -> set[str]:
        return log & set(forecast_ids)

    # by the restart the database holds the flare (the ingestor went on while the predictor was down)
    stored_flare = {"event_id": flare.message_id, **flare.model_dump(include={
        "start_time", "peak_time", "end_time", "goes_class", "class_letter", "peak_flux", "source", "satellite",
        "scaling_era", "noaa_region"})}
    params = FeatureParams.from_settings(load_settings().features)
    restarted = StreamForecaster(params, timedelta(hours=1), ModelSlots(champion=champion),
                                 stored_before(readings, [stored_flare]), logged, run=inline)
    after = await live(restarted, resumed_from)

    assert flares_known_before_its_end == [0, 0]  # the restarted stream knew no more than the live one
    assert before + after == uninterrupted


def replay_story() -> tuple[list[m.FluxObserved], list[m.FlareObserved]]:
    """Two and a half days of minutes with what makes batching hard: a detected flare known only at its end
    (after the hour it peaked in has been made due), a catalogue flare ahead of the flux, a corrected reading
    delivered late, and a five-hour gap."""
    readings = [r for r in july_readings() if r.event_time < datetime(2015, 7, 3, 12, tzinfo=timezone.utc)]
    gap = (datetime(2015, 7, 2, 22, tzinfo=timezone.utc), datetime(2015, 7, 3, 3, tzinfo=timezone.utc))
    readings = [r for r in readings if not gap[0] <= r.event_time < gap[1]]
    corrected = readings[2500].model_copy(update={"xrsb_flux": readings[2500].xrsb_flux * 3})
    readings.insert(3100, corrected)
    peak = datetime(2015, 7, 2, 6, 50, tzinfo=timezone.utc)
    detected = m.FlareObserved(message_id="detected", event_time=peak, start_time=peak - HOUR / 4, peak_time=peak,
                               end_time=peak + HOUR / 2, goes_class="M3.0", class_letter="M", peak_flux=3e-5,
                               source=m.DETECTED_SOURCE)
    peak = datetime(2015, 7, 2, 20, 10, tzinfo=timezone.utc)
    catalogued = m.FlareObserved(message_id="catalogued", event_time=peak, start_time=peak - HOUR / 4,
                                 peak_time=peak, goes_class="X1.2", class_letter="X", peak_flux=1.2e-4,
                                 source="catalog:swpc")
    return readings, [detected, catalogued]


async def replay(stream: StreamForecaster, readings, flares, batch: int) -> list[m.ForecastIssued]:
    for flare in flares:
        stream.on_flare(flare)
    issued = []
    for start in range(0, len(readings), batch):
        issued += await stream.on_readings(readings[start:start + batch])
    return issued


async def test_a_replay_taken_in_batches_issues_exactly_the_forecasts_of_one_reading_at_a_time():
    readings, flares = replay_story()
    slots = ModelSlots(champion=model("v-champion"), challenger=model("v-challenger", coxph_alpha=1.0))
    one_at_a_time = await replay(forecaster(slots), readings, flares, batch=1)
    computations = []

    async def counted(function, *args):
        computations.append(len(args[-1]))
        return function(*args)

    params = FeatureParams.from_settings(load_settings().features)
    batched = StreamForecaster(params, HOUR, slots, nothing_stored, nothing_logged, run=counted)
    in_batches = await replay(batched, readings, flares, batch=1000)

    assert len(one_at_a_time) == 2 * 60  # champion and shadow challenger, hourly (insufficient data in the gap)
    assert {f.status for f in one_at_a_time} == {"ok", "insufficient_data"}
    assert in_batches == one_at_a_time  # every field and number of every message, in the same order
    # one computation per batch (and one more where the detected flare or the late reading made the pending
    # hours be computed first), instead of one per hour
    assert len(computations) < 10 and sum(computations) == 60


async def test_a_promotion_inside_a_batch_applies_from_the_next_computation_with_the_same_numbers():
    readings, flares = replay_story()
    old, new = model("v-old"), model("v-new", coxph_alpha=1.0)
    alone = {}
    for serving in (old, new):
        for forecast in await replay(forecaster(ModelSlots(champion=serving)), readings, flares, batch=1):
            alone[(forecast.model_version, forecast.event_time)] = forecast
    slots = ModelSlots(champion=old)

    async def promoted_while_computing(function, *args):
        """The lifecycle agent swaps the champion while the batch's first forecasts are computed aside."""
        result = function(*args)
        slots.champion = new
        return result

    params = FeatureParams.from_settings(load_settings().features)
    stream = StreamForecaster(params, HOUR, slots, nothing_stored, nothing_logged, run=promoted_while_computing)
    issued = await replay(stream, readings, flares, batch=len(readings))

    versions = [f.model_version for f in issued]
    assert versions[0] == "v-old" and versions[-1] == "v-new"
    assert versions == sorted(versions, key=lambda v: v == "v-new")  # one swap, between two issue times
    assert [f.event_time for f in issued] == sorted({t for _, t in alone})
    assert all(f == alone[(f.model_version, f.event_time)] for f in issued)
