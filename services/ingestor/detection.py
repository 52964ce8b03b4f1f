"""Flares from 1-minute XRS-B flux with NOAA's event definition (pure functions, no I/O).

NOAA SWPC's definition, as applied to the GOES X-ray event lists:
- start: the first minute of (at least) 4 consecutive minutes in which the 0.1-0.8 nm flux rises at every
  step, the last of the rise at least 1.4 times the first;
- peak: the minute of maximum flux;
- end: the first minute after the peak when the flux is back halfway from the peak to the pre-flare level
  (the flux at the start).
A new start found while a flare is decaying ends that flare (NOAA lists overlapping events separately).
A gap in the data longer than `MAX_GAP` while a flare is open closes it with an unknown end: its peak may
have been missed, so it is reported with what was seen rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from services.ingestor.goes import class_of_flux

RISE_MINUTES = 4
RISE_RATIO = 1.4
MAX_GAP = timedelta(minutes=30)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class DetectedFlare:
    start_time: datetime
    peak_time: datetime
    end_time: datetime | None  # None: the data ended (or stopped) before the flux decayed halfway
    peak_flux: float
    background_flux: float

    @property
    def goes_class(self) -> str:
        return class_of_flux(self.peak_flux)

    @property
    def ended(self) -> bool:
        return self.end_time is not None


def _starts_at(times: Sequence[datetime], flux: Sequence[float | None], i: int) -> bool:
    """NOAA's start criterion at index i: flux rising at every step for at least 4 consecutive minutes, the
    last minute of the rise at least 1.4 times the first. A steady rise longer than 4 minutes counts as one
    sequence (SWPC's lists start slow C1 flares that way), so the ratio is taken over the whole rise."""
    first = flux[i]
    if first is None:
        return False
    k = i
    while (
        k + 1 < len(flux)
        and flux[k + 1] is not None
        and flux[k + 1] > flux[k]  # type: ignore[operator]
        and times[k + 1] - times[k] == MINUTE
    ):
        k += 1
        if k - i + 1 >= RISE_MINUTES and flux[k] >= RISE_RATIO * first:  # type: ignore[operator]
            return True
    return False


def detect_flares(times: Sequence[datetime], xrsb: Sequence[float | None]) -> list[DetectedFlare]:
    """Flares in a 1-minute series sorted by time (`None` = missing minute). The last flare has no end when
    the series stops before it decayed."""
    if len(times) != len(xrsb):
        raise ValueError("times and flux must have the same length")
    flares: list[DetectedFlare] = []
    i, n = 0, len(times)
    while i < n:
        if not _starts_at(times, xrsb, i):
            i += 1
            continue
        start, background = i, xrsb[i]
        peak = i
        j = i + 1
        end: int | None = None
        next_start: int | None = None
        last_seen = i
        while j < n:
            value = xrsb[j]
            if value is None:
                j += 1
                continue
            if times[j] - times[last_seen] > MAX_GAP:
                break
            last_seen = j
            if value > xrsb[peak]:  # type: ignore[operator]
                peak = j
            elif j > start + RISE_MINUTES - 1 and _starts_at(times, xrsb, j):
                next_start = j
                break
            elif value <= (xrsb[peak] + background) / 2:  # type: ignore[operator]
                end = j
                break
            j += 1
        if next_start is not None:
            end_time: datetime | None = times[next_start]
        else:
            end_time = times[end] if end is not None else None
        flares.append(DetectedFlare(times[start], times[peak], end_time, float(xrsb[peak]), float(background)))  # type: ignore[arg-type]
        if next_start is not None:
            i = next_start
        elif end is not None:
            i = end + 1
        else:
            i = max(j, i + 1)
    return flares
