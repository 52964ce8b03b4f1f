"""The loaded model the predictor, the backtest and validation call: features in, forecasts out.

A model version bundles artifacts: one survival model per target class (time to the first flare of at least
C, M, X) and, for the full `forecast` kind, the classification pipeline for the largest class in 24 h. Each
artifact is a joblib file holding a dict (`kind` "survival" or "classification", the fitted estimator, the
feature names and parameters it was trained with, and what training chose: threshold, climatology, ...).

joblib is pickle: a file is loaded only after its sha256 matches the digest recorded at registration.

`ForecastModel.forecast_table` forecasts many instants at once (backtest, validation); `forecast` forecasts
one (predictor) by calling it with one row, so both paths give the same numbers.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import joblib
import numpy as np
import pandas as pd

from shared import messages as m
from shared.features import TARGET_CLASSES, FeatureParams, FeatureVector

OUTCOME_CLASSES = ("none", "C", "M", "X")
ROW_BLOCK = 16
SURVIVAL_KIND = "survival"
CLASSIFICATION_KIND = "classification"
# the survival models of the same version fit on the flare-history columns alone: they forecast (degraded)
# where the flux cannot be used but the flare record covers the lookback
FLARE_HISTORY_SURVIVAL_KIND = "survival_flare_history"


class DigestMismatch(Exception):
    """A model file's content is not what was registered: it is refused, never loaded."""


class ModelFileError(Exception):
    """A model file is missing, unreadable or not a Flare+ artifact."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_verified(path: str | Path, expected_digest: str) -> bytes:
    """The file's bytes, if their sha256 is the registered one (read once: what is checked is what is loaded)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_digest:
        raise DigestMismatch(
            f"{path.name}: sha256 {actual[:12]}... does not match the registered {expected_digest[:12]}...; "
            "the file was changed after registration and is refused"
        )
    return data


def unpickle_artifact(data: bytes, name: str) -> dict[str, Any]:
    artifact = joblib.load(io.BytesIO(data))
    kinds = (SURVIVAL_KIND, CLASSIFICATION_KIND, FLARE_HISTORY_SURVIVAL_KIND)
    if not isinstance(artifact, dict) or artifact.get("kind") not in kinds:
        raise ModelFileError(f"{name}: not a Flare+ model artifact")
    return artifact


def bucket_edges(edges_hours: list[int] | tuple[int, ...], horizon_hours: int) -> list[int]:
    """Bucket edges from 0 to the horizon (edges past the horizon are dropped, the horizon closes the last)."""
    inside = [int(e) for e in edges_hours if e < horizon_hours]
    return inside + [int(horizon_hours)]


def bucket_labels(edges: list[int]) -> list[str]:
    """`0h-6h`, ..., and `none_within_{horizon}h` for no such flare within the horizon."""
    return [f"{a}h-{b}h" for a, b in zip(edges, edges[1:])] + [f"none_within_{edges[-1]}h"]


def survival_time_points(edges: list[int]) -> list[float]:
    """Where survival curves are reported: the bucket edges and 24 h."""
    return [float(t) for t in sorted(set(edges) | {24}) if t <= edges[-1]]


