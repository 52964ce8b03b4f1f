"""The automatic rollback rule: a newly promoted champion whose live skill falls clearly below its
predecessor's, early in its reign, gives the reign back.

Both are judged by the evaluator's live metrics over the same window name. "Clearly below" is by more than
the configured margin, in the metric's own units (all compared metrics are on a 0..1 scale): Brier higher by
more than the margin, or a skill score (precision, recall, F1, TSS, HSS, BSS, ROC AUC) lower by more than it.
"Early" is within the monitoring window of event time after the promotion; later, drift alerts and retraining
take over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

LOWER_IS_BETTER = frozenset({"brier"})
HIGHER_IS_BETTER = frozenset({"precision", "recall", "f1", "tss", "hss", "bss_climatology", "roc_auc"})


@dataclass(frozen=True)
class LiveMetrics:
    version: str
    window: str
    scored_count: int
    as_of: datetime
    metrics: Mapping[str, float | None]


def direction(key: str) -> bool | None:
    """True if lower is better for this metric key, False if higher is, None if it is not a skill measure.
    A key may be qualified by what it scores, e.g. 'M.brier' or 'p_ge_m.precision': the last part names it."""
    name = key.rsplit(".", 1)[-1]
    if name in LOWER_IS_BETTER:
        return True
    if name in HIGHER_IS_BETTER:
        return False
    return None


def degradations(new: Mapping[str, float | None], previous: Mapping[str, float | None], margin: float) -> list[str]:
    """Each metric on which `new` is worse than `previous` by more than `margin`, described."""
    found = []
    for key in sorted(set(new) & set(previous)):
        lower_is_better = direction(key)
        a, b = new[key], previous[key]
        if lower_is_better is None or a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            continue
        worse_by = (a - b) if lower_is_better else (b - a)
        if worse_by > margin:
            found.append(f"{key} {a:.4g} vs {b:.4g} ({'higher' if lower_is_better else 'lower'} by {worse_by:.4g} > {margin:g})")
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
        f"live metrics of {champion.version} over {champion.window} ({champion.scored_count} scored, {hours:.0f} h after "
        f"promotion) fell below those of {predecessor.version}: " + "; ".join(worse)
    )
