"""NOAA's event definition applied to 1-minute XRS-B: synthetic curves, then a real month against SWPC's list."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.ingestor.detection import detect_flares
from services.ingestor.goes import class_of_flux, flux_of_class
from services.ingestor.readers import read_path
from tests.conftest import DATA_DIR

T0 = datetime(2015, 7, 1, tzinfo=timezone.utc)
BACKGROUND = 4e-7


def minutes(values: list[float | None]) -> tuple[list[datetime], list[float | None]]:
    return [T0 + timedelta(minutes=i) for i in range(len(values))], values


def flare_curve(peak: float, rise: int = 6, decay: int = 20, background: float = BACKGROUND) -> list[float]:
    """Background, a geometric rise to `peak`, a linear decay back to background."""
    up = [background * (peak / background) ** ((i + 1) / rise) for i in range(rise)]
    down = [peak - (peak - background) * (i + 1) / decay for i in range(decay)]
    return up + down


def test_a_flare_starts_at_its_rise_peaks_at_the_maximum_and_ends_halfway_back():
    values = [BACKGROUND] * 10 + flare_curve(2.1e-6) + [BACKGROUND] * 10
    (flare,) = detect_flares(*minutes(values))
    peak_index = values.index(max(values))
    halfway = (max(values) + BACKGROUND) / 2
    end_index = next(i for i in range(peak_index, len(values)) if values[i] <= halfway)
    assert flare.start_time == T0 + timedelta(minutes=9)  # the last quiet minute is the first of the rise
    assert flare.peak_time == T0 + timedelta(minutes=peak_index)
    assert flare.end_time == T0 + timedelta(minutes=end_index)
    assert (flare.goes_class, flare.peak_flux) == ("C2.1", pytest.approx(2.1e-6))


def test_a_rise_short_of_forty_percent_is_no_flare():
    values = [BACKGROUND] * 10 + [BACKGROUND * (1 + 0.08 * i) for i in range(1, 5)] + [BACKGROUND] * 10
    assert detect_flares(*minutes(values)) == []


def test_a_missing_minute_inside_the_rise_does_not_make_a_start():
    values: list[float | None] = ([BACKGROUND] * 10 + [BACKGROUND * 1.2, None, BACKGROUND * 2, BACKGROUND * 3]
                                  + [BACKGROUND] * 10)
    assert detect_flares(*minutes(values)) == []


def test_a_new_rise_during_the_decay_is_a_second_flare_that_ends_the_first():
    first = flare_curve(5e-6, decay=30)
    second_start = 10 + len(first[:12])  # rise again while still well above halfway
    values = [BACKGROUND] * 10 + first[:12] + flare_curve(2e-5, background=first[11]) + [BACKGROUND] * 40
    one, two = detect_flares(*minutes(values))
    assert one.goes_class.startswith("C") and two.goes_class.startswith("M")
    assert one.end_time == two.start_time == T0 + timedelta(minutes=second_start - 1)


def test_a_flare_still_decaying_when_the_data_stop_has_no_end():
    values = [BACKGROUND] * 10 + flare_curve(3e-5)[:9]
    (flare,) = detect_flares(*minutes(values))
    assert flare.end_time is None and not flare.ended and flare.goes_class.startswith("M")


def test_classes_and_peak_fluxes_convert_both_ways():
    for goes_class in ("A5.0", "B9.9", "C2.1", "M1.0", "X9.3", "X17.2"):
        assert class_of_flux(flux_of_class(goes_class)) == goes_class
    assert class_of_flux(2.19e-6) == "C2.1"  # NOAA truncates
    assert flux_of_class("X10") == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        flux_of_class("C")


def test_detection_on_july_2015_recovers_swpcs_c_class_and_larger_flares():
    flux = read_path(DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz").flux
    detected = detect_flares([r.time_tag for r in flux], [r.xrsb_flux for r in flux])
    big = [f for f in detected if f.goes_class[0] in "CMX"]
    listed = [
        f for f in read_path(DATA_DIR / "flare_lists" / "swpc_flarelist_sc24_2010_2015.csv.gz").flares
        if flux[0].time_tag <= f.peak_time <= flux[-1].time_tag
    ]
    unmatched = list(big)
    recovered = []
    for flare in listed:  # one detection per listed flare: peak within 10 minutes, same class letter
        match = next((d for d in unmatched if abs(d.peak_time - flare.peak_time) <= timedelta(minutes=10)
                      and d.goes_class[0] == flare.class_letter), None)
        if match is not None:
            unmatched.remove(match)
            recovered.append(flare)
    recall = len(recovered) / len(listed)
    print(f"\nJuly 2015: {len(listed)} C+ flares listed by SWPC, {len(big)} C+ detected "
          f"({len(detected)} of all classes); recovered {len(recovered)} ({recall:.0%}); "
          f"{len(unmatched)} detections not in the list: "
          f"{[(f.peak_time.strftime('%d %H:%M'), f.goes_class) for f in unmatched]}")
    assert len(listed) == 46
    assert recall >= 0.9
    assert len(unmatched) <= 0.1 * len(big)