def final_estimator(estimator: Any) -> Any:
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def fit_hazard_recalibration(p24: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """A recalibration of 24-hour probabilities that keeps every survival curve a survival curve: the
    cumulative hazard H = -ln S becomes scale * H ** power (scale, power > 0), fit by maximum likelihood of the
    observed 24-hour outcomes (a complementary log-log regression on ln H). Monotone in H, so curves stay
    non-increasing and the ranking of forecasts is unchanged; only the level and spread of the probabilities
    move. None when the outcomes cannot inform it (no event or no quiet period)."""
    from scipy.optimize import minimize

    p_arr, y_arr = np.asarray(p24, dtype=float), np.asarray(y, dtype=float)
    if len(p_arr) == 0 or y_arr.sum() == 0 or y_arr.sum() == len(y_arr):
        return None
    log_hazard = np.log(np.clip(-np.log(np.clip(1.0 - p_arr, 1e-12, 1.0)), 1e-9, None))

    def loss(theta: np.ndarray) -> float:
        hazard = np.exp(np.clip(theta[0] + np.exp(theta[1]) * log_hazard, -30.0, 30.0))
        quiet = np.clip(np.exp(-hazard), 1e-12, 1.0 - 1e-12)
        return -float(np.mean(y_arr * np.log1p(-quiet) + (1.0 - y_arr) * np.log(quiet)))

    fit = minimize(loss, np.zeros(2), method="L-BFGS-B", bounds=[(-5.0, 5.0), (-2.0, 2.0)])
    return {"log_scale": float(fit.x[0]), "power": float(np.exp(fit.x[1]))}


def recalibrate_survival(curves: np.ndarray, recalibration: Mapping[str, float] | None) -> np.ndarray:
    """Survival curves with `fit_hazard_recalibration`'s map applied (unchanged without one)."""
    if not recalibration:
        return curves
    hazard = -np.log(np.clip(curves, 1e-300, 1.0))
    scaled = np.exp(recalibration["log_scale"]) * np.power(hazard, recalibration["power"])
    return np.minimum.accumulate(np.clip(np.exp(-scaled), 0.0, 1.0), axis=1)


def survival_at(estimator: Any, X: np.ndarray, times: list[float] | np.ndarray) -> np.ndarray:
    """S(t) for each row of X at each of `times`: non-increasing in t, within [0, 1], S(0) = 1."""
    curves = estimator.predict_survival_function(X, return_array=True)
    known = np.asarray(final_estimator(estimator).unique_times_, dtype=float)
    column = np.searchsorted(known, np.asarray(times, dtype=float), side="right") - 1
    values = np.where(column >= 0, curves[:, np.maximum(column, 0)], 1.0)
    return np.minimum.accumulate(np.clip(values, 0.0, 1.0), axis=1)


def in_row_blocks(compute: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    """`compute(X)`, called on blocks of exactly ROW_BLOCK rows (the last one padded with copies of the last row).

    BLAS picks how it goes through a matrix by its shape and sums some rows in another order than others, so
    a row's numbers would change in the last bit with the number of rows computed beside it. With every call
    of the same shape, a forecast is the same computed alone (the predictor live, the REST API) or with a
    thousand others (a replay, the backtest)."""
    rows = len(X)
    # row-major too: BLAS reads a column-major matrix (what pandas gives) another way again
    padded = np.ascontiguousarray(np.concatenate([X, np.repeat(X[-1:], -rows % ROW_BLOCK, axis=0)]))
    return np.concatenate([compute(padded[i:i + ROW_BLOCK]) for i in range(0, len(padded), ROW_BLOCK)])[:rows]


class SigmoidCalibratedClassifier:
    """A fitted multi-class classifier whose class probabilities are Platt-scaled one-vs-rest on later data
    and renormalised (scikit-learn's sigmoid calibration), except that a class absent from the calibration
    period keeps its raw probability instead of breaking the fit: X flares are missing from many months."""

    def __init__(self, classifier: Any, slopes: np.ndarray, intercepts: np.ndarray):
        self.classifier = classifier
        self.slopes = np.asarray(slopes, dtype=float)
        self.intercepts = np.asarray(intercepts, dtype=float)

    @property
    def classes_(self) -> np.ndarray:
        return self.classifier.classes_

    @staticmethod
    def logits(probabilities: np.ndarray) -> np.ndarray:
        clipped = np.clip(probabilities, 1e-9, 1 - 1e-9)
        return np.log(clipped / (1 - clipped))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        scaled = 1.0 / (1.0 + np.exp(-(self.logits(self.classifier.predict_proba(X)) * self.slopes + self.intercepts)))
        return scaled / scaled.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ForecastTable:
    """Forecasts at many instants. Arrays are aligned with `issued_at`; rows where `sufficient` is False
    hold no forecast (their numbers are zero) and carry `reason`."""

    issued_at: pd.DatetimeIndex
    sufficient: np.ndarray
    reason: np.ndarray
    inputs_until: pd.DatetimeIndex
    degraded: np.ndarray  # forecast from the flare history alone (the flux could not be used); `sufficient` too
    time_points: list[float]
    survival: dict[str, np.ndarray]  # target -> (n, len(time_points))
    risk: dict[str, np.ndarray]      # target -> the estimator's risk score (ranks time to event)
    class_probabilities: np.ndarray | None  # (n, 4) in OUTCOME_CLASSES order

    def p_within(self, target: str, hours: float = 24.0) -> np.ndarray:
        return 1.0 - self.survival[target][:, self.time_points.index(float(hours))]


@dataclass(frozen=True)
class Forecast:
    issued_at: datetime
    status: str
    reason: str | None
    survival: dict[str, m.SurvivalForecast]
    class_probabilities: dict[str, float]
    predicted_class: str | None
    inputs_until: datetime | None
    degraded: bool = False


def degraded_reason(flux_reason: str) -> str:
    return f"degraded: {flux_reason}; forecast from the flare history alone"


class ForecastModel:
    """A loaded model version."""

    def __init__(self, version: str, artifacts: Mapping[str, dict[str, Any]]):
        self.version = version
        self.survival = {a["target_class"]: a for a in artifacts.values() if a["kind"] == SURVIVAL_KIND}
        self.flare_history = {a["target_class"]: a for a in artifacts.values()
                              if a["kind"] == FLARE_HISTORY_SURVIVAL_KIND}
        if self.flare_history and set(self.flare_history) != set(self.survival):
            raise ModelFileError(f"version {version}: flare-history models for {sorted(self.flare_history)}, "
                                 f"survival models for {sorted(self.survival)}")
        self.flare_history_names: list[str] = (
            list(next(iter(self.flare_history.values()))["feature_names"]) if self.flare_history else [])
        classifiers = [a for a in artifacts.values() if a["kind"] == CLASSIFICATION_KIND]
        self.classifier = classifiers[0] if classifiers else None
        if not self.survival:
            raise ModelFileError(f"version {version} has no survival model")
        first = next(iter(self.survival.values()))
        self.feature_params = FeatureParams.from_dict(first["feature_params"])
        self.feature_names: list[str] = list(first["feature_names"])
        self.horizon_hours = int(first["horizon_hours"])
        self.edges = bucket_edges(first["bucket_edges_hours"], self.horizon_hours)
        self.labels = bucket_labels(self.edges)
        self.time_points = survival_time_points(self.edges)
        for artifact in artifacts.values():
            flare_history_only = artifact["kind"] == FLARE_HISTORY_SURVIVAL_KIND
            expected = self.flare_history_names if flare_history_only else self.feature_names
            if list(artifact["feature_names"]) != expected:
                raise ModelFileError(f"version {version}: artifacts were trained on different features")

    @property
    def targets(self) -> list[str]:
        return [c for c in TARGET_CLASSES if c in self.survival]

    def threshold(self, target: str) -> float:
        return float(self.survival[target]["threshold"])

    def climatology(self, target: str) -> float:
        return float(self.survival[target]["climatology"])

    def survival_curves(self, target: str, X: np.ndarray, times: list[float] | np.ndarray,
                        degraded: bool = False) -> np.ndarray:
        """S(t) of the target's model at `times` for each row of X, recalibrated as training chose; with
        `degraded`, of its flare-history model (X holds `flare_history_names`)."""
        artifact = (self.flare_history if degraded else self.survival)[target]
        curves = in_row_blocks(lambda block: survival_at(artifact["estimator"], block, times), X)
        return recalibrate_survival(curves, artifact.get("recalibration"))

    def risk_scores(self, target: str, X: np.ndarray, degraded: bool = False) -> np.ndarray:
        """The target's model's risk score for each row of X (its flare-history model's with `degraded`)."""
        artifact = (self.flare_history if degraded else self.survival)[target]
        return in_row_blocks(artifact["estimator"].predict, X)

    @classmethod
    def load(cls, version: str, artifacts: Mapping[str, str], digests: Mapping[str, str]) -> "ForecastModel":
        """Load a registered version: every file's digest must match before anything is unpickled."""
        missing = [name for name in artifacts if name not in digests]
        if missing:
            raise DigestMismatch(f"version {version}: no registered digest for {', '.join(missing)}; refused")
        verified = {name: read_verified(path, digests[name]) for name, path in artifacts.items()}
        return cls(version,
                   {name: unpickle_artifact(data, Path(artifacts[name]).name) for name, data in verified.items()})

    # ---- forecasting ----------------------------------------------------------------------------------

    def forecast_table(self, features: pd.DataFrame) -> ForecastTable:
        """Forecasts for every row of a `feature_table` frame; a row's numbers do not depend on the other rows."""
        n = len(features)
        sufficient = features["sufficient"].to_numpy(dtype=bool)
        degraded = ~sufficient & features["flare_history"].to_numpy(dtype=bool) & bool(self.flare_history)
        X = features.loc[sufficient, self.feature_names].to_numpy(dtype=float)
        X_history = features.loc[degraded, self.flare_history_names].to_numpy(dtype=float)
        survival: dict[str, np.ndarray] = {}
        risk: dict[str, np.ndarray] = {}
        for target in self.survival:
            curves = np.zeros((n, len(self.time_points)))
            scores = np.zeros(n)
            if len(X):
                curves[sufficient] = self.survival_curves(target, X, self.time_points)
                scores[sufficient] = self.risk_scores(target, X)
            if len(X_history):
                curves[degraded] = self.survival_curves(target, X_history, self.time_points, degraded=True)
                scores[degraded] = self.risk_scores(target, X_history, degraded=True)
            survival[target] = curves
            risk[target] = scores
        probabilities = None
        if self.classifier is not None:
            probabilities = np.zeros((n, len(OUTCOME_CLASSES)))
            if len(X):
                probabilities[sufficient] = in_row_blocks(self._class_probabilities, X)
            if len(X_history):
                probabilities[degraded] = self._class_probabilities_from_survival(
                    {target: survival[target][degraded] for target in self.survival})
        reason = features["reason"].to_numpy(dtype=object).copy()
        reason[degraded] = [degraded_reason(str(r)) for r in reason[degraded]]
        return ForecastTable(
            issued_at=pd.DatetimeIndex(features.index),
            sufficient=sufficient | degraded,
            reason=reason,
            inputs_until=pd.DatetimeIndex(features["inputs_until"]),
            degraded=degraded,
            time_points=self.time_points,
            survival=survival,
            risk=risk,
            class_probabilities=probabilities,
        )

    def _class_probabilities_from_survival(self, curves: Mapping[str, np.ndarray]) -> np.ndarray:
        """Largest class in 24 h from the survival curves (the flare-history models have no classifier):
        P(>=X) = 1 - S_X(24 h), kept monotone so the four classes sum to 1."""
        column = self.time_points.index(24.0)
        at_least = np.zeros((len(next(iter(curves.values()))), 3))
        for i, target in enumerate(("C", "M", "X")):
            p = 1.0 - curves[target][:, column] if target in curves else np.zeros(len(at_least))
            at_least[:, i] = p if i == 0 else np.minimum(p, at_least[:, i - 1])
        return np.column_stack([1.0 - at_least[:, 0], at_least[:, 0] - at_least[:, 1],
                                at_least[:, 1] - at_least[:, 2], at_least[:, 2]])

    def _class_probabilities(self, X: np.ndarray) -> np.ndarray:
        assert self.classifier is not None, "the caller checks that a classifier is loaded"
        pipeline = self.classifier["pipeline"]
        raw = pipeline.predict_proba(X)
        out = np.zeros((len(X), len(OUTCOME_CLASSES)))
        for column, label in enumerate(pipeline.classes_):
            out[:, OUTCOME_CLASSES.index(str(label))] = raw[:, column]
        out = np.clip(out, 0.0, None)
        return out / out.sum(axis=1, keepdims=True)

    def forecast(self, features: FeatureVector) -> Forecast:
        """The forecast at one instant (same numbers as `forecast_table` on the same features)."""
        return self.forecast_at(self.forecast_table(features.as_frame()), 0)

    def forecast_at(self, table: ForecastTable, row: int) -> Forecast:
        issued_at = table.issued_at[row].to_pydatetime()
        inputs_until = table.inputs_until[row]
        inputs_until = None if pd.isna(inputs_until) else inputs_until.to_pydatetime()
        if not table.sufficient[row]:
            return Forecast(issued_at, "insufficient_data", table.reason[row], {}, {}, None, inputs_until)
        degraded = bool(table.degraded[row])
        survival = {target: self._survival_forecast(target, table.survival[target][row]) for target in self.targets}
        probabilities: dict[str, float] = {}
        predicted = None
        if table.class_probabilities is not None:
            row_p = table.class_probabilities[row]
            probabilities = {label: float(p) for label, p in zip(OUTCOME_CLASSES, row_p)}
            predicted = OUTCOME_CLASSES[int(np.argmax(row_p))]
        return Forecast(issued_at, "ok", table.reason[row] if degraded else None, survival, probabilities, predicted,
                        inputs_until, degraded)

    def _survival_forecast(self, target: str, curve: np.ndarray) -> m.SurvivalForecast:
        at = dict(zip(self.time_points, curve.tolist()))
        at[0.0] = 1.0
        edges = [float(e) for e in self.edges]
        distribution = {label: max(at[a] - at[b], 0.0) for label, a, b in zip(self.labels, edges, edges[1:])}
        distribution[self.labels[-1]] = at[edges[-1]]
        s24 = at[24.0]
        return m.SurvivalForecast(
            target_class=target,
            probability_distribution=distribution,
            time_points_hours=list(self.time_points),
            survival_probabilities=[float(v) for v in curve],
            # cumulative hazard over 24 h: comparable across estimators, unlike their raw risk scores
            hazard_score=float(-np.log(max(s24, 1e-12))),
            probability_within_24h=float(1.0 - s24),
        )


def forecast_message(
    forecast: Forecast, model_version: str, *, horizon_hours: int, shadow: bool = False,
    correlation_id: str | None = None,
) -> m.ForecastIssued:
    """The `ForecastIssued` for a forecast; its id is stable per model version, shadow flag and issue time."""
    return m.ForecastIssued(
        message_id=m.stable_id("forecast", model_version, shadow, forecast.issued_at.isoformat()),
        event_time=forecast.issued_at,
        correlation_id=correlation_id,
        model_version=model_version,
        status=forecast.status,
        reason=forecast.reason,
        shadow=shadow,
        horizon_hours=horizon_hours,
        survival=forecast.survival,
        class_probabilities=forecast.class_probabilities,
        predicted_class=forecast.predicted_class,
        inputs_until=forecast.inputs_until,
        degraded=forecast.degraded,
    )
