"""Resolving a forecast: the largest flare in its 24 h window, the time to the first of each class, and
"unscorable" (never "no flare") when the flux record has a gap."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from services.evaluator.resolution import FlareMark, FluxRecord, PendingForecast, observed_hour, resolve, to_ns
from services.trainer import targets
from shared.features import flare_timeline
from tests.support.evaluator_data import at, flare, forecast, hourly_flux, reference_flares, reference_flux

ISSUED = at(10, 12)
GAP_HOURS = 3


def record_of(readings) -> FluxRecord:
    record = FluxRecord()
    for reading in readings:
        hour = observed_hour(reading)
        if hour is not None:
            record.add(hour)
    return record


def outcome(flares, *, missing=frozenset(), issued=ISSUED):
    pending = PendingForecast.from_message(forecast(issued, 0.3))
    record = record_of(hourly_flux(issued - timedelta(days=2), issued + timedelta(days=2), missing=missing))
    return resolve(pending, to_ns(issued + timedelta(days=2)), record, [FlareMark.from_message(f) for f in flares],
                   GAP_HOURS)


def test_the_largest_flare_in_the_window_and_the_first_of_each_class():
    result = outcome([flare(ISSUED + timedelta(hours=3), "C2.0"), flare(ISSUED + timedelta(hours=10), "M1.5"),
                      flare(ISSUED + timedelta(hours=12), "C5.0")])
    assert result.scorable
    assert result.actual_class == "M"
    assert result.hours_to_first == {"C": 3.0, "M": 10.0, "X": None}


def test_the_window_is_after_the_issue_time_up_to_24_hours_and_b_flares_do_not_count():
    result = outcome([flare(ISSUED, "X1.0"), flare(ISSUED + timedelta(hours=5), "B9.0"),
                      flare(ISSUED + timedelta(hours=24), "C1.0"),
                      flare(ISSUED + timedelta(hours=24, minutes=1), "M1.0")])
    assert result.actual_class == "C"
    assert result.hours_to_first == {"C": 24.0, "M": None, "X": None}


def test_a_quiet_day_with_a_complete_record_is_no_flare():
    result = outcome([])
    assert result.scorable and result.actual_class == "none"
    assert result.hours_to_first == {"C": None, "M": None, "X": None}


def test_the_same_flare_from_two_sources_changes_nothing():
    detected = flare(ISSUED + timedelta(hours=6, minutes=2), "M2.1", source="detector")
    catalogued = flare(ISSUED + timedelta(hours=6), "M2.0", source="catalogue")
    assert outcome([detected, catalogued]).hours_to_first == outcome([catalogued]).hours_to_first
    assert outcome([detected, catalogued]).actual_class == "M"


def test_true_flux_peaks_are_ranked_on_the_swpc_scale():
    goes16_m12 = flare(ISSUED + timedelta(hours=2), "M1.2", era="true_flux")  # 0.7 x 1.2e-5: a C8.4 on the SWPC scale
    assert outcome([goes16_m12]).actual_class == "C"


@pytest.mark.parametrize("missing_hours, scorable", [
    ([5, 6], True),            # a short gap: a flare there would still show in the hours around it
    ([5, 6, 7], False),        # three hours without flux: "no flare" would be a guess
    ([-2, -1, 0], False),      # a gap that began before the issue time and runs into the window
    ([-3, -2, -1], True),      # a gap that ended before the window
    ([24, 25, 26], True),      # a gap that starts after the window
    ([23, 24, 25], False),     # a gap that starts in the window's last hour
])
def test_a_gap_of_censor_gap_hours_in_the_window_makes_it_unscorable(missing_hours, scorable):
    missing = {ISSUED + timedelta(hours=h) for h in missing_hours}
    result = outcome([], missing=missing)
    assert result.scorable is scorable
    if not scorable:
        assert result.actual_class is None and "gap" in result.reason


def test_a_flare_in_a_window_with_a_gap_is_still_unscorable():
    """The gap decides: the record cannot say whether a larger flare happened while it was blind."""
    missing = {ISSUED + timedelta(hours=h) for h in (8, 9, 10)}
    assert outcome([flare(ISSUED + timedelta(hours=2), "C3.0")], missing=missing).scorable is False


def test_resolution_agrees_with_the_trainers_targets_on_a_real_year():
    """Live scoring and training targets read history the same way: on the GOES-15 hourly record and the
    SWPC flare list of 2014 (with its real gaps), every hourly issue time gets the same scorability, the same
    largest class and the same first-flare times from both."""
    start, end = at(1, month=1, year=2014), at(1, month=1, year=2015)
    readings = reference_flux(start - timedelta(days=3), end + timedelta(days=3))
    flares = reference_flares(start - timedelta(days=3), end + timedelta(days=3))
    issue_times = pd.date_range(start, end, freq="h", inclusive="left")

    record = record_of(readings)
    marks = [FlareMark.from_message(f) for f in flares]
    peaks = np.array([mark.peak_ns for mark in marks])
    clock = to_ns(end + timedelta(days=3))
    ours = []
    for t in issue_times:
        pending = PendingForecast.from_message(forecast(t.to_pydatetime(), 0.5))
        nearby = [marks[i] for i in np.flatnonzero((peaks > pending.issued_ns) & (peaks <= pending.window_end_ns))]
        ours.append(resolve(pending, clock, record, nearby, GAP_HOURS))

    observations = pd.DataFrame([
        {"time_tag": r.event_time, "satellite": r.satellite, "cadence_seconds": r.cadence_seconds,
         "scaling_era": r.scaling_era, "xrsa_flux": r.xrsa_flux, "xrsb_flux": r.xrsb_flux} for r in readings
    ])
    flare_frame = pd.DataFrame([
        {"peak_time": f.peak_time, "peak_flux": f.peak_flux, "scaling_era": f.scaling_era, "source": f.source}
        for f in flares
    ])
    theirs = targets.outcomes(
        issue_times.as_unit("ns").asi8, flare_timeline(flare_frame), targets.observability(observations, GAP_HOURS),
        168,
    )

    assert [r.scorable for r in ours] == list(theirs.observed_24h)
    assert 0 < sum(not r.scorable for r in ours) < len(ours)  # the year has real gaps, and mostly data
    scorable = theirs.observed_24h
    assert [r.actual_class for r in ours if r.scorable] == [
        targets.OUTCOME_CLASSES[i] for i in theirs.largest_class_24h[scorable]]
    for target in ("C", "M", "X"):
        mine = [r.hours_to_first[target] for r in ours if r.scorable]
        within = theirs.within_24h(target)[scorable].astype(bool)
        trainer = np.where(within, theirs.time_hours[target][scorable], np.nan)
        assert np.allclose(np.array([np.nan if v is None else v for v in mine]), trainer, equal_nan=True)

