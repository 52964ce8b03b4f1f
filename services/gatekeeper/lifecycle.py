"""The gatekeeper's acts on the registry: judge, promote, roll back, set a challenger, approve or reject,
request retraining, follow the event-time clock and the live metrics.

The shell around `core`: each act is one unit of work (one database transaction) that locks the model kind's
rows and reads the facts the act decides on, lets the pure act in `core` decide, and applies what it returns
(statuses, history with the validation log, outbox messages); the messages are published right after the
commit (and by the relay if the process died in between).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter

from services.gatekeeper import core, gates, monitoring, retraining, store
from services.gatekeeper.core import Conflict, GatekeeperError, NotFound, Unusable
from services.gatekeeper.evidence import candidate_evidence
from shared import messages as m
from shared import registry
from shared.forecast_model import DigestMismatch, ModelFileError
from shared.kafka import Publisher
from shared.logging import get_logger
from shared.model_status import JUDGED, ModelStatus
from shared.settings import Settings
from shared.topics import spec_by_name

log = get_logger(__name__)
RETRAIN_DECISIONS = Counter(
    "flare_retrain_requests", "Retrain triggers (drift, X-class flare, schedule, operator) and what came of them: a "
    "new request published, or folded into the request in flight or in cooldown", ["trigger", "decision"])
GATE_VERDICTS = Counter("flare_gate_verdicts", "Trained candidates judged by the gates, by verdict", ["decision"])

SYSTEM = core.SYSTEM
AUTO_ROLLBACK = "gatekeeper:auto-rollback"
CLOCK_STREAM = "flux"
__all__ = ["Gatekeeper", "GatekeeperError", "Outcome", "RetrainOutcome"]


@dataclass(frozen=True)
class Outcome:
    """What an act left behind: the kind's champion and challenger, and whether the act changed anything."""

    kind: str
    champion: str | None
    challenger: str | None
    changed: bool
    event_id: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "champion": self.champion, "challenger": self.challenger, "changed": self.changed,
                "event_id": self.event_id, "detail": self.detail}


@dataclass(frozen=True)
class RetrainOutcome:
    request_id: str
    trigger_id: str
    folded: bool
    detail: str


async def _files_problem(row: dict[str, Any]) -> str | None:
    """Why a version's files are not the ones registered (a tampered or missing file), or None."""
    try:
        await asyncio.to_thread(registry.verify_files, row)
    except (DigestMismatch, ModelFileError) as exc:
        return str(exc)
    return None


def _new_event_id() -> str:
    return str(uuid.uuid4())


class UnitOfWork:
    """One act's transaction: what the act reads to decide, and the one place a `core.Change` is written
    (statuses, history with its validation-log rows, outbox). What it queued is published after the commit."""

    def __init__(self, conn: asyncpg.Connection, topics: dict[str, str]):
        self.conn = conn
        self._topics = topics
        self.queued: list[tuple[str, m.Message]] = []

    # ---- reads ------------------------------------------------------------------------------------------------

    async def model(self, version: str) -> dict[str, Any]:
        row = await registry.get(self.conn, version)
        if row is None:
            raise NotFound(f"no model version {version!r} in the registry")
        return row

    async def event_now(self) -> datetime:
        """The system's event time: how far the flux stream has come; the wall clock before any flux arrived."""
        return await store.clock_time(self.conn, CLOCK_STREAM) or store.wall_now()

    async def kind_state(self, kind: str) -> core.KindState:
        """The kind's versions, locked until the transaction ends: two acts on one kind run one after the other,
        and the second sees what the first did."""
        return core.KindState(kind, tuple(await store.lock_kind(self.conn, kind)), await self.event_now())

    async def state_of(self, version: str) -> core.KindState:
        """The locked state of the kind `version` belongs to."""
        return await self.kind_state((await self.model(version))["kind"])

    async def only_kind(self, kind: str | None, status: ModelStatus) -> str:
        if kind is not None:
            return kind
        kinds = sorted({r["kind"] for r in await store.with_status(self.conn, status)})
        if len(kinds) != 1:
            raise Conflict(
                f"name the model kind: {'no kind has' if not kinds else 'several kinds have'} a {status}"
                + (f" ({', '.join(kinds)})" if kinds else "")
            )
        return kinds[0]

    async def last_entry(self, version: str, action: str) -> dict[str, Any] | None:
        return await store.last_entry(self.conn, version, action)

    async def was_champion(self, version: str) -> bool:
        return await store.last_champion_entry(self.conn, version) is not None

    async def predecessor(self, version: str | None) -> str:
        """The champion `version` replaced."""
        if version is None:
            raise Conflict("there is no champion to roll back from")
        crowned = await store.last_champion_entry(self.conn, version)
        previous = crowned["evidence"].get("previous_version") if crowned else None
        if previous is None:
            raise Conflict(f"no champion before {version} is recorded; name the version to roll back to")
        return previous

    # ---- writes -----------------------------------------------------------------------------------------------

    async def record(self, logged: core.Logged) -> None:
        entry = logged.entry
        await store.record(self.conn, entry)
        for name, passed, detail in logged.checks:
            await store.log_check(self.conn, entry.event_id, name, passed, detail, entry.actor)

    async def queue(self, topic_key: str, message: m.Message) -> None:
        topic = self._topics[topic_key]
        await store.enqueue(self.conn, topic, message)
        self.queued.append((topic, message))

    async def apply(self, state: core.KindState, change: core.Change) -> Outcome:
        """Write what the act decided from `state`; a version it crowns must have the files it was registered
        with."""
        if change.crowns is not None and (problem := await _files_problem(state.row(change.crowns))):
            raise Unusable(f"{change.crowns} cannot become champion: {problem}; nothing changed")
        for version, status in change.statuses:
            await store.set_status(self.conn, version, status)
        for logged in change.history:
            await self.record(logged)
        for topic_key, message in change.messages:
            await self.queue(topic_key, message)
        champion, challenger = core.roles_after(state, change)
        return Outcome(change.kind, champion, challenger, change.changed, change.event_id, change.detail)


