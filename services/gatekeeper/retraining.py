"""When to ask the trainer for a new model: the triggers, the monthly schedule, folding and cooldown.

Every trigger (a drift alert, an X-class flare, a monthly tick, an operator's request) is a `Trigger` with the
stable id of the fact behind it. `decide` turns it into either a new retrain request or a fold into an existing
one, so a storm of alerts yields one request and a redelivered alert changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from shared import messages as m

TriggerSource = Literal["drift", "x_flare", "schedule", "operator"]
IN_FLIGHT = "requested"
MONTHLY_HOUR_UTC = 2


@dataclass(frozen=True)
class Trigger:
    trigger_id: str
    source: TriggerSource
    target_class: str
    reason: str
    requested_by: str
    event_time: datetime
    evidence: dict[str, Any] = field(default_factory=dict)
    train_until: datetime | None = None
    # The alert's own correlation id, so the logs follow one story from the evaluator to the trainer.
    correlation_id: str | None = None


@dataclass(frozen=True)
class RequestState:
    """What `decide` needs to know about an earlier retrain request."""

    request_id: str
    target_class: str
    status: str
    event_time: datetime
    created_at: datetime


@dataclass(frozen=True)
class Decision:
    action: Literal["request", "fold"]
    request_id: str
    why: str


def overlaps(a: str, b: str) -> bool:
    """Two requests compete for the same model when their targets are equal or either is 'all'."""
    return a == b or "all" in (a, b)


def request_id_for(trigger: Trigger) -> str:
    return m.stable_id("retrain-request", trigger.trigger_id, trigger.target_class)


def decide(
    trigger: Trigger, earlier: list[RequestState], *, cooldown: timedelta, timeout: timedelta, wall_now: datetime,
) -> Decision:
    """A new request, or a fold into the one in flight or inside the cooldown.

    In flight means requested and not yet answered by the trainer, unless it was asked longer than `timeout`
    ago in wall-clock time (training runs in wall-clock time; a trainer that died must not block retraining
    for ever). The cooldown is in event time, so a replay folds the same way the live run did; an operator's
    request is a deliberate act and is not held back by it.
    """
    competing = [r for r in earlier if overlaps(r.target_class, trigger.target_class)]
    in_flight = [r for r in competing if r.status == IN_FLIGHT and wall_now - r.created_at < timeout]
    if in_flight:
        latest = max(in_flight, key=lambda r: r.created_at)
        return Decision("fold", latest.request_id,
                        f"request {latest.request_id} for {latest.target_class} is in flight")
    if trigger.source != "operator":
        recent = [r for r in competing if abs(trigger.event_time - r.event_time) < cooldown]
        if recent:
            latest = max(recent, key=lambda r: r.event_time)
            return Decision(
                "fold", latest.request_id,
                f"within the {cooldown.total_seconds() / 3600:g} h cooldown of request {latest.request_id}",
            )
    return Decision("request", request_id_for(trigger), f"{trigger.source}: {trigger.reason}")


def retrain_message(trigger: Trigger, request_id: str) -> m.RetrainRequested:
    return m.RetrainRequested(
        message_id=request_id,
        event_time=trigger.event_time,
        correlation_id=trigger.correlation_id or request_id,
        target_class=trigger.target_class,
        reason=trigger.reason,
        requested_by=trigger.requested_by,
        evidence={"trigger": trigger.source, "trigger_id": trigger.trigger_id, **trigger.evidence},
        train_until=trigger.train_until,
    )


# ---- the triggers -------------------------------------------------------------------------------------------


def drift_trigger(alert: m.MetricDrift) -> Trigger:
    baseline = "" if alert.baseline is None else f" (baseline {alert.baseline:.4g})"
    return Trigger(
        trigger_id=alert.message_id, source="drift", target_class="all",
        reason=f"{alert.metric} drifted to {alert.value:.4g}{baseline} beyond {alert.threshold:.4g} over "
               f"{alert.window} for {alert.model_version}",
        requested_by="gatekeeper", event_time=alert.event_time, train_until=alert.event_time,
        correlation_id=alert.correlation_id,
        evidence={"alert_id": alert.message_id, "model_version": alert.model_version, "metric": alert.metric,
                  "value": alert.value, "baseline": alert.baseline, "threshold": alert.threshold,
                  "window": alert.window},
    )


def x_flare_trigger(alert: m.XClassFlareObserved) -> Trigger:
    return Trigger(
        trigger_id=alert.message_id, source="x_flare", target_class="all",
        reason=f"X-class flare {alert.goes_class} peaked at {alert.peak_time.isoformat()}",
        requested_by="gatekeeper", event_time=alert.event_time, train_until=alert.event_time,
        correlation_id=alert.correlation_id,
        evidence={"alert_id": alert.message_id, "flare_id": alert.flare_id, "goes_class": alert.goes_class,
                  "peak_time": alert.peak_time.isoformat()},
    )


def schedule_trigger(tick: datetime, history_start: datetime) -> Trigger:
    return Trigger(
        trigger_id=m.stable_id("monthly-retrain", tick.isoformat()), source="schedule", target_class="all",
        reason=f"monthly retraining due at {tick.isoformat()}", requested_by="gatekeeper:schedule",
        event_time=tick, train_until=tick,
        evidence={"tick": tick.isoformat(), "history_start": history_start.isoformat()},
    )


def operator_trigger(
    caller: str, target_class: str, reason: str, event_time: datetime, request_key: str,
) -> Trigger:
    """`request_key` makes the operator's call idempotent: the same key retried is the same trigger."""
    return Trigger(
        trigger_id=m.stable_id("operator-retrain", caller, request_key), source="operator",
        target_class=target_class, reason=reason, requested_by=caller, event_time=event_time,
        evidence={"operator": caller},
    )


# ---- the monthly schedule -----------------------------------------------------------------------------------


def _monthly_tick(year: int, month: int) -> datetime:
    return datetime(year, month, 1, MONTHLY_HOUR_UTC, tzinfo=timezone.utc)


def monthly_ticks(previous: datetime | None, current: datetime) -> list[datetime]:
    """Every first-of-month 02:00 UTC in (previous, current], oldest first.

    Each is its own trigger whether the clock steps a minute at a time (live) or a batch of a replay jumps
    months at once, so a replay asks exactly as the live run did; folding keeps it to one request in flight.
    A clock that moves back (a replay starting) crosses nothing until it moves forward again.
    """
    if previous is None or current <= previous:
        return []
    year, month = previous.year, previous.month
    ticks = []
    while (tick := _monthly_tick(year, month)) <= current:
        if tick > previous:
            ticks.append(tick)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return ticks


def enough_history(history_start: datetime, tick: datetime, min_history: timedelta) -> bool:
    return tick - history_start >= min_history
