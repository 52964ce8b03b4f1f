"""Skill per model version over event-time windows, from the resolved forecasts (pure functions, no I/O).

Every number comes from `shared.scoring`, the functions the trainer's backtest uses, so a replay of the
backtest's forecasts through the stream reports the backtest's figures.

- A group is one model version as champion (`shadow=False`) or as shadow: the two are never mixed.
- A rolling window of D days at `as_of` holds the forecasts whose 24-hour window ended within the D days
  before `as_of` (event time); "all" holds every resolved forecast of the group.
- Scored forecasts are those with probabilities (status ok) and a scorable window; the others are counted.
- Binary scores for ">= class in 24 h" use the decision threshold and the climatology (training base rate)
  recorded with the model; without them, 0.5 and the base rate of the scored forecasts themselves.
- The C-index of each survival target ranks the 24-hour probabilities against the time to the first flare
  in the window, censored at 24 hours.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from shared import scoring
from shared.features import TARGET_CLASSES
from services.evaluator.resolution import HOUR_NS, VERIFICATION_HOURS, Resolution

ALL = "all"
DAY_NS = 24 * HOUR_NS
DEFAULT_THRESHOLD = 0.5
GroupKey = tuple[str, bool]  # (model_version, shadow)


def window_name(days: int | None) -> str:
    return ALL if days is None else f"{days}d"


@dataclass(frozen=True)
class Reference:
    """What the model's own records say to score it against, per target class."""

    thresholds: dict[str, float] = field(default_factory=dict)
    climatology: dict[str, float] = field(default_factory=dict)
    baseline_brier: dict[str, float] = field(default_factory=dict)  # the Brier score recorded at promotion

    def threshold(self, target: str) -> float:
        return self.thresholds.get(target, DEFAULT_THRESHOLD)


def is_scored(resolution: Resolution) -> bool:
    return resolution.scorable and resolution.forecast.scorable_forecast


class Group:
    """The resolved forecasts of one group, ordered by the end of their 24-hour window."""

    def __init__(self) -> None:
        self._ends: list[int] = []
        self._resolutions: list[Resolution] = []

    def add(self, resolution: Resolution) -> None:
        end = resolution.forecast.window_end_ns
        position = bisect.bisect_right(self._ends, end)
        self._ends.insert(position, end)
        self._resolutions.insert(position, resolution)

    def window(self, days: int | None, as_of_ns: int) -> list[Resolution]:
        last = bisect.bisect_right(self._ends, as_of_ns)
        first = 0 if days is None else bisect.bisect_right(self._ends, as_of_ns - days * DAY_NS)
        return self._resolutions[first:last]

    def all(self) -> list[Resolution]:
        return list(self._resolutions)

    @property
    def newest_resolved_ns(self) -> int:
        return max((r.resolved_ns for r in self._resolutions), default=0)

    def first_scored(self, count: int) -> list[Resolution] | None:
        """The `count` earliest scored forecasts, or None while there are fewer."""
        found = []
        for resolution in self._resolutions:
            if is_scored(resolution):
                found.append(resolution)
                if len(found) == count:
                    return found
        return None

    def __len__(self) -> int:
        return len(self._resolutions)


class MetricBook:
    """Every resolved forecast, once: a forecast already in the book is never added (or scored) again."""

    def __init__(self, resolutions: Iterable[Resolution] = ()):
        self._groups: dict[GroupKey, Group] = {}
        self._ids: set[str] = set()
        for resolution in resolutions:
            self.add(resolution)

    def __contains__(self, forecast_id: str) -> bool:
        return forecast_id in self._ids

    def add(self, resolution: Resolution) -> bool:
        forecast = resolution.forecast
        if forecast.forecast_id in self._ids:
            return False
        self._ids.add(forecast.forecast_id)
        self._groups.setdefault((forecast.model_version, forecast.shadow), Group()).add(resolution)
        return True

    def group(self, key: GroupKey) -> Group:
        return self._groups.get(key) or Group()

    def keys(self) -> Iterator[GroupKey]:
        return iter(sorted(self._groups))

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class WindowMetrics:
    model_version: str
    shadow: bool
    window: str
    as_of_ns: int
    scored_count: int
    metrics: dict[str, float | None]
    reliability: list[dict[str, float | int | str | None]]


def outcomes(scored: Sequence[Resolution], target: str) -> tuple[list[float], list[int], list[float]]:
    """Probabilities, 0/1 outcomes within 24 h and times (hours, censored at 24) for one target class."""
    p = [float(r.forecast.p_24h[target]) for r in scored]
    y = [int(r.hours_to_first.get(target) is not None) for r in scored]
    time = [r.hours_to_first[target] if r.hours_to_first.get(target) is not None else float(VERIFICATION_HOURS) for r in scored]
    return p, y, time


def target_scores(scored: Sequence[Resolution], target: str, reference: Reference, bins: int) -> tuple[dict, list]:
    p, y, time = outcomes(scored, target)
    if not scored:
        return {"count": 0}, []
    base_rate = sum(y) / len(y)
    scores = scoring.binary_scores(
        p, y, threshold=reference.threshold(target), climatology=reference.climatology.get(target, base_rate),
    )
    del scores["brier_persistence"], scores["bss_persistence"]  # the stream keeps no persistence forecast
    scores["c_index"] = scoring.concordance_index([bool(v) for v in y], time, p)
    table = [{"target": target, **row} for row in scoring.reliability_table(p, y, bins)]
    return scores, table


def window_metrics(
    key: GroupKey, window_days: int | None, as_of_ns: int, resolutions: Sequence[Resolution], reference: Reference,
    bins: int = 10,
) -> WindowMetrics:
    scored = [r for r in resolutions if is_scored(r)]
    metrics: dict[str, float | None] = {
        "resolved_count": len(resolutions),
        "unscorable_count": sum(1 for r in resolutions if not r.scorable),
        "insufficient_data_count": sum(1 for r in resolutions if not r.forecast.scorable_forecast),
    }
    reliability: list[dict] = []
    for target in TARGET_CLASSES:
        scores, table = target_scores(scored, target, reference, bins)
        metrics.update({f"{target}.{name}": value for name, value in scores.items()})
        reliability += table
    return WindowMetrics(key[0], key[1], window_name(window_days), as_of_ns, len(scored), metrics, reliability)


def book_metrics(
    book: MetricBook, key: GroupKey, as_of_ns: int, windows_days: Sequence[int], reference: Reference, bins: int = 10,
) -> list[WindowMetrics]:
    """The figures of one group at `as_of_ns` over each rolling window and cumulatively."""
    group = book.group(key)
    return [
        window_metrics(key, days, as_of_ns, group.window(days, as_of_ns), reference, bins)
        for days in [*windows_days, None]
    ]