class Gatekeeper:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, publisher: Publisher, *, publish_timeout_seconds: float = 10.0,
    ):
        self.pool = pool
        self.settings = settings
        self.publisher = publisher
        # An act has committed when it publishes: a broker that does not answer in time must not hold the
        # caller; the relay publishes later.
        self.publish_timeout_seconds = publish_timeout_seconds
        self._topics = {core.LIFECYCLE: settings.topics.lifecycle, "retrain_requests": settings.topics.retrain_requests}

    # ---- time and the unit of work ------------------------------------------------------------------------

    async def event_now(self, conn: asyncpg.Connection) -> datetime:
        """The system's event time: how far the flux stream has come; the wall clock before any flux arrived."""
        return await UnitOfWork(conn, self._topics).event_now()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction for one act; what it queued is published once it has committed."""
        async with self.pool.acquire() as conn, conn.transaction():
            work = UnitOfWork(conn, self._topics)
            yield work
        await self._publish(work.queued)

    # ---- publishing ---------------------------------------------------------------------------------------

    async def _publish(self, messages: list[tuple[str, m.Message]]) -> None:
        """Publish what a committed act queued; on failure the relay publishes it later."""
        if not messages:
            return
        try:
            async with asyncio.timeout(self.publish_timeout_seconds):
                for topic, message in messages:
                    await self.publisher.publish(topic, message)
        except Exception as exc:  # the outbox keeps them; the relay retries
            log.warning("outbox.publish_deferred", error=str(exc), count=len(messages))
            return
        async with self.pool.acquire() as conn:
            await store.mark_published(conn, [message.message_id for _, message in messages])

    async def relay_outbox(self, older_than_seconds: float = 5.0) -> int:
        """Publish messages a crash left unpublished; return how many."""
        async with self.pool.acquire() as conn:
            rows = await store.unpublished(conn, older_than_seconds=older_than_seconds)
        pending = [(row["topic"], spec_by_name(self.settings, row["topic"]).adapter.validate_python(row["payload"]))
                   for row in rows if _known_topic(self.settings, row["topic"])]
        await self._publish(pending)
        return len(pending)

    # ---- the acts -----------------------------------------------------------------------------------------

    async def promote(
        self, version: str, expected_current: str | None, actor: str, reason: str, *, force: bool = False,
    ) -> Outcome:
        """Make `version` champion. One that has not passed the gates (no verdict yet, or a failed or held one)
        and was never champion is refused naming the gate; with `force` it is promoted and the override is
        recorded before the promotion, with the actor, the reason and the gate it overrode."""
        async with self.unit_of_work() as work:
            state = await work.state_of(version)
            target = state.row(version)
            standing = core.gate_standing(target, await work.last_entry(version, "gate_verdict"),
                                          await work.was_champion(version))
            outcome = await work.apply(state, core.promote(
                state, version, expected_current, actor, reason, force=force, standing=standing,
                event_id=_new_event_id()))
        if outcome.changed:
            log.info("model.promoted", version=version, actor=actor, forced=standing is not None)
        return outcome

    async def rollback(
        self, version: str | None, from_version: str | None, actor: str, reason: str, *, kind: str | None = None,
        evidence: dict[str, Any] | None = None, event_id: str | None = None,
    ) -> Outcome:
        """Make `version` (default: the champion before `from_version`, or before the current one) champion again.
        Asking for what is already so changes nothing; `from_version` no longer champion answers Conflict."""
        async with self.unit_of_work() as work:
            named = version or from_version
            model_kind = (await work.model(named))["kind"] if named else \
                await work.only_kind(kind, ModelStatus.CHAMPION)
            state = await work.kind_state(model_kind)
            target_version = version or await work.predecessor(from_version or state.version_of(ModelStatus.CHAMPION))
            outcome = await work.apply(state, core.rollback(
                state, target_version, from_version, actor, reason, event_id=event_id or _new_event_id(),
                evidence=evidence or {}))
        if outcome.changed:
            log.info("model.rolled_back", version=target_version, actor=actor, reason=reason)
        return outcome

    async def set_challenger(self, version: str | None, actor: str, reason: str, *, kind: str | None = None) -> Outcome:
        """Run `version` in shadow beside the champion, or with None stop shadowing."""
        async with self.unit_of_work() as work:
            model_kind = (await work.model(version))["kind"] if version else \
                await work.only_kind(kind, ModelStatus.CHALLENGER)
            state = await work.kind_state(model_kind)
            previous = state.holder(ModelStatus.CHALLENGER)
            chosen = await work.last_entry(previous["version"], "challenger_set") if previous else None
            outcome = await work.apply(state, core.set_challenger(
                state, version, actor, reason, event_id=_new_event_id(),
                previous_prior_status=chosen["evidence"].get("prior_status") if chosen else None))
        if outcome.changed:
            log.info("model.challenger_changed", version=version, actor=actor)
        return outcome

    async def approve(self, version: str, actor: str, reason: str) -> Outcome:
        """Promote a held candidate; its requester may not approve it (four eyes)."""
        return await self._decide_held(version, actor, reason, approve=True)

    async def reject(self, version: str, actor: str, reason: str) -> Outcome:
        return await self._decide_held(version, actor, reason, approve=False)

    async def _decide_held(self, version: str, actor: str, reason: str, *, approve: bool) -> Outcome:
        """An operator's decision on a held candidate: approved (and promoted), or rejected."""
        async with self.unit_of_work() as work:
            state = await work.state_of(version)
            verdict = await work.last_entry(version, "gate_verdict")
            if approve:
                change = core.approve(state, version, actor, reason, verdict=verdict, event_id=_new_event_id(),
                                      already_approved=await work.last_entry(version, "approved") is not None)
            else:
                change = core.reject(state, version, actor, reason, verdict=verdict, event_id=_new_event_id())
            outcome = await work.apply(state, change)
        if outcome.changed:
            log.info("model.approved" if approve else "model.rejected", version=version, actor=actor)
        return outcome

    async def request_retrain(self, trigger: retraining.Trigger) -> RetrainOutcome:
        """Open a retrain request for the trigger, or fold it into the one in flight or in cooldown."""
        gk = self.settings.gatekeeper
        async with self.unit_of_work() as work:
            await store.lock_retraining(work.conn)
            seen = await store.trigger_seen(work.conn, trigger.trigger_id)
            if seen is not None:
                return RetrainOutcome(seen["request_id"], trigger.trigger_id, seen["folded"], seen["decision"])
            earlier = [retraining.RequestState(**r) for r in await store.competing_requests(
                work.conn, trigger.event_time, gk.retrain_cooldown_hours)]
            decision = retraining.decide(
                trigger, earlier, cooldown=timedelta(hours=gk.retrain_cooldown_hours),
                timeout=timedelta(hours=gk.retrain_timeout_hours), wall_now=store.wall_now(),
            )
            if decision.action == "request":
                message = retraining.retrain_message(trigger, decision.request_id)
                await store.insert_request(work.conn, message)
                await work.record(core.act_entry(store.HistoryEntry(
                    message.message_id, "retrain_requested", None, trigger.requested_by, trigger.reason,
                    trigger.event_time, {"request_id": message.message_id, "target_class": trigger.target_class,
                                         **message.evidence},
                )))
                await work.queue("retrain_requests", message)
            await store.insert_trigger(
                work.conn, trigger_id=trigger.trigger_id, request_id=decision.request_id, source=trigger.source,
                target_class=trigger.target_class, reason=trigger.reason, requested_by=trigger.requested_by,
                evidence=trigger.evidence, event_time=trigger.event_time, folded=decision.action == "fold",
                decision=decision.why,
            )
        queued = work.queued
        RETRAIN_DECISIONS.labels(trigger.source, "requested" if queued else "folded").inc()
        log.info("retrain." + ("requested" if queued else "folded"), request_id=decision.request_id,
                 trigger=trigger.source, why=decision.why)
        return RetrainOutcome(decision.request_id, trigger.trigger_id, decision.action == "fold", decision.why)

    # ---- reactions to the streams -------------------------------------------------------------------------

    async def judge_candidate(self, trained: m.ModelTrained) -> gates.Verdict | None:
        """Gate a freshly trained candidate and act on the verdict; a redelivered message changes nothing."""
        async with self.unit_of_work() as work:
            row = await registry.get(work.conn, trained.version)
            if row is None:
                log.error("gate.unknown_candidate", version=trained.version,
                          reason="ModelTrained names a version that is not in the registry")
                return None
            state = await work.kind_state(row["kind"])
            row = state.row(trained.version)
            if row["status"] != JUDGED:
                return None
            evidence = candidate_evidence(row, trained, await _files_problem(row))
            requested_by = None
            if trained.request_id:
                requested_by = await store.finish_request(work.conn, trained.request_id, "trained")
            verdict, change = core.judge(state, trained, evidence, thresholds=self.settings.thresholds,
                                         policy=self.settings.gatekeeper.promotion_policy, requested_by=requested_by)
            await work.apply(state, change)
        GATE_VERDICTS.labels(verdict.decision.lower()).inc()
        log.info("gate.verdict", version=trained.version, decision=verdict.decision, reason=verdict.reason)
        return verdict

    async def training_failed(self, failed: m.TrainingFailed) -> None:
        async with self.unit_of_work() as work:
            if failed.request_id:
                await store.finish_request(work.conn, failed.request_id, "failed")
            await work.record(core.Logged(store.HistoryEntry(
                failed.message_id, "training_failed", None, "trainer", failed.reason, failed.event_time,
                {"request_id": failed.request_id},
            )))

    async def clock_moved(self, event_time: datetime) -> list[RetrainOutcome]:
        """Advance the event-time clock; ask for the monthly retraining at each tick the clock crosses. The
        history counted is what the stream has shown or the database holds, whichever reaches further back."""
        async with self.unit_of_work() as work:
            previous, first = await store.advance_clock(work.conn, CLOCK_STREAM, event_time)
        ticks = retraining.monthly_ticks(previous, event_time)
        if not ticks:
            return []
        async with self.pool.acquire() as conn:
            stored = await store.stored_flux_start(conn)
        first = min(first, stored or first)
        outcomes = []
        for tick in ticks:
            if retraining.enough_history(first, tick, timedelta(days=self.settings.model.min_history_days)):
                outcomes.append(await self.request_retrain(retraining.schedule_trigger(tick, first)))
            else:
                log.info("retrain.schedule_skipped", tick=tick.isoformat(), history_start=first.isoformat(),
                         reason=f"less than {self.settings.model.min_history_days} days of history")
        return outcomes

    async def metrics_updated(self, update: m.MetricsUpdated) -> Outcome | None:
        """Keep the live metrics; roll a new champion back if they fall clearly below its predecessor's."""
        gk = self.settings.gatekeeper
        async with self.pool.acquire() as conn:
            await store.record_metrics(conn, update)
            if update.shadow:
                return None
            row = await registry.get(conn, update.model_version)
            if row is None or row["status"] != ModelStatus.CHAMPION:
                return None
            crowned = await store.last_champion_entry(conn, update.model_version)
            if crowned is None or crowned["action"] != "promoted" or crowned["event_time"] is None:
                return None
            predecessor = crowned["evidence"].get("previous_version")
            if predecessor is None:
                return None
            before = await store.latest_metrics(conn, predecessor, update.window, not_after=crowned["event_time"])
        if before is None:
            return None
        reason = monitoring.rollback_reason(
            monitoring.LiveMetrics(update.model_version, update.window, update.scored_count, update.event_time,
                                   update.metrics),
            monitoring.LiveMetrics(predecessor, before["window_name"], before["scored_count"], before["as_of"],
                                   before["metrics"]),
            promoted_at=crowned["event_time"], window=timedelta(hours=gk.monitoring_window_hours),
            margin=gk.rollback_margin, min_scored=gk.rollback_min_scored,
        )
        if reason is None:
            return None
        try:
            return await self.rollback(
                predecessor, update.model_version, AUTO_ROLLBACK, reason,
                evidence={"metrics_message": update.message_id, "champion_metrics": update.metrics,
                          "predecessor_metrics": before["metrics"], "window": update.window},
                event_id=m.stable_id("auto-rollback", update.model_version, crowned["event_id"]),
            )
        except GatekeeperError as exc:
            log.warning("rollback.automatic_refused", version=update.model_version, reason=str(exc))
            return None

    async def run_relay(self, interval_seconds: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.relay_outbox()
            except Exception as exc:  # a database hiccup must not end the relay
                log.warning("outbox.relay_failed", error=str(exc))


def _known_topic(settings: Settings, topic: str) -> bool:
    """The outbox is shared by every gatekeeper on the database; each relays the topics it knows."""
    try:
        spec_by_name(settings, topic)
    except KeyError:
        return False
    return True
