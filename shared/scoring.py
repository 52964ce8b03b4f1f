"""Forecast verification scores: pure functions on arrays, shared by the offline backtest and the streaming
evaluator so that the numbers one reports are the numbers the other computes.

Binary scores take `p` (forecast probabilities in [0, 1]) and `y` (0/1 outcomes). A score that is undefined
for the data (for example ROC AUC when only one outcome occurred) is None, never NaN or an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import rankdata

# Every score takes a list or a numpy array alike.
Floats = Sequence[float] | np.ndarray
Ints = Sequence[int] | np.ndarray
Bools = Sequence[bool] | np.ndarray


def _arrays(p: Floats, y: Ints) -> tuple[np.ndarray, np.ndarray]:
    p_arr = np.asarray(p, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if p_arr.shape != y_arr.shape:
        raise ValueError(f"{len(p_arr)} forecasts but {len(y_arr)} outcomes")
    return p_arr, y_arr


def brier_score(p: Floats, y: Ints) -> float | None:
    p_arr, y_arr = _arrays(p, y)
    if len(p_arr) == 0:
        return None
    return float(np.mean((p_arr - y_arr) ** 2))


def brier_skill_score(p: Floats, y: Ints, reference: Floats) -> float | None:
    """1 - BS/BS_ref: positive when the forecast beats the reference forecast on the same outcomes."""
    score, ref = brier_score(p, y), brier_score(reference, y)
    if score is None or not ref:
        return None
    return 1.0 - score / ref


def roc_auc(p: Floats, y: Ints) -> float | None:
    """Area under the ROC curve (Mann-Whitney form, ties count half); None without both outcomes."""
    p_arr, y_arr = _arrays(p, y)
    positives = int(y_arr.sum())
    negatives = len(y_arr) - positives
    if positives == 0 or negatives == 0:
        return None
    # average ranks over ties, vectorised: the skill benchmark's bootstrap computes thousands of these
    rank_sum = rankdata(p_arr, method="average")[y_arr == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


@dataclass(frozen=True)
class Contingency:
    hits: int
    false_alarms: int
    misses: int
    correct_negatives: int

    @property
    def total(self) -> int:
        return self.hits + self.false_alarms + self.misses + self.correct_negatives

    def precision(self) -> float | None:
        forecast_yes = self.hits + self.false_alarms
        return self.hits / forecast_yes if forecast_yes else None

    def recall(self) -> float | None:
        observed_yes = self.hits + self.misses
        return self.hits / observed_yes if observed_yes else None

    def f1(self) -> float | None:
        denominator = 2 * self.hits + self.false_alarms + self.misses
        return 2 * self.hits / denominator if denominator else None

    def tss(self) -> float | None:
        """True skill statistic: hit rate minus false-alarm rate."""
        observed_yes = self.hits + self.misses
        observed_no = self.false_alarms + self.correct_negatives
        if not observed_yes or not observed_no:
            return None
        return self.hits / observed_yes - self.false_alarms / observed_no

    def hss(self) -> float | None:
        """Heidke skill score: accuracy relative to random forecasts with the same marginals."""
        a, b, c, d = self.hits, self.false_alarms, self.misses, self.correct_negatives
        denominator = (a + c) * (c + d) + (a + b) * (b + d)
        return 2.0 * (a * d - b * c) / denominator if denominator else None


def contingency(p: Floats, y: Ints, threshold: float) -> Contingency:
    """Yes-forecasts are p >= threshold."""
    p_arr, y_arr = _arrays(p, y)
    yes = p_arr >= threshold
    happened = y_arr == 1
    return Contingency(
        hits=int((yes & happened).sum()),
        false_alarms=int((yes & ~happened).sum()),
        misses=int((~yes & happened).sum()),
        correct_negatives=int((~yes & ~happened).sum()),
    )


def best_threshold(p: Floats, y: Ints, candidates: Floats | None = None) -> float:
    """The probability threshold that maximises F1 on (p, y): chosen on training data, applied to new data."""
    grid = np.asarray(candidates if candidates is not None else np.round(np.arange(0.02, 0.96, 0.01), 2))
    scores = [contingency(p, y, float(t)).f1() or 0.0 for t in grid]
    return float(grid[int(np.argmax(scores))])


def reliability_table(p: Floats, y: Ints, bins: int = 10) -> list[dict[str, float | int | None]]:
    """Per probability bin: how many forecasts, their mean probability and how often the event happened."""
    p_arr, y_arr = _arrays(p, y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p_arr, side="right") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        inside = which == i
        count = int(inside.sum())
        rows.append({
            "bin_lower": float(edges[i]),
            "bin_upper": float(edges[i + 1]),
            "count": count,
            "mean_forecast": float(p_arr[inside].mean()) if count else None,
            "observed_frequency": float(y_arr[inside].mean()) if count else None,
        })
    return rows


def binary_scores(
    p: Floats, y: Ints, *, threshold: float, climatology: float | Floats,
    persistence: Floats | None = None,
) -> dict[str, float | int | None]:
    """Every binary score the reports and the metrics topic carry, under the names they carry them.

    `climatology` is the base rate of the training period (a number, or one value per forecast); `persistence`
    is the forecast "what happened in the previous window happens again" (1 or 0 per forecast).
    """
    p_arr, y_arr = _arrays(p, y)
    clim = np.broadcast_to(np.asarray(climatology, dtype=float), p_arr.shape)
    table = contingency(p_arr, y_arr, threshold)
    return {
        "count": int(len(p_arr)),
        "events": int(y_arr.sum()),
        "base_rate": float(y_arr.mean()) if len(y_arr) else None,
        "brier": brier_score(p_arr, y_arr),
        "brier_climatology": brier_score(clim, y_arr),
        "bss_climatology": brier_skill_score(p_arr, y_arr, clim),
        "brier_persistence": brier_score(persistence, y_arr) if persistence is not None else None,
        "bss_persistence": brier_skill_score(p_arr, y_arr, persistence) if persistence is not None else None,
        "roc_auc": roc_auc(p_arr, y_arr),
        "threshold": float(threshold),
        "hits": table.hits,
        "false_alarms": table.false_alarms,
        "misses": table.misses,
        "correct_negatives": table.correct_negatives,
        "precision": table.precision(),
        "recall": table.recall(),
        "f1": table.f1(),
        "tss": table.tss(),
        "hss": table.hss(),
    }


# ---- survival --------------------------------------------------------------------------------------------


def concordance_index(event: Bools, time: Floats, risk: Floats) -> float | None:
    """Harrell's C-index: how often the higher-risk forecast is the one whose flare came first."""
    from sksurv.metrics import concordance_index_censored

    event_arr = np.asarray(event, dtype=bool)
    if event_arr.sum() == 0:
        return None
    try:
        return float(concordance_index_censored(event_arr, np.asarray(time, dtype=float),
                                                np.asarray(risk, dtype=float))[0])
    except Exception:  # no comparable pair (e.g. a single event at the shortest time)
        return None


