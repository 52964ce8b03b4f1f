"""Drift of the champion's skill, with hysteresis: one alert per episode, not one per message (pure logic).

An episode opens when, over the drift window and with at least `min_scored_before_alert` scored forecasts,
the Brier score of a watched target rises more than `drift_brier_rise` above its baseline, or its precision
or recall falls below the floor. The alert names the first metric that crossed. The episode stays open (no
further alerts) until every watched metric is back inside its clearing level, which is stricter than the
alert level: Brier within `drift_clear_brier_rise` of the baseline, precision and recall at least
`drift_clear_margin` above the floor. Only then can a new episode, and a new alert, begin.

An episode's alert id is derived from the model version and the episode's ordinal, so an evaluator that
restarts inside an episode, or that crashed between publishing the alert and recording the episode,
publishes the same id again at most, never a second alert.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from shared import messages as m
from shared import scoring
from shared.settings import ThresholdSettings
from services.evaluator.metrics import Group, Outcomes, Reference, window_name
from services.evaluator.resolution import from_ns


@dataclass(frozen=True)
class DriftRules:
    targets: tuple[str, ...]
    window_days: int
    brier_rise: float
    clear_brier_rise: float
    min_precision: float
    min_recall: float
    clear_margin: float
    min_scored: int

    @classmethod
    def from_settings(cls, thresholds: ThresholdSettings, evaluator) -> "DriftRules":
        return cls(
            tuple(evaluator.drift_targets), evaluator.drift_window_days, thresholds.drift_brier_rise,
            evaluator.drift_clear_brier_rise, thresholds.min_precision, thresholds.min_recall,
            evaluator.drift_clear_margin, thresholds.min_scored_before_alert,
        )

    @property
    def window(self) -> str:
        return window_name(self.window_days)


@dataclass(frozen=True)
class Breach:
    metric: str
    value: float
    baseline: float | None
    threshold: float


@dataclass(frozen=True)
class DriftEpisode:
    model_version: str
    ordinal: int
    started_ns: int
    breach: Breach
    window: str
    cleared_ns: int | None = None

    @property
    def alert_id(self) -> str:
        return m.stable_id("metric-drift", self.model_version, self.ordinal)

    def alert(self) -> m.MetricDrift:
        return m.MetricDrift(
            message_id=self.alert_id, event_time=from_ns(self.started_ns), model_version=self.model_version,
            metric=self.breach.metric, value=self.breach.value, baseline=self.breach.baseline,
            threshold=self.breach.threshold, window=self.window,
        )


def breaches(window: dict[str, Outcomes], reference: Reference, rules: DriftRules, *, clearing: bool) -> list[Breach]:
    """The watched metrics beyond their alert level (or, with `clearing`, not yet back inside the clearing
    level), in a fixed order: Brier, precision, recall per target."""
    found = []
    for target in rules.targets:
        outcomes = window[target]
        brier = scoring.brier_score(outcomes.p, outcomes.y)
        table = scoring.contingency(outcomes.p, outcomes.y, reference.threshold(target))
        baseline = reference.baseline_brier.get(target)
        if brier is not None and baseline is not None:
            limit = baseline * (1 + (rules.clear_brier_rise if clearing else rules.brier_rise))
            if brier > limit:
                found.append(Breach(f"{target}.brier", brier, baseline, limit))
        for name, value, floor in (("precision", table.precision(), rules.min_precision),
                                   ("recall", table.recall(), rules.min_recall)):
            level = floor + rules.clear_margin if clearing else floor
            if value is not None and value < level:
                found.append(Breach(f"{target}.{name}", value, None, level))
    return found


def baseline_from_first_scored(group: Group, count: int, targets: Sequence[str]) -> dict[str, float]:
    """The fallback baseline: the Brier score of a version's first `count` scored forecasts as champion
    (empty while it has fewer)."""
    baseline = {}
    for target in targets:
        first = group.first_scored(count, target)
        if first is not None:
            baseline[target] = scoring.brier_score(first.p, first.y)
    return baseline


class DriftMonitor:
    """The open episode and the number of episodes so far, per model version."""

    def __init__(self, rules: DriftRules, episodes: Sequence[DriftEpisode] = ()):
        self.rules = rules
        self.open: dict[str, DriftEpisode] = {}
        self.count: dict[str, int] = {}
        for episode in sorted(episodes, key=lambda e: e.ordinal):
            self.count[episode.model_version] = max(self.count.get(episode.model_version, 0), episode.ordinal)
            if episode.cleared_ns is None:
                self.open[episode.model_version] = episode

    def check(self, version: str, as_of_ns: int, group: Group, reference: Reference) -> DriftEpisode | None:
        """Update the state of `version` from its champion group's drift window at `as_of_ns`; return the
        episode that opened or closed now (a closed one has `cleared_ns` set), or None when nothing changed."""
        scored = {t: group.scored_outcomes(self.rules.window_days, as_of_ns, t) for t in self.rules.targets}
        if len(next(iter(scored.values())).p) < self.rules.min_scored:
            return None
        current = self.open.get(version)
        if current is not None:
            if breaches(scored, reference, self.rules, clearing=True):
                return None
            del self.open[version]
            return replace(current, cleared_ns=as_of_ns)
        found = breaches(scored, reference, self.rules, clearing=False)
        if not found:
            return None
        ordinal = self.count.get(version, 0) + 1
        self.count[version] = ordinal
        episode = DriftEpisode(version, ordinal, as_of_ns, found[0], self.rules.window)
        self.open[version] = episode
        return episode
