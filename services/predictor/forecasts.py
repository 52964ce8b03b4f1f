"""Forecasts at one instant from a loaded model and the feature vector there, and the views the API gives of
them (buckets of the caller's choosing, class probabilities over 24 or 48 hours).

The stream and the API both go through `forecast_point`, so the same features give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from shared import messages as m
from shared.features import FeatureVector
from shared.forecast_model import (
    OUTCOME_CLASSES, Forecast, ForecastModel, bucket_edges, bucket_labels, forecast_message,
)


class ForecastUnavailable(Exception):
    """No forecast can be given for the request; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PointForecast:
    """A forecast with what produced it: the model and the features (which further views are computed from)."""

    model: ForecastModel
    features: FeatureVector
    forecast: Forecast

    def message(self, *, shadow: bool = False, correlation_id: str | None = None) -> m.ForecastIssued:
        return forecast_message(self.forecast, self.model.version, horizon_hours=self.model.horizon_hours,
                                shadow=shadow, correlation_id=correlation_id)

    def survival_on(self, target: str, hours: list[float]) -> np.ndarray:
        """S(t) of the target's model at `hours`, for this instant's features (of its flare-history model for
        a degraded forecast)."""
        degraded = self.forecast.degraded
        names = self.model.flare_history_names if degraded else self.model.feature_names
        row = np.array([[self.features.values[name] for name in names]], dtype=float)
        return self.model.survival_curves(target, row, hours, degraded=degraded)[0]


def forecast_id(model_version: str, shadow: bool, issued_at: datetime) -> str:
    """The id `forecast_message` gives this model's forecast at `issued_at`, known before computing it (the
    id depends on nothing else), so a forecast already logged need not be computed again."""
    placeholder = Forecast(issued_at, "insufficient_data", None, {}, {}, None, None)
    return forecast_message(placeholder, model_version, horizon_hours=1, shadow=shadow).message_id


def forecast_point(model: ForecastModel, features: FeatureVector) -> PointForecast:
    return PointForecast(model, features, model.forecast(features))


def survival_buckets(point: PointForecast, target: str, edges_hours: list[int]) -> dict[str, float]:
    """The time-to-first-flare distribution over the caller's bucket edges, closed by the model's horizon
    (the last bucket is "none within the horizon"), labelled like the model's own buckets."""
    edges = bucket_edges(edges_hours, point.model.horizon_hours)
    survival = point.survival_on(target, [float(e) for e in edges])
    survival[0] = 1.0
    labels = bucket_labels(edges)
    distribution = {label: float(max(a - b, 0.0)) for label, a, b in zip(labels, survival, survival[1:])}
    distribution[labels[-1]] = float(survival[-1])
    return distribution


def class_probabilities_within(point: PointForecast, window_hours: int) -> dict[str, float]:
    """Probabilities of the largest flare class (none, C, M, X) in the next `window_hours`.

    For 24 h with a classification pipeline in the model: its probabilities, as on the forecast topic.
    Otherwise from the survival models: P(at least X) = 1 - S_X(w), and each class is the difference between
    "at least this class" and "at least the next", kept non-negative so the four sum to 1.
    """
    if window_hours == 24 and point.forecast.class_probabilities:
        return dict(point.forecast.class_probabilities)
    missing = [target for target in ("C", "M", "X") if target not in point.model.survival]
    if missing:
        raise ForecastUnavailable(503, f"model {point.model.version} has no survival model for {', '.join(missing)}")
    at_least = []
    for target in ("C", "M", "X"):
        p = 1.0 - float(point.survival_on(target, [float(window_hours)])[0])
        at_least.append(min(p, at_least[-1]) if at_least else p)
    c, mm, x = at_least
    return dict(zip(OUTCOME_CLASSES, (1.0 - c, c - mm, mm - x, x)))


def most_likely_class(probabilities: dict[str, float]) -> str:
    return max(OUTCOME_CLASSES, key=lambda label: probabilities.get(label, 0.0))