def integrated_brier(
    event: Bools, time: Floats, survival: np.ndarray, time_points: Floats,
) -> float | None:
    """Integrated Brier score of survival curves `survival[i, j]` = S_i(time_points[j]), censoring weighted by
    the Kaplan-Meier estimate of the same outcomes. Time points outside the observed follow-up are dropped."""
    from sksurv.metrics import integrated_brier_score
    from sksurv.util import Surv

    event_arr = np.asarray(event, dtype=bool)
    time_arr = np.asarray(time, dtype=float)
    points = np.asarray(time_points, dtype=float)
    if event_arr.sum() == 0 or len(time_arr) < 2:
        return None
    usable = (points >= time_arr.min()) & (points < time_arr.max())
    if usable.sum() < 2:
        return None
    outcomes = Surv.from_arrays(event_arr, time_arr)
    try:
        return float(integrated_brier_score(outcomes, outcomes, np.asarray(survival)[:, usable], points[usable]))
    except ValueError:
        return None


# ---- skill benchmark ---------------------------------------------------------------------------------------


def murphy_decomposition(p: Floats, y: Ints, bins: int = 10) -> dict[str, float | None]:
    """Murphy's (1973) decomposition of the Brier score over `bins` equal probability bins:
    BS = reliability - resolution + uncertainty (exact when the forecasts are constant within each bin).
    Reliability: how far each bin's mean forecast is from its observed frequency (lower is better);
    resolution: how far the bins' frequencies are from the sample's (higher is better); uncertainty: the
    sample climatology's Brier score, base rate x (1 - base rate)."""
    p_arr, y_arr = _arrays(p, y)
    if len(p_arr) == 0:
        return {"reliability": None, "resolution": None, "uncertainty": None}
    base_rate = float(y_arr.mean())
    reliability = resolution = 0.0
    for row in reliability_table(p_arr, y_arr, bins):
        count, mean_forecast, frequency = row["count"], row["mean_forecast"], row["observed_frequency"]
        if count and mean_forecast is not None and frequency is not None:  # an empty bin has no means
            weight = count / len(p_arr)
            reliability += weight * (mean_forecast - frequency) ** 2
            resolution += weight * (frequency - base_rate) ** 2
    return {"reliability": reliability, "resolution": resolution, "uncertainty": base_rate * (1.0 - base_rate)}


def sample_climatology_bss(p: Floats, y: Ints) -> float | None:
    """Brier skill score against the sample climatology (the event rate of the scored days themselves), as the
    flare-forecasting benchmark reports it (Leka et al. 2019); None when the rate is 0 or 1."""
    p_arr, y_arr = _arrays(p, y)
    if len(p_arr) == 0:
        return None
    return brier_skill_score(p_arr, y_arr, np.full(len(p_arr), y_arr.mean()))


def block_bootstrap_indices(n: int, block_length: int, resamples: int, seed: int = 0) -> np.ndarray:
    """`resamples` rows of `n` indices made of consecutive blocks of `block_length` (the last block of the
    series may be shorter), drawn with replacement: days in one block keep their serial dependence (a solar
    rotation's worth of active regions) that day-by-day resampling would pretend away."""
    if n <= 0 or block_length <= 0 or resamples <= 0:
        raise ValueError("n, block_length and resamples must be positive")
    blocks = [np.arange(start, min(start + block_length, n)) for start in range(0, n, block_length)]
    rng = np.random.default_rng(seed)
    rows = np.empty((resamples, n), dtype=np.int64)
    for r in range(resamples):
        drawn: list[np.ndarray] = []
        size = 0
        while size < n:
            block = blocks[int(rng.integers(len(blocks)))]
            drawn.append(block)
            size += len(block)
        rows[r] = np.concatenate(drawn)[:n]
    return rows


def percentile_interval(values: Floats, level: float = 0.95) -> tuple[float, float] | None:
    """The central `level` percentile interval of bootstrap values; NaN values (a statistic undefined on a
    resample, e.g. AUC without events) are left out; None if nothing is left."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)
