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

import numpy as np
# shared.scoring imports sksurv (for the C-index) on first use, and that takes seconds, over ten on a busy machine:
# loaded with the evaluator instead, not inside its first metrics computation, whose duration also sets the pause
# before the next one (four times as long), so the first figures after a start or restart would come a minute late
import sksurv.metrics  # noqa: F401

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


@dataclass(frozen=True)
class Outcomes:
    """One target class over scored forecasts: probabilities, 0/1 outcomes within 24 h, and the hours to the
    first flare (censored at 24)."""

    p: np.ndarray
    y: np.ndarray
    time: np.ndarray


class Group:
    """The resolved forecasts of one group ordered by the end of their 24-hour window, with the outcomes of
    the scored ones kept as columns, so a window is two bisections and a slice."""

    def __init__(self) -> None:
        self._ends: list[int] = []
        self._resolutions: list[Resolution] = []
        self._scored_ends: list[int] = []
        self._scored: list[Resolution] = []
        self._columns: dict[str, tuple[list[float], list[int], list[float]]] = {t: ([], [], []) for t in TARGET_CLASSES}

    def add(self, resolution: Resolution) -> None:
        end = resolution.forecast.window_end_ns
        position = bisect.bisect_right(self._ends, end)
        self._ends.insert(position, end)
        self._resolutions.insert(position, resolution)
        if not is_scored(resolution):
            return
        position = bisect.bisect_right(self._scored_ends, end)
        self._scored_ends.insert(position, end)
        self._scored.insert(position, resolution)
        for target, (p, y, time) in self._columns.items():
            first = resolution.hours_to_first.get(target)
            p.insert(position, float(resolution.forecast.p_24h[target]))
            y.insert(position, int(first is not None))
            time.insert(position, float(VERIFICATION_HOURS) if first is None else float(first))

    @staticmethod
    def _bounds(ends: list[int], days: int | None, as_of_ns: int) -> slice:
        first = 0 if days is None else bisect.bisect_right(ends, as_of_ns - days * DAY_NS)
        return slice(first, bisect.bisect_right(ends, as_of_ns))

    def window(self, days: int | None, as_of_ns: int) -> list[Resolution]:
        return self._resolutions[self._bounds(self._ends, days, as_of_ns)]

    def scored_outcomes(self, days: int | None, as_of_ns: int, target: str) -> Outcomes:
        bounds = self._bounds(self._scored_ends, days, as_of_ns)
        p, y, time = self._columns[target]
        return Outcomes(np.asarray(p[bounds], dtype=float), np.asarray(y[bounds], dtype=int),
                        np.asarray(time[bounds], dtype=float))

    def all(self) -> list[Resolution]:
        return list(self._resolutions)

    @property
    def newest_resolved_ns(self) -> int:
        return max((r.resolved_ns for r in self._resolutions), default=0)

    def first_scored(self, count: int, target: str) -> Outcomes | None:
        """The outcomes of the `count` earliest scored forecasts, or None while there are fewer."""
        if len(self._scored) < count:
            return None
        p, y, time = self._columns[target]
        return Outcomes(np.asarray(p[:count], dtype=float), np.asarray(y[:count], dtype=int),
                        np.asarray(time[:count], dtype=float))

    def __len__(self) -> int:
        return len(self._resolutions)


class MetricBook:
    """Every resolved forecast, once: a forecast already in the book is never added (or scored) again."""

    def __init__(self, resolutions: Iterable[Resolution] = ()):
        self._groups: dict[GroupKey, Group] = {}
        self._degraded: dict[GroupKey, Group] = {}  # each version's degraded forecasts, scored apart
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
        groups = self._degraded if forecast.degraded else self._groups
        groups.setdefault((forecast.model_version, forecast.shadow), Group()).add(resolution)
        return True

    def group(self, key: GroupKey) -> Group:
        """The version's forecasts made from the flux: what its scores, drift and gates read."""
        return self._groups.get(key) or Group()

    def degraded_group(self, key: GroupKey) -> Group:
        return self._degraded.get(key) or Group()

    def keys(self) -> Iterator[GroupKey]:
        return iter(sorted(set(self._groups) | set(self._degraded)))

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


def target_scores(outcomes: Outcomes, target: str, reference: Reference, bins: int) -> tuple[dict, list]:
    if len(outcomes.p) == 0:
        return {"count": 0}, []
    scores = scoring.binary_scores(
        outcomes.p, outcomes.y, threshold=reference.threshold(target),
        climatology=reference.climatology.get(target, float(outcomes.y.mean())),
    )
    del scores["brier_persistence"], scores["bss_persistence"]  # the stream keeps no persistence forecast
    scores["c_index"] = scoring.concordance_index(outcomes.y.astype(bool), outcomes.time, outcomes.p)
    table = [{"target": target, **row} for row in scoring.reliability_table(outcomes.p, outcomes.y, bins)]
    return scores, table


def window_metrics(
    key: GroupKey, group: Group, window_days: int | None, as_of_ns: int, reference: Reference, bins: int = 10,
    degraded: Group | None = None,
) -> WindowMetrics:
    """The group's figures over the window; the degraded forecasts' own under `degraded.` (e.g.
    `degraded.M.brier`), never mixed into the version's."""
    resolutions = group.window(window_days, as_of_ns)
    metrics: dict[str, float | None] = {
        "resolved_count": len(resolutions),
        "unscorable_count": sum(1 for r in resolutions if not r.scorable),
        "insufficient_data_count": sum(1 for r in resolutions if not r.forecast.scorable_forecast),
    }
    reliability: list[dict] = []
    scored_count = 0
    for target in TARGET_CLASSES:
        outcomes = group.scored_outcomes(window_days, as_of_ns, target)
        scored_count = len(outcomes.p)
        scores, table = target_scores(outcomes, target, reference, bins)
        metrics.update({f"{target}.{name}": value for name, value in scores.items()})
        reliability += table
    if degraded is not None and len(degraded):
        metrics["degraded.resolved_count"] = len(degraded.window(window_days, as_of_ns))
        for target in TARGET_CLASSES:
            scores, _ = target_scores(degraded.scored_outcomes(window_days, as_of_ns, target), target, reference, bins)
            metrics.update({f"degraded.{target}.{name}": value for name, value in scores.items()})
    return WindowMetrics(key[0], key[1], window_name(window_days), as_of_ns, scored_count, metrics, reliability)


def book_metrics(
    book: MetricBook, key: GroupKey, as_of_ns: int, windows_days: Sequence[int], reference: Reference, bins: int = 10,
) -> list[WindowMetrics]:
    """The figures of one group at `as_of_ns` over each rolling window and cumulatively."""
    group, degraded = book.group(key), book.degraded_group(key)
    return [window_metrics(key, group, days, as_of_ns, reference, bins, degraded) for days in [*windows_days, None]]
