"""What followed each issue time: the time to the first flare of each target class, censored where the data
cannot tell, and the largest flare class in the next 24 h.

A flare's time is its peak (the time a flare message carries). The event for target C is the first flare of
class C or above, for M of M or above, for X of X. Follow-up ends at the first of: the 168-hour horizon, the
end of the data, or the start of a flux gap of `censor_gap_hours` or more (a flare during a gap may be
missing from the record, so "no flare" there is unknown, not negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.features import HOUR_NS, TARGET_CLASSES, FlareTimeline, hourly_bins

OUTCOME_CLASSES = ("none", "C", "M", "X")


@dataclass(frozen=True)
class Observability:
    """When the record is complete: from `start_ns` to `end_ns`, except in the listed gaps [start, end)."""

    start_ns: int
    end_ns: int
    gap_start_ns: np.ndarray
    gap_end_ns: np.ndarray

    def follow_up_hours(self, issue_ns: np.ndarray) -> np.ndarray:
        """Hours after each issue time during which a flare could not have gone unrecorded."""
        blind_from = np.full(len(issue_ns), self.end_ns, dtype=np.int64)
        if len(self.gap_start_ns):
            next_gap = np.searchsorted(self.gap_end_ns, issue_ns, side="right")  # first gap not over by t
            has_gap = next_gap < len(self.gap_start_ns)
            blind_from[has_gap] = np.minimum(self.gap_start_ns[next_gap[has_gap]], self.end_ns)
        return np.maximum(blind_from - issue_ns, 0) / HOUR_NS

    def with_end(self, end_ns: int) -> "Observability":
        """The same record seen from `end_ns`: nothing after it is known."""
        return Observability(self.start_ns, min(self.end_ns, end_ns), self.gap_start_ns, self.gap_end_ns)

    @property
    def span_days(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / (24 * HOUR_NS)


def observability(observations: pd.DataFrame, censor_gap_hours: int) -> Observability:
    """Where the stored flux says the record is complete: hourly bins with XRS-B data, gaps of
    `censor_gap_hours` or more cut out."""
    bins = hourly_bins(observations)
    valid = bins.index[bins["xrsb"].notna()].as_unit("ns").asi8
    if len(valid) == 0:
        empty = np.array([], dtype=np.int64)
        return Observability(0, 0, empty, empty)
    missing_hours = np.diff(valid) // HOUR_NS - 1
    long_gap = missing_hours >= censor_gap_hours
    gap_start = valid[:-1][long_gap] + HOUR_NS
    gap_end = valid[1:][long_gap]
    return Observability(int(valid[0]), int(valid[-1] + HOUR_NS), gap_start, gap_end)


@dataclass(frozen=True)
class Outcomes:
    """Outcomes aligned with `issue_ns`. `time_hours[c]`/`event[c]`: survival target for class c (censored at
    follow-up). `follow_up_hours`: how long the record is complete after the issue time."""

    issue_ns: np.ndarray
    follow_up_hours: np.ndarray
    time_hours: dict[str, np.ndarray]
    event: dict[str, np.ndarray]
    largest_class_24h: np.ndarray  # index into OUTCOME_CLASSES; meaningful where `observed_24h`

    @property
    def observed_24h(self) -> np.ndarray:
        return self.follow_up_hours >= 24.0

    def within_24h(self, target: str) -> np.ndarray:
        """1 where a flare of at least `target` peaked within 24 h (meaningful where `observed_24h`)."""
        return (self.event[target] & (self.time_hours[target] <= 24.0)).astype(int)

    def take(self, mask: np.ndarray) -> "Outcomes":
        return Outcomes(
            self.issue_ns[mask], self.follow_up_hours[mask],
            {c: v[mask] for c, v in self.time_hours.items()}, {c: v[mask] for c, v in self.event.items()},
            self.largest_class_24h[mask],
        )


def outcomes(issue_ns: np.ndarray, timeline: FlareTimeline, record: Observability, horizon_hours: int) -> Outcomes:
    follow_up = np.minimum(record.follow_up_hours(issue_ns), float(horizon_hours))
    time_hours: dict[str, np.ndarray] = {}
    event: dict[str, np.ndarray] = {}
    for target in TARGET_CLASSES:
        peaks = timeline.at_least(target)
        following = np.searchsorted(peaks, issue_ns, side="right")
        next_hours = np.full(len(issue_ns), np.inf)
        has_next = following < len(peaks)
        next_hours[has_next] = (peaks[following[has_next]] - issue_ns[has_next]) / HOUR_NS
        seen = next_hours <= follow_up
        event[target] = seen
        time_hours[target] = np.where(seen, next_hours, follow_up)
    largest = np.zeros(len(issue_ns), dtype=int)
    for position, target in enumerate(TARGET_CLASSES, start=1):
        largest = np.where(event[target] & (time_hours[target] <= 24.0), position, largest)
    return Outcomes(issue_ns, follow_up, time_hours, event, largest)


def persistence(issue_ns: np.ndarray, timeline: FlareTimeline, target: str) -> np.ndarray:
    """The persistence forecast: 1 if a flare of at least `target` peaked in the 24 h before the issue time."""
    peaks = timeline.at_least(target)
    recent = (np.searchsorted(peaks, issue_ns, side="right")
              - np.searchsorted(peaks, issue_ns - 24 * HOUR_NS, side="right"))
    return (recent > 0).astype(float)

