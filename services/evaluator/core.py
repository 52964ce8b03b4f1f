"""The evaluator's state and decisions, without I/O: the worker feeds it messages and carries out what it
returns (publish, write), so the same steps run in the service and in tests without a broker.

State lives in three mappings the caller provides (faust tables in the service, dicts elsewhere): the
pending forecasts, the hourly bins holding flux, and the flares of class C and above. The event-time clock is
the newest usable flux reading. What has been scored lives in the `MetricBook`, rebuilt from the prediction
log at start, so a forecast that reaches the evaluator again (a redelivery, a restart, a replay) is never
scored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import MutableMapping

from shared import messages as m
from shared.features import CLASS_RANK
from shared.settings import Settings
from services.evaluator.drift import DriftEpisode, DriftMonitor, DriftRules, baseline_from_first_scored
from services.evaluator.metrics import GroupKey, MetricBook, Reference, WindowMetrics, book_metrics
from services.evaluator.resolution import (
    HOUR_NS, FlareMark, FluxRecord, PendingForecast, Resolution, from_ns, hour_of, is_due, observed_hour, resolve,
    to_ns,
)

# The same flare reported by two sources peaks within this of itself (as in shared.features.flare_timeline).
SAME_FLARE_NS = 15 * 60 * 1_000_000_000
# Flux bins and flares older than this behind the clock are forgotten: forecasts arrive hours late, not weeks.
RETENTION_NS = 35 * 24 * HOUR_NS


@dataclass
class Settled:
    """What settling resolutions changed: drift episodes opened or closed, and the groups to report on."""

    episodes: list[DriftEpisode] = field(default_factory=list)
    dirty: dict[GroupKey, int] = field(default_factory=dict)  # group -> as_of of its newest resolution


class Evaluator:
    def __init__(
        self, settings: Settings, *, pending: MutableMapping[str, dict], flux_hours: MutableMapping[int, bool],
        flares: MutableMapping[str, list], book: MetricBook, drift: DriftMonitor,
        references: MutableMapping[str, Reference] | None = None,
    ):
        self.settings = settings
        self.grace_ns = settings.evaluator.resolution_grace_minutes * 60 * 1_000_000_000
        self.censor_gap_hours = settings.model.censor_gap_hours
        self.pending = pending
        self.record = FluxRecord(flux_hours)
        self.flares = flares
        self.book = book
        self.drift = drift
        self.references: MutableMapping[str, Reference] = references if references is not None else {}
        # after a restart the clock resumes at the start of the newest bin: late, never early
        self.clock_ns = self.record.latest * HOUR_NS if self.record.latest is not None else 0
        self._next_due_ns: int | None = None
        self._pruned_hour = self.record.earliest or 0

    @classmethod
    def for_settings(cls, settings: Settings, book: MetricBook, episodes=(), **state) -> "Evaluator":
        defaults = {"pending": {}, "flux_hours": {}, "flares": {}}
        return cls(settings, book=book, drift=DriftMonitor(DriftRules.from_settings(settings.thresholds, settings.evaluator), episodes),
                   **{**defaults, **state})

    # ---- input -------------------------------------------------------------------------------------------

    def take_forecast(self, forecast: m.ForecastIssued) -> list[Resolution]:
        """Keep a forecast until its window has passed; resolve it now if it already has."""
        if forecast.message_id in self.book:
            return []
        pending = PendingForecast.from_message(forecast)
        self.pending[pending.forecast_id] = pending.to_dict()
        self._next_due_ns = None
        return self._due()

    def take_flux(self, observation: m.FluxObserved) -> list[Resolution]:
        """Advance the clock; return the forecasts this reading makes due."""
        hour = observed_hour(observation)
        if hour is None:
            return []
        self.record.add(hour)
        time_ns = to_ns(observation.event_time)
        if time_ns <= self.clock_ns:
            return []
        self.clock_ns = time_ns
        self._forget_old()
        if self._next_due_ns is not None and self.clock_ns < self._next_due_ns:
            return []
        return self._due()

    def take_flare(self, flare: m.FlareObserved) -> m.XClassFlareObserved | None:
        """Remember a flare of class C or above; return an alert for the first report of an X-class flare."""
        mark = FlareMark.from_message(flare)
        if flare.message_id in self.flares:  # a redelivery, or a corrected report: alerted on at its first
            self.flares[flare.message_id] = [mark.peak_ns, mark.rank]
            return None
        if mark.rank < CLASS_RANK["C"]:
            return None
        already_reported = any(
            rank == CLASS_RANK["X"] and abs(peak - mark.peak_ns) <= SAME_FLARE_NS for peak, rank in self.flares.values()
        )
        self.flares[flare.message_id] = [mark.peak_ns, mark.rank]
        if mark.rank < CLASS_RANK["X"] or already_reported:
            return None
        return m.XClassFlareObserved(
            message_id=m.stable_id("x-class-flare", flare.message_id), event_time=flare.peak_time,
            correlation_id=flare.correlation_id, flare_id=flare.message_id, goes_class=flare.goes_class,
            peak_time=flare.peak_time,
        )

    # ---- resolution --------------------------------------------------------------------------------------

    def _due(self) -> list[Resolution]:
        due, next_due = [], None
        marks = None
        for forecast_id, value in list(self.pending.items()):
            forecast = PendingForecast.from_dict(value)
            if forecast_id in self.book:  # resolved before a restart: only the table entry was left
                del self.pending[forecast_id]
                continue
            if is_due(forecast, self.clock_ns, self.grace_ns):
                marks = marks if marks is not None else [FlareMark(int(p), int(r)) for p, r in self.flares.values()]
                due.append(resolve(forecast, self.clock_ns, self.record, marks, self.censor_gap_hours))
            else:
                due_at = forecast.window_end_ns + self.grace_ns
                next_due = due_at if next_due is None else min(next_due, due_at)
        self._next_due_ns = next_due
        return sorted(due, key=lambda r: (r.forecast.issued_ns, r.forecast.forecast_id))

    def settle(self, resolutions: list[Resolution]) -> Settled:
        """After the outcomes are published and written: forget the pending forecasts, score them once, and
        check the champion's drift after each."""
        settled = Settled()
        for resolution in resolutions:
            forecast = resolution.forecast
            self.pending.pop(forecast.forecast_id, None)
            if not self.book.add(resolution):
                continue
            key = (forecast.model_version, forecast.shadow)
            settled.dirty[key] = max(settled.dirty.get(key, 0), resolution.resolved_ns)
            if not forecast.shadow:
                episode = self._check_drift(forecast.model_version, resolution.resolved_ns)
                if episode is not None:
                    settled.episodes.append(episode)
        return settled

    def _check_drift(self, version: str, as_of_ns: int) -> DriftEpisode | None:
        reference = self.drift_reference(version)
        window = self.book.group((version, False)).window(self.settings.evaluator.drift_window_days, as_of_ns)
        return self.drift.check(version, as_of_ns, window, reference)

    def drift_reference(self, version: str) -> Reference:
        """The version's reference with a Brier baseline for every watched target: the registry's, else the
        Brier score of its first `min_scored_before_alert` scored forecasts as champion (fixed once known)."""
        reference = self.references.get(version, Reference())
        targets = self.drift.rules.targets
        if all(t in reference.baseline_brier for t in targets):
            return reference
        first = self.book.group((version, False)).first_scored(self.drift.rules.min_scored)
        if first is None:
            return reference
        baseline = {**baseline_from_first_scored(first, targets), **reference.baseline_brier}
        reference = Reference(reference.thresholds, reference.climatology, baseline)
        self.references[version] = reference
        return reference

    def metrics(self, key: GroupKey, as_of_ns: int) -> list[m.MetricsUpdated]:
        """The figures of one group at `as_of_ns`, as messages."""
        reference = self.references.get(key[0], Reference())
        evaluator = self.settings.evaluator
        return [
            metrics_message(figures)
            for figures in book_metrics(self.book, key, as_of_ns, evaluator.metric_windows_days, reference, evaluator.reliability_bins)
        ]

    def _forget_old(self) -> None:
        horizon_hour = hour_of(self.clock_ns - RETENTION_NS)
        if horizon_hour - self._pruned_hour < 24:  # once a day of event time is enough
            return
        self._pruned_hour = horizon_hour
        self.record.forget_before(horizon_hour)
        cutoff = horizon_hour * HOUR_NS
        for flare_id in [k for k, (peak, _) in self.flares.items() if peak < cutoff]:
            del self.flares[flare_id]


def metrics_message(figures: WindowMetrics) -> m.MetricsUpdated:
    return m.MetricsUpdated(
        message_id=m.stable_id("metrics", figures.model_version, figures.shadow, figures.window, figures.as_of_ns),
        event_time=from_ns(figures.as_of_ns), model_version=figures.model_version, shadow=figures.shadow,
        window=figures.window, scored_count=figures.scored_count, metrics=figures.metrics,
        reliability=figures.reliability,
    )
