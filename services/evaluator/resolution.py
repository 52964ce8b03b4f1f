"""What followed a forecast: the largest flare in its 24-hour window, the time to the first flare of each
class, or "unscorable" when the flux record has a gap in the window (pure functions, no I/O).

The rules are the trainer's (services/trainer/targets.py), so live scoring, training targets and the
backtest read the same history the same way:
- A flare's time is its peak; the window of a forecast issued at t is (t, t + 24 h].
- Classes are ranked on the SWPC scale (true-flux GOES-16+ peaks are scaled first); only C and above count,
  and the same flare reported by two sources is harmless: the largest class and the first peak do not change.
- The flux record is read as hourly bins holding XRS-B flux. A run of `censor_gap_hours` or more empty bins
  that touches the window makes it unscorable: a flare could have gone unrecorded, so "no flare" is unknown.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, MutableMapping

import numpy as np

from shared import messages as m
from shared.features import CLASS_RANK, TARGET_CLASSES, flare_rank

VERIFICATION_HOURS = 24
HOUR_NS = 3_600_000_000_000
WINDOW_NS = VERIFICATION_HOURS * HOUR_NS
RANK_CLASS = {rank: letter for letter, rank in CLASS_RANK.items()}


def to_ns(value: datetime) -> int:
    value = m.utc(value)
    return (value - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000


def from_ns(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=value // 1000)


@dataclass(frozen=True)
class PendingForecast:
    """What scoring needs from a `ForecastIssued`; also the value kept in the pending-forecasts table."""

    forecast_id: str
    issued_ns: int
    model_version: str
    shadow: bool
    status: str
    p_24h: dict[str, float | None]  # target class -> probability of a flare of at least it within 24 h
    correlation_id: str | None = None
    degraded: bool = False  # from the flare history alone: scored apart from the version's own forecasts

    @classmethod
    def from_message(cls, forecast: m.ForecastIssued) -> "PendingForecast":
        p = {c: forecast.survival[c].probability_within_24h if c in forecast.survival else None for c in TARGET_CLASSES}
        return cls(forecast.message_id, to_ns(forecast.event_time), forecast.model_version, forecast.shadow,
                   forecast.status, p, forecast.correlation_id, forecast.degraded)

    @property
    def window_end_ns(self) -> int:
        return self.issued_ns + WINDOW_NS

    @cached_property
    def scorable_forecast(self) -> bool:
        """A forecast with a probability for every target (an "insufficient data" one has none to score)."""
        return self.status == "ok" and all(p is not None for p in self.p_24h.values())

    def to_dict(self) -> dict:
        return {"forecast_id": self.forecast_id, "issued_ns": self.issued_ns, "model_version": self.model_version,
                "shadow": self.shadow, "status": self.status, "p_24h": self.p_24h,
                "correlation_id": self.correlation_id, "degraded": self.degraded}

    @classmethod
    def from_dict(cls, data: Mapping) -> "PendingForecast":
        return cls(data["forecast_id"], int(data["issued_ns"]), data["model_version"], bool(data["shadow"]),
                   data["status"], dict(data["p_24h"]), data.get("correlation_id"), bool(data.get("degraded", False)))


@dataclass(frozen=True)
class FlareMark:
    """A flare as resolution reads it: its peak time and its class rank on the SWPC scale."""

    peak_ns: int
    rank: int

    @classmethod
    def from_values(cls, peak_time: datetime, peak_flux: float, scaling_era: str) -> "FlareMark":
        return cls(to_ns(peak_time), int(flare_rank(np.array([peak_flux]), np.array([scaling_era]))[0]))

    @classmethod
    def from_message(cls, flare: m.FlareObserved) -> "FlareMark":
        return cls.from_values(flare.peak_time, flare.peak_flux, flare.scaling_era)


class FlareRecord:
    """Flares by id over any mapping id -> [peak_ns, rank] (a faust table in the service, a dict elsewhere),
    with a sorted index of peaks for window look-ups, rebuilt when a flare is added or forgotten."""

    def __init__(self, store: MutableMapping[str, list] | None = None):
        self.store: MutableMapping[str, list] = store if store is not None else {}
        self._peaks: list[int] | None = None
        self._marks: list[FlareMark] = []

    def __contains__(self, flare_id: str) -> bool:
        return flare_id in self.store

    def put(self, flare_id: str, mark: FlareMark) -> None:
        known = flare_id in self.store
        self.store[flare_id] = [mark.peak_ns, mark.rank]
        if known or self._peaks is None:
            self._peaks = None  # a corrected report: rebuild on the next look-up
            return
        position = bisect.bisect_right(self._peaks, mark.peak_ns)
        self._peaks.insert(position, mark.peak_ns)
        self._marks.insert(position, mark)

    def forget_before(self, time_ns: int) -> None:
        for flare_id in [k for k, (peak, _) in self.store.items() if peak < time_ns]:
            del self.store[flare_id]
        self._peaks = None

    def between(self, start_ns: int, end_ns: int) -> list[FlareMark]:
        """The flares peaking in (start_ns, end_ns]."""
        if self._peaks is None:
            self._marks = sorted((FlareMark(int(peak), int(rank)) for peak, rank in self.store.values()),
                                 key=lambda f: f.peak_ns)
            self._peaks = [mark.peak_ns for mark in self._marks]
        return self._marks[bisect.bisect_right(self._peaks, start_ns):bisect.bisect_right(self._peaks, end_ns)]


@dataclass(frozen=True)
class Resolution:
    forecast: PendingForecast
    resolved_ns: int  # event time (the flux clock) when it was resolved
    scorable: bool
    actual_class: str | None  # "none", "C", "M", "X"; None when unscorable
    hours_to_first: dict[str, float | None]  # None: no flare of at least that class in the window
    reason: str | None = None

    def message(self) -> m.ForecastResolved:
        f = self.forecast
        return m.ForecastResolved(
            message_id=m.stable_id("outcome", f.forecast_id), event_time=from_ns(self.resolved_ns),
            correlation_id=f.correlation_id, forecast_id=f.forecast_id, model_version=f.model_version,
            shadow=f.shadow, scorable=self.scorable, reason=self.reason, actual_class=self.actual_class,
            hours_to_first=self.hours_to_first,
        )


def hour_of(time_ns: int) -> int:
    return time_ns // HOUR_NS


def observed_hour(observation: m.FluxObserved) -> int | None:
    """The hourly bin a reading fills, or None when it holds no usable XRS-B flux."""
    if observation.xrsb_flux is None or observation.xrsb_flux <= 0:
        return None
    return hour_of(to_ns(observation.event_time))


class FluxRecord:
    """The hourly bins holding XRS-B flux, over any mapping hour -> True (a faust table in the service, a dict
    elsewhere), with the first and last bin kept at hand."""

    def __init__(self, store: MutableMapping[int, bool] | None = None):
        self.store: MutableMapping[int, bool] = store if store is not None else {}
        hours = [int(hour) for hour in self.store]
        self.earliest = min(hours, default=None)
        self.latest = max(hours, default=None)

    def add(self, hour: int) -> bool:
        """Record a bin; True when it was not known yet."""
        if hour in self.store:
            return False
        self.store[hour] = True
        self.earliest = hour if self.earliest is None else min(self.earliest, hour)
        self.latest = hour if self.latest is None else max(self.latest, hour)
        return True

    def forget_before(self, hour: int) -> None:
        for old in [h for h in self.store if h < hour]:
            del self.store[old]
        self.earliest = min((int(h) for h in self.store), default=None)

    def long_gap_in(self, start_ns: int, end_ns: int, censor_gap_hours: int) -> bool:
        """Whether a run of at least `censor_gap_hours` empty bins overlaps [start_ns, end_ns), or the record
        does not reach the window's end. As in the trainer's record of observability, a run is bounded by
        observed bins on both sides: hours before the first bin are not a gap."""
        first, last = hour_of(start_ns), hour_of(end_ns - 1)
        if self.latest is None or last > self.latest:
            return True
        hour = max(first, self.earliest)
        while hour <= last:
            if hour in self.store:
                hour += 1
                continue
            run_start, run_end = hour, hour
            while run_start - 1 not in self.store:  # stops at the first bin at the latest
                run_start -= 1
            while run_end + 1 not in self.store:  # stops at the last bin at the latest
                run_end += 1
            if run_end - run_start + 1 >= censor_gap_hours:
                return True
            hour = run_end + 1
        return False


def is_due(forecast: PendingForecast, clock_ns: int, grace_ns: int) -> bool:
    """Its window has ended, and late flare reports have had `grace_ns` of event time to arrive."""
    return clock_ns >= forecast.window_end_ns + grace_ns


def resolve(
    forecast: PendingForecast, clock_ns: int, record: FluxRecord, flares: Iterable[FlareMark], censor_gap_hours: int,
) -> Resolution:
    """The outcome of a forecast whose window has passed (the stream and the batch command both call this).
    `flares` may hold flares outside the window; they are ignored."""
    start, end = forecast.issued_ns, forecast.window_end_ns
    if record.long_gap_in(start, end, censor_gap_hours):
        return Resolution(forecast, clock_ns, False, None, {},
                          f"flux gap of {censor_gap_hours} h or more in the {VERIFICATION_HOURS} h window")
    inside = [flare for flare in flares if start < flare.peak_ns <= end and flare.rank >= CLASS_RANK["C"]]
    largest = max((flare.rank for flare in inside), default=None)
    hours_to_first: dict[str, float | None] = {}
    for target in TARGET_CLASSES:
        peaks = [flare.peak_ns for flare in inside if flare.rank >= CLASS_RANK[target]]
        hours_to_first[target] = (min(peaks) - start) / HOUR_NS if peaks else None
    return Resolution(forecast, clock_ns, True, RANK_CLASS[largest] if largest is not None else "none", hours_to_first)
