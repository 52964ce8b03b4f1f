"""The dashboard's bounded in-memory view of the topics, built by plain functions (no broker, no I/O).

`DashboardView.apply(message)` folds one message in; `drain_delta()` returns what changed since the last
drain, and `snapshot()` the whole view, both in the same shape so that the page has one way to apply them
(a snapshot is a delta with `reset: true`). Times are epoch milliseconds: the page draws them directly.

Bounds, so a replay of years of history cannot grow the view:
- flux: the last `flux_window` of event time, per satellite, in buckets of `flux_bucket`, each holding the
  maximum of the observations in it so that flare peaks survive the downsampling;
- flares: those peaking inside the flux window;
- forecasts: the latest champion and the latest shadow forecast, by event time;
- metrics: per (model version, shadow, window) the latest figures and a series of the charted scores that
  is thinned to every other point whenever it reaches `series_limit` (the whole time range stays, coarser);
- history: the last `history_limit` lifecycle events, retrain requests and alerts, each once, with two times:
  its event time (the flux clock it speaks about: in a replay of 2015, 2015) and when it was recorded (published,
  wall clock). Decisions are read in the order they were recorded; the event time says what data they were about.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import messages as m

FLUX_WINDOW = timedelta(days=7)
FLUX_BUCKET = timedelta(minutes=5)
SERIES_LIMIT = 1000
HISTORY_LIMIT = 200
FLARES_LIMIT = 2000
TARGETS = ("C", "M", "X")
CHARTED_SCORES = ("brier", "precision", "recall", "tss")

FluxKey = tuple[str, int]  # (satellite, bucket start ms)
MetricsKey = tuple[str, bool, str]  # (model version, shadow, window)


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _bigger(current: float | None, new: float | None) -> float | None:
    if current is None:
        return new
    if new is None:
        return current
    return max(current, new)


@dataclass
class FluxBucket:
    satellite: str
    start_ms: int
    xrsa: float | None
    xrsb: float | None
    scaling_era: str

    def row(self) -> list:
        return [self.satellite, self.start_ms, self.xrsa, self.xrsb, self.scaling_era]


def flare_row(flare: m.FlareObserved) -> dict[str, Any]:
    return {
        "id": flare.message_id, "peak_ms": epoch_ms(flare.peak_time), "start_ms": epoch_ms(flare.start_time),
        "end_ms": epoch_ms(flare.end_time) if flare.end_time else None, "goes_class": flare.goes_class,
        "class_letter": flare.class_letter, "peak_flux": flare.peak_flux, "source": flare.source,
        "region": flare.noaa_region,
    }


def forecast_view(forecast: m.ForecastIssued) -> dict[str, Any]:
    """What the page shows of a forecast: class probabilities and, per target, the time-to-flare buckets."""
    return {
        "id": forecast.message_id,
        "issued_ms": epoch_ms(forecast.event_time),
        "model_version": forecast.model_version,
        "shadow": forecast.shadow,
        "status": forecast.status,
        "reason": forecast.reason,
        "degraded": forecast.degraded,
        "horizon_hours": forecast.horizon_hours,
        "predicted_class": forecast.predicted_class,
        "class_probabilities": dict(forecast.class_probabilities),
        "survival": {
            target: {
                "distribution": dict(s.probability_distribution),
                "within_24h": s.probability_within_24h,
            }
            for target, s in forecast.survival.items()
        },
    }


def metrics_point(update: m.MetricsUpdated) -> dict[str, Any]:
    """The charted scores of one metrics update: `<target>.<score>` for each target and score, and the count."""
    values = {
        f"{target}.{score}": update.metrics.get(f"{target}.{score}")
        for target in TARGETS for score in CHARTED_SCORES
    }
    return {"t": epoch_ms(update.event_time), "scored": update.scored_count, **values}


def history_row(message: m.Message, recorded_ms: int | None = None) -> dict[str, Any] | None:
    """One line of the model history for a lifecycle event, retrain request or alert; None for other messages."""
    row: dict[str, Any] = {"id": message.message_id, "event_ms": epoch_ms(message.event_time),
                           "recorded_ms": recorded_ms, "kind": message.type, "version": None, "actor": None}
    match message:
        case m.ModelPromoted():
            row.update(version=message.version, actor=message.actor,
                       summary=f"promoted {message.version}"
                       + (f" (was {message.previous_version})" if message.previous_version else "")
                       + f": {message.reason}")
        case m.ModelRolledBack():
            row.update(version=message.version, actor=message.actor,
                       summary=f"rolled back {message.from_version} to {message.version}: {message.reason}")
        case m.ModelTrained():
            row.update(version=message.version, summary=f"trained candidate {message.version}")
        case m.TrainingFailed():
            row.update(summary=f"training failed: {message.reason}")
        case m.ChallengerChanged():
            change = f"set to {message.version}" if message.version else "cleared"
            row.update(version=message.version, actor=message.actor, summary=f"challenger {change}: {message.reason}")
        case m.RetrainRequested():
            row.update(actor=message.requested_by,
                       summary=f"retrain requested ({message.target_class}): {message.reason}")
        case m.MetricDrift():
            baseline = f" vs baseline {message.baseline:.3g}" if message.baseline is not None else ""
            row.update(version=message.model_version,
                       summary=f"drift: {message.metric} {message.value:.3g}{baseline} "
                               f"(threshold {message.threshold:.3g}, {message.window})")
        case m.XClassFlareObserved():
            row.update(summary=f"X-class flare {message.goes_class} peaked")
        case _:
            return None
    return row


def _thin(series: list) -> None:
    """Keep every other point, and the newest, so a long series keeps its whole time range."""
    newest = series[-1]
    del series[1::2]
    if series[-1] is not newest:
        series.append(newest)


class DashboardView:
    def __init__(
        self, *, flux_window: timedelta = FLUX_WINDOW, flux_bucket: timedelta = FLUX_BUCKET,
        series_limit: int = SERIES_LIMIT, history_limit: int = HISTORY_LIMIT, flares_limit: int = FLARES_LIMIT,
    ):
        self.flux_window_ms = int(flux_window.total_seconds() * 1000)
        self.flux_bucket_ms = int(flux_bucket.total_seconds() * 1000)
        self.series_limit = series_limit
        self.history_limit = history_limit
        self.flares_limit = flares_limit
        self.latest_flux_ms: int | None = None
        self.flux: dict[FluxKey, FluxBucket] = {}
        self.flares: dict[str, dict[str, Any]] = {}
        # oldest first, for trimming; an entry whose bucket or flare is gone is skipped when it surfaces
        self._flux_ages: list[tuple[int, FluxKey]] = []
        self._flare_ages: list[tuple[int, str]] = []
        self.forecasts: dict[bool, dict[str, Any]] = {}  # by shadow
        self.metrics_latest: dict[MetricsKey, dict[str, Any]] = {}
        self.metrics_series: dict[MetricsKey, list[dict[str, Any]]] = {}
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.promoted_version: str | None = None
        self.counts: dict[str, int] = {}
        self._reset_changes()

    # ---- folding messages in --------------------------------------------------------------------------

    def apply(self, message: m.Message, recorded_ms: int | None = None) -> None:
        """Fold in one message; `recorded_ms` is when it was published (the broker record's timestamp)."""
        self.counts[message.type] = self.counts.get(message.type, 0) + 1
        self._changed_counts = True
        match message:
            case m.FluxObserved():
                self._apply_flux(message)
            case m.FlareObserved():
                self._apply_flare(message)
            case m.ForecastIssued():
                self._apply_forecast(message)
            case m.MetricsUpdated():
                self._apply_metrics(message)
            case _:
                self._apply_history(message, recorded_ms)

    def _apply_flux(self, flux: m.FluxObserved) -> None:
        if flux.xrsa_flux is None and flux.xrsb_flux is None:
            return
        t = epoch_ms(flux.event_time)
        if self.latest_flux_ms is not None and t < self.latest_flux_ms - self.flux_window_ms:
            return
        start = t - t % self.flux_bucket_ms
        key = (flux.satellite, start)
        bucket = self.flux.get(key)
        if bucket is None:
            self.flux[key] = FluxBucket(flux.satellite, start, flux.xrsa_flux, flux.xrsb_flux, flux.scaling_era)
            heapq.heappush(self._flux_ages, (start, key))
        else:
            bucket.xrsa = _bigger(bucket.xrsa, flux.xrsa_flux)
            bucket.xrsb = _bigger(bucket.xrsb, flux.xrsb_flux)
        self._changed_flux.add(key)
        if self.latest_flux_ms is None or t > self.latest_flux_ms:
            self.latest_flux_ms = t
            self._trim_to_window()

    def _window_start_ms(self) -> int | None:
        return None if self.latest_flux_ms is None else self.latest_flux_ms - self.flux_window_ms

    def _trim_to_window(self) -> None:
        start = self._window_start_ms()
        while self._flux_ages and self._flux_ages[0][0] + self.flux_bucket_ms <= start:
            _, key = heapq.heappop(self._flux_ages)
            self.flux.pop(key, None)
            self._changed_flux.discard(key)
        while self._flare_ages and self._flare_ages[0][0] < start:
            self._drop_oldest_flare()

    def _drop_oldest_flare(self) -> None:
        peak_ms, flare_id = heapq.heappop(self._flare_ages)
        if flare_id in self.flares and self.flares[flare_id]["peak_ms"] == peak_ms:
            del self.flares[flare_id]
            self._changed_flares.discard(flare_id)

    def _apply_flare(self, flare: m.FlareObserved) -> None:
        row = flare_row(flare)
        start = self._window_start_ms()
        if start is not None and row["peak_ms"] < start:
            return
        self.flares[flare.message_id] = row
        heapq.heappush(self._flare_ages, (row["peak_ms"], flare.message_id))
        self._changed_flares.add(flare.message_id)
        while len(self.flares) > self.flares_limit:
            self._drop_oldest_flare()

    def _apply_forecast(self, forecast: m.ForecastIssued) -> None:
        current = self.forecasts.get(forecast.shadow)
        if current is not None and current["issued_ms"] > epoch_ms(forecast.event_time):
            return
        self.forecasts[forecast.shadow] = forecast_view(forecast)
        self._changed_forecasts = True

    def _apply_metrics(self, update: m.MetricsUpdated) -> None:
        key = (update.model_version, update.shadow, update.window)
        point = metrics_point(update)
        series = self.metrics_series.setdefault(key, [])
        if series and series[-1]["t"] > point["t"]:
            return  # a redelivered older figure: the series stays in event-time order
        if series and series[-1]["t"] == point["t"]:
            series[-1] = point
        else:
            series.append(point)
            if len(series) >= self.series_limit:
                _thin(series)
                self._rewritten_series.add(key)
        self.metrics_latest[key] = {
            "model_version": update.model_version, "shadow": update.shadow, "window": update.window,
            "t": point["t"], "scored": update.scored_count, "metrics": dict(update.metrics),
            "reliability": [dict(row) for row in update.reliability],
        }
        self._changed_metrics.setdefault(key, []).append(point)

    def _apply_history(self, message: m.Message, recorded_ms: int | None) -> None:
        row = history_row(message, recorded_ms)
        if row is None or row["id"] in self.history:
            return
        self.history[row["id"]] = row
        self._new_history.append(row)
        while len(self.history) > self.history_limit:
            self.history.popitem(last=False)
        if isinstance(message, (m.ModelPromoted, m.ModelRolledBack)):
            self.promoted_version = message.version

    # ---- what the page receives -----------------------------------------------------------------------

    def _reset_changes(self) -> None:
        self._changed_flux: set[FluxKey] = set()
        self._changed_flares: set[str] = set()
        self._changed_forecasts = False
        self._changed_metrics: dict[MetricsKey, list[dict[str, Any]]] = {}
        self._rewritten_series: set[MetricsKey] = set()
        self._new_history: list[dict[str, Any]] = []
        self._changed_counts = False

    @property
    def champion(self) -> str | None:
        """The last promoted (or rolled-back-to) version; before any, the version behind the champion forecasts."""
        if self.promoted_version is not None:
            return self.promoted_version
        forecast = self.forecasts.get(False)
        return forecast["model_version"] if forecast else None

    def _header(self) -> dict[str, Any]:
        return {
            "champion": self.champion, "latest_flux_ms": self.latest_flux_ms,
            "window_start_ms": self._window_start_ms(), "flux_bucket_ms": self.flux_bucket_ms,
            "counts": dict(self.counts),
        }

    def _metrics_entry(self, key: MetricsKey, points: list[dict[str, Any]], replace: bool) -> dict[str, Any]:
        return {**self.metrics_latest[key], "points": points, "replace": replace}

    def snapshot(self) -> dict[str, Any]:
        """The whole view; the page replaces what it holds with it."""
        return {
            "reset": True,
            **self._header(),
            "flux": [bucket.row() for bucket in sorted(self.flux.values(), key=lambda b: b.start_ms)],
            "flares": list(self.flares.values()),
            "forecasts": {"champion": self.forecasts.get(False), "shadow": self.forecasts.get(True)},
            "metrics": [self._metrics_entry(key, list(series), True) for key, series in self.metrics_series.items()],
            "history": list(self.history.values()),
            "series_limit": self.series_limit,
        }

    def drain_delta(self) -> dict[str, Any] | None:
        """What changed since the last drain (None if nothing did); the page merges it into what it holds."""
        if not (self._changed_counts or self._changed_forecasts or self._new_history):
            return None
        delta: dict[str, Any] = {"reset": False, **self._header()}
        if self._changed_flux:
            delta["flux"] = [self.flux[key].row() for key in sorted(self._changed_flux, key=lambda k: k[1])]
        if self._changed_flares:
            delta["flares"] = [self.flares[i] for i in self._changed_flares]
        if self._changed_forecasts:
            delta["forecasts"] = {"champion": self.forecasts.get(False), "shadow": self.forecasts.get(True)}
        if self._changed_metrics:
            delta["metrics"] = [
                self._metrics_entry(key, list(self.metrics_series[key]), True) if key in self._rewritten_series
                else self._metrics_entry(key, points, False)
                for key, points in self._changed_metrics.items()
            ]
        if self._new_history:
            delta["history"] = list(self._new_history)
        self._reset_changes()
        return delta
