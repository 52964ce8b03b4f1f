"""The automatic rollback rule: a newly promoted champion whose live skill falls clearly below its
predecessor's, early in its reign, gives the reign back.

Both are judged by the evaluator's live metrics over the same window name, on the Brier score of each target
class ("C.brier", "M.brier", ...): a proper score that stays meaningful on the few dozen forecasts scored in
the first hours, where precision, recall or TSS swing from 0 to 1 on a single flare. "Clearly below" is a
Brier score higher by more than the configured margin (absolute). "Early" is within the monitoring window of
event time after the promotion; later, drift alerts and retraining take over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

COMPARED_METRIC = "brier"


@dataclass(frozen=True)
class LiveMetrics:
    version: str
    window: str
    scored_count: int
    as_of: datetime
    metrics: Mapping[str, float | None]


def compared(key: str) -> bool:
    """A metric key may be qualified by what it scores ('M.brier'): the last part names the metric."""
    return key.rsplit(".", 1)[-1] == COMPARED_METRIC


def degradations(new: Mapping[str, float | None], previous: Mapping[str, float | None], margin: float) -> list[str]:
    """Each Brier score on which `new` is higher than `previous` by more than `margin`, described."""
    found = []
    for key in sorted(k for k in set(new) & set(previous) if compared(k)):
        a, b = new[key], previous[key]
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            continue
        if a - b > margin:
            found.append(f"{key} {a:.4g} vs {b:.4g} (higher by {a - b:.4g} > {margin:g})")
    return found


def rollback_reason(
    champion: LiveMetrics, predecessor: LiveMetrics, *, promoted_at: datetime, window: timedelta, margin: float,
    min_scored: int,
) -> str | None:
    """Why the champion must be rolled back to its predecessor, or None if it keeps its place."""
    if not (promoted_at <= champion.as_of <= promoted_at + window):
        return None
    if champion.window != predecessor.window or champion.scored_count < min_scored:
        return None
    worse = degradations(champion.metrics, predecessor.metrics, margin)
    if not worse:
        return None
    hours = (champion.as_of - promoted_at).total_seconds() / 3600
    return (
        f"live metrics of {champion.version} over {champion.window} ({champion.scored_count} scored, {hours:.0f} h "
        f"after promotion) fell below those of {predecessor.version}: " + "; ".join(worse)
    )
