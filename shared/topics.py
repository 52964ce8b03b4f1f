"""The topic registry: every topic's name, partitions, key, accepted messages and cleanup policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from pydantic import TypeAdapter

from shared import messages as m
from shared.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    value_types: tuple[type[m.Message], ...]
    key: str
    partitions: int = 1
    cleanup_policy: str = "delete"
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)

    @cached_property
    def adapter(self) -> TypeAdapter:
        return m.adapter_for(*self.value_types)


def topic_registry(settings: Settings) -> dict[str, TopicSpec]:
    """All topics by role. One partition each: GOES is one stream a minute, and event-time order matters more
    than parallelism at that rate (see the measured throughput in architecture.md)."""
    t = settings.topics
    specs = [
        TopicSpec(t.flux, (m.FluxObserved,), "satellite", description="flux observations in event-time order"),
        TopicSpec(t.flares, (m.FlareObserved,), "message_id", description="detected and catalogued flares"),
        TopicSpec(t.forecasts, (m.ForecastIssued,), "message_id", description="forecasts for downstream apps"),
        TopicSpec(t.outcomes, (m.ForecastResolved,), "message_id", description="what followed each forecast"),
        TopicSpec(t.metrics, (m.MetricsUpdated,), "message_id", description="skill per model version and window"),
        TopicSpec(t.alerts, (m.MetricDrift, m.XClassFlareObserved), "message_id",
                  description="drift and X-class alerts"),
        TopicSpec(t.retrain_requests, (m.RetrainRequested,), "message_id", description="asks the trainer to train"),
        TopicSpec(
            t.lifecycle,
            (m.ModelTrained, m.TrainingFailed, m.ModelPromoted, m.ModelRolledBack, m.ChallengerChanged),
            "message_id",
            description="trained candidates, promotions and rollbacks",
        ),
        TopicSpec(t.dead_letters, (m.DeadLettered,), "message_id", description="rejected input with its reason"),
    ]
    roles = ["flux", "flares", "forecasts", "outcomes", "metrics", "alerts", "retrain_requests", "lifecycle",
             "dead_letters"]
    return dict(zip(roles, specs))


def spec_by_name(settings: Settings, name: str) -> TopicSpec:
    for spec in topic_registry(settings).values():
        if spec.name == name:
            return spec
    raise KeyError(f"no topic named {name!r} in the registry")
