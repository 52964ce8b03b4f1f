"""The evaluator's state and decisions, without I/O: the worker feeds it messages and carries out what it
returns (publish, write), so the same steps run in the service and in tests without a broker.

State lives in three mappings the caller provides (faust tables in the service, dicts elsewhere): the
pending forecasts, the hourly bins holding flux, and the flares of class C and above. The event-time clock is
the newest usable flux reading. What has been scored lives in the `MetricBook`, rebuilt from the prediction
log at start, so a forecast that reaches the evaluator again (a redelivery, a restart, a replay) is never
scored twice.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterable, MutableMapping

from shared import messages as m
from shared.features import CLASS_RANK
from shared.settings import Settings
from services.evaluator.drift import DriftEpisode, DriftMonitor, DriftRules, baseline_from_first_scored
from services.evaluator.metrics import GroupKey, MetricBook, Reference, WindowMetrics, book_metrics
from services.evaluator.resolution import (
    HOUR_NS, FlareMark, FlareRecord, FluxRecord, PendingForecast, Resolution, from_ns, hour_of, observed_hour, resolve,
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
        self.flares = FlareRecord(flares)
        self.book = book
        self.drift = drift
        self.references: MutableMapping[str, Reference] = references if references is not None else {}
        # after a restart the clock resumes at the start of the newest bin: late, never early
        self.clock_ns = self.record.latest * HOUR_NS if self.record.latest is not None else 0
        self._queue: list[tuple[int, str]] | None = None  # (due time, forecast id), from the table on first use
        self._pruned_hour = self.record.earliest or 0

    @classmethod
    def for_settings(cls, settings: Settings, book: MetricBook, episodes=(), **state) -> "Evaluator":
        defaults = {"pending": {}, "flux_hours": {}, "flares": {}}
        return cls(settings, book=book,
                   drift=DriftMonitor(DriftRules.from_settings(settings.thresholds, settings.evaluator), episodes),
                   **{**defaults, **state})

    # ---- input -------------------------------------------------------------------------------------------

    def take_forecast(self, forecast: m.ForecastIssued) -> list[Resolution]:
        """Keep a forecast until its window has passed; resolve it now if it already has."""
        if forecast.message_id in self.book:
            return []
        pending = PendingForecast.from_message(forecast)
        self.pending[pending.forecast_id] = pending.to_dict()
        heapq.heappush(self._schedule(), (self._due_at(pending), pending.forecast_id))
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
        return self._due()

    def take_flare(self, flare: m.FlareObserved) -> m.XClassFlareObserved | None:
        """Remember a flare of class C or above; return an alert for the first report of an X-class flare."""
        mark = FlareMark.from_message(flare)
        if flare.message_id in self.flares:  # a redelivery, or a corrected report: alerted on at its first
            self.flares.put(flare.message_id, mark)
            return None
        if mark.rank < CLASS_RANK["C"]:
            return None
        nearby = self.flares.between(mark.peak_ns - SAME_FLARE_NS - 1, mark.peak_ns + SAME_FLARE_NS)
        already_reported = any(other.rank == CLASS_RANK["X"] for other in nearby)
        self.flares.put(flare.message_id, mark)
        if mark.rank < CLASS_RANK["X"] or already_reported:
            return None
        return m.XClassFlareObserved(
            message_id=m.stable_id("x-class-flare", flare.message_id), event_time=flare.peak_time,
            correlation_id=flare.correlation_id, flare_id=flare.message_id, goes_class=flare.goes_class,
            peak_time=flare.peak_time,
        )

    # ---- resolution --------------------------------------------------------------------------------------

    def _due_at(self, forecast: PendingForecast) -> int:
        return forecast.window_end_ns + self.grace_ns

    def _schedule(self) -> list[tuple[int, str]]:
        if self._queue is None:
            self._queue = [(self._due_at(PendingForecast.from_dict(v)), k) for k, v in self.pending.items()]
            heapq.heapify(self._queue)
        return self._queue

    def _due(self) -> list[Resolution]:
        """The pending forecasts whose window and grace the clock has passed, resolved, oldest first."""
        queue, due, seen = self._schedule(), [], set()
        while queue and queue[0][0] <= self.clock_ns:
            _, forecast_id = heapq.heappop(queue)
            value = self.pending.get(forecast_id)
            if value is None or forecast_id in seen:  # settled already, or queued twice by a redelivery
                continue
            seen.add(forecast_id)
            if forecast_id in self.book:  # resolved before a restart: only the table entry was left
                del self.pending[forecast_id]
                continue
            forecast = PendingForecast.from_dict(value)
            inside = self.flares.between(forecast.issued_ns, forecast.window_end_ns)
            due.append(resolve(forecast, self.clock_ns, self.record, inside, self.censor_gap_hours))
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
        return self.drift.check(version, as_of_ns, self.book.group((version, False)), self.drift_reference(version))

    def drift_reference(self, version: str) -> Reference:
        """The version's reference with a Brier baseline for every watched target: the registry's, else the
        Brier score of its first `min_scored_before_alert` scored forecasts as champion (fixed once known)."""
        reference = self.references.get(version, Reference())
        targets = self.drift.rules.targets
        if all(t in reference.baseline_brier for t in targets):
            return reference
        found = baseline_from_first_scored(self.book.group((version, False)), self.drift.rules.min_scored, targets)
        if not found:
            return reference
        baseline = {**found, **reference.baseline_brier}
        reference = Reference(reference.thresholds, reference.climatology, baseline)
        self.references[version] = reference
        return reference

    def metrics(self, key: GroupKey, as_of_ns: int) -> list[m.MetricsUpdated]:
        """The figures of one group at `as_of_ns`, as messages."""
        reference = self.references.get(key[0], Reference())
        evaluator = self.settings.evaluator
        return [
            metrics_message(figures)
            for figures in book_metrics(self.book, key, as_of_ns, evaluator.metric_windows_days, reference,
                                        evaluator.reliability_bins)
        ]

    def _forget_old(self) -> None:
        horizon_hour = hour_of(self.clock_ns - RETENTION_NS)
        if horizon_hour - self._pruned_hour < 24:  # once a day of event time is enough
            return
        self._pruned_hour = horizon_hour
        self.record.forget_before(horizon_hour)
        self.flares.forget_before(horizon_hour * HOUR_NS)


def unique_resolutions(resolutions: Iterable[Resolution]) -> list[Resolution]:
    """A batch's resolutions in order, each forecast once: a forecast delivered again inside the batch that
    resolved it (before it was settled) resolves again, and only the first is published and scored."""
    first: dict[str, Resolution] = {}
    for resolution in resolutions:
        first.setdefault(resolution.forecast.forecast_id, resolution)
    return list(first.values())


def metrics_message(figures: WindowMetrics) -> m.MetricsUpdated:
    return m.MetricsUpdated(
        message_id=m.stable_id("metrics", figures.model_version, figures.shadow, figures.window, figures.as_of_ns),
        event_time=from_ns(figures.as_of_ns), model_version=figures.model_version, shadow=figures.shadow,
        window=figures.window, scored_count=figures.scored_count, metrics=figures.metrics,
        reliability=figures.reliability,
    )
