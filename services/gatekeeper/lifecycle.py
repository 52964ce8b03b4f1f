"""The gatekeeper's acts on the registry: judge, promote, roll back, set a challenger, approve or reject,
request retraining, follow the event-time clock and the live metrics.

Each act is one database transaction that locks the model kind's rows, checks what the caller expected,
changes statuses, appends to the history and the validation log, and queues the lifecycle message in the
outbox; the message is published right after the commit (and by the relay if the process died in between).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter

from services.gatekeeper import gates, monitoring, retraining, store
from services.gatekeeper.evidence import candidate_evidence
from shared import messages as m
from shared import registry
from shared.forecast_model import DigestMismatch, ModelFileError
from shared.kafka import Publisher
from shared.logging import get_logger
from shared.settings import Settings
from shared.topics import spec_by_name

log = get_logger(__name__)
RETRAIN_DECISIONS = Counter(
    "flare_retrain_requests", "Retrain triggers (drift, X-class flare, schedule, operator) and what came of them: a "
    "new request published, or folded into the request in flight or in cooldown", ["trigger", "decision"])
GATE_VERDICTS = Counter("flare_gate_verdicts", "Trained candidates judged by the gates, by verdict", ["decision"])

SYSTEM = "gatekeeper"
AUTO_ROLLBACK = "gatekeeper:auto-rollback"
CLOCK_STREAM = "flux"
# A held candidate is not among them: it waits for `approve`, which a second operator must give. A candidate,
# challenger or rejected version also needs a passing gate verdict (or to have been champion), else `force`.
PROMOTABLE = ("candidate", "challenger", "retired", "rejected")
ROLLBACK_TARGETS = ("retired", "challenger")
CHALLENGER_SOURCES = ("candidate", "held", "retired")


class GatekeeperError(Exception):
    status_code = 400


class NotFound(GatekeeperError):
    status_code = 404


class Conflict(GatekeeperError):
    status_code = 409


class NotAllowed(GatekeeperError):
    status_code = 403


class Unusable(GatekeeperError):
    """The version's files are missing or not what was registered: it cannot become champion."""
    status_code = 422


class GateRefused(Conflict):
    """The version has not passed the gates; promoting it needs an explicit override."""


@dataclass(frozen=True)
class GateStanding:
    """Why a version has not passed the gates: no verdict, or a failed or held one (the gates it did not pass)."""

    why: str
    verdict_event: str | None
    gates: list[str]


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


def _holder(rows: list[dict[str, Any]], status: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["status"] == status), None)


async def _files_problem(row: dict[str, Any]) -> str | None:
    """Why a version's files are not the ones registered (a tampered or missing file), or None."""
    try:
        await asyncio.to_thread(registry.verify_files, row)
    except (DigestMismatch, ModelFileError) as exc:
        return str(exc)
    return None


def _new_event_id() -> str:
    return str(uuid.uuid4())


class Gatekeeper:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, publisher: Publisher, *, publish_timeout_seconds: float = 10.0):
        self.pool = pool
        self.settings = settings
        self.publisher = publisher
        # An act has committed when it publishes: a broker that does not answer in time must not hold the
        # caller; the relay publishes later.
        self.publish_timeout_seconds = publish_timeout_seconds
        self._lifecycle_topic = settings.topics.lifecycle
        self._retrain_topic = settings.topics.retrain_requests

    # ---- time ---------------------------------------------------------------------------------------------

    async def event_now(self, conn: asyncpg.Connection) -> datetime:
        """The system's event time: how far the flux stream has come; the wall clock before any flux arrived."""
        return await store.clock_time(conn, CLOCK_STREAM) or store.wall_now()

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
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await self._model(conn, version)
                rows = await store.lock_kind(conn, row["kind"])
                champion = _holder(rows, "champion")
                current = champion["version"] if champion else None
                if current == version:
                    return await self._state(conn, row["kind"], False, None, f"{version} is already champion")
                if expected_current != current:
                    raise Conflict(
                        f"you expected to replace {expected_current or 'no champion'}, but the champion of "
                        f"{row['kind']} is {current or 'nobody'}; nothing changed"
                    )
                target = next(r for r in rows if r["version"] == version)
                if target["status"] == "held":
                    raise Conflict(f"{version} is held for approval: another operator approves it (`flare approve`)")
                if target["status"] not in PROMOTABLE:
                    raise Conflict(f"{version} is {target['status']}; only {', '.join(PROMOTABLE)} versions can be promoted")
                standing = await self._gate_standing(conn, target)
                if standing is not None and not force:
                    raise GateRefused(
                        f"{version} {standing.why}; it is not promoted. Promoting it past the gates is an override: "
                        f"`flare promote {version} --force --reason TEXT` (REST: \"force\": true), kept in the history"
                    )
                event_id = _new_event_id()
                evidence: dict[str, Any] = {}
                if standing is not None:
                    evidence = {"forced": True, "overridden": standing.why, "verdict_event": standing.verdict_event}
                    await self._record(conn, store.HistoryEntry(
                        f"{event_id}:forced", "gate_overridden", version, actor, reason, await self.event_now(conn),
                        {"kind": row["kind"], "status": target["status"], "gates": standing.gates, **evidence},
                    ))
                queued = await self._crown(conn, target, champion, rows, actor, reason, "promoted", event_id, evidence)
                detail = f"{version} is champion" + (f" (forced past the gates: {standing.why})" if standing else "")
                outcome = await self._state(conn, row["kind"], True, queued[0][1].message_id, detail)
        await self._publish(queued)
        log.info("model.promoted", version=version, previous=current, actor=actor, forced=standing is not None)
        return outcome

    async def rollback(
        self, version: str | None, from_version: str | None, actor: str, reason: str, *, kind: str | None = None,
        evidence: dict[str, Any] | None = None, event_id: str | None = None,
    ) -> Outcome:
        """Make `version` (default: the champion before `from_version`, or before the current one) champion again.
        Asking for what is already so changes nothing; `from_version` no longer champion answers Conflict."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                named = version or from_version
                model_kind = (await self._model(conn, named))["kind"] if named else await self._only_kind(conn, kind, "champion")
                rows = await store.lock_kind(conn, model_kind)
                champion = _holder(rows, "champion")
                current = champion["version"] if champion else None
                target_version = version or await self._predecessor(conn, from_version or current)
                if target_version == current:
                    return await self._state(conn, model_kind, False, None, f"{target_version} is already champion")
                if from_version is not None and from_version != current:
                    raise Conflict(
                        f"you asked to roll back from {from_version}, but the champion of {model_kind} is "
                        f"{current or 'nobody'}; nothing changed"
                    )
                if champion is None:
                    raise Conflict(f"{model_kind} has no champion to roll back from; promote a version instead")
                target = next((r for r in rows if r["version"] == target_version), None)
                if target is None:
                    raise NotFound(f"{target_version} is not a {model_kind} model in the registry")
                if target["status"] not in ROLLBACK_TARGETS:
                    raise Conflict(
                        f"{target_version} is {target['status']}; a rollback returns to a former champion "
                        f"({' or '.join(ROLLBACK_TARGETS)})"
                    )
                queued = await self._crown(
                    conn, target, champion, rows, actor, reason, "rolled_back", event_id or _new_event_id(),
                    evidence or {},
                )
                outcome = await self._state(conn, model_kind, True, queued[0][1].message_id,
                                            f"rolled back from {current} to {target_version}")
        await self._publish(queued)
        log.info("model.rolled_back", version=target_version, from_version=current, actor=actor, reason=reason)
        return outcome

    async def set_challenger(self, version: str | None, actor: str, reason: str, *, kind: str | None = None) -> Outcome:
        """Run `version` in shadow beside the champion, or with None stop shadowing."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                model_kind = (await self._model(conn, version))["kind"] if version else await self._only_kind(conn, kind, "challenger")
                rows = await store.lock_kind(conn, model_kind)
                previous = _holder(rows, "challenger")
                if (previous["version"] if previous else None) == version:
                    return await self._state(conn, model_kind, False, None, f"challenger is already {version or 'none'}")
                queued: list[tuple[str, m.Message]] = []
                event_id = _new_event_id()
                now = await self.event_now(conn)
                if version is not None:
                    target = next(r for r in rows if r["version"] == version)
                    if target["status"] not in CHALLENGER_SOURCES:
                        raise Conflict(f"{version} is {target['status']}; a challenger must be {', '.join(CHALLENGER_SOURCES)}")
                if previous is not None:
                    await self._step_down_challenger(conn, previous, actor, reason, now, f"{event_id}:previous" if version else event_id)
                if version is not None:
                    await store.set_status(conn, version, "challenger")
                    await self._record(conn, store.HistoryEntry(
                        event_id, "challenger_set", version, actor, reason, now,
                        {"kind": model_kind, "prior_status": target["status"],
                         "replaced": previous["version"] if previous else None},
                    ))
                queued.append(await self._queue(conn, self._lifecycle_topic, m.ChallengerChanged(
                    message_id=event_id, event_time=now, correlation_id=event_id, version=version, actor=actor, reason=reason,
                )))
                outcome = await self._state(conn, model_kind, True, event_id, f"challenger is {version or 'none'}")
        await self._publish(queued)
        log.info("model.challenger_changed", version=version, actor=actor)
        return outcome

    async def approve(self, version: str, actor: str, reason: str) -> Outcome:
        """Promote a held candidate; its requester may not approve it (four eyes)."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await self._model(conn, version)
                rows = await store.lock_kind(conn, row["kind"])
                target = next(r for r in rows if r["version"] == version)
                approved = await store.last_entry(conn, version, "approved")
                if target["status"] == "champion" and approved is not None:
                    return await self._state(conn, row["kind"], False, None, f"{version} was already approved")
                verdict = await self._held_verdict(conn, target, actor, "approve")
                champion = _holder(rows, "champion")
                event_id = _new_event_id()
                now = await self.event_now(conn)
                await self._record(conn, store.HistoryEntry(
                    f"{event_id}:approved", "approved", version, actor, reason, now,
                    {"kind": row["kind"], "verdict_event": verdict["event_id"]},
                ))
                queued = await self._crown(conn, target, champion, rows, actor, reason, "promoted", event_id,
                                           {"approved_by": actor})
                outcome = await self._state(conn, row["kind"], True, event_id, f"{version} approved and promoted")
        await self._publish(queued)
        log.info("model.approved", version=version, actor=actor)
        return outcome

    async def reject(self, version: str, actor: str, reason: str) -> Outcome:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await self._model(conn, version)
                await store.lock_kind(conn, row["kind"])
                target = await registry.get(conn, version)
                if target["status"] == "rejected":
                    return await self._state(conn, row["kind"], False, None, f"{version} was already rejected")
                verdict = await self._held_verdict(conn, target, actor, "reject")
                event_id = _new_event_id()
                await store.set_status(conn, version, "rejected")
                await self._record(conn, store.HistoryEntry(
                    event_id, "rejected", version, actor, reason, await self.event_now(conn),
                    {"kind": row["kind"], "verdict_event": verdict["event_id"]},
                ))
                outcome = await self._state(conn, row["kind"], True, event_id, f"{version} rejected")
        log.info("model.rejected", version=version, actor=actor)
        return outcome

    async def request_retrain(self, trigger: retraining.Trigger) -> RetrainOutcome:
        """Open a retrain request for the trigger, or fold it into the one in flight or in cooldown."""
        gk = self.settings.gatekeeper
        queued: list[tuple[str, m.Message]] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await store.lock_retraining(conn)
                seen = await store.trigger_seen(conn, trigger.trigger_id)
                if seen is not None:
                    return RetrainOutcome(seen["request_id"], trigger.trigger_id, seen["folded"], seen["decision"])
                earlier = [retraining.RequestState(**r) for r in await store.competing_requests(
                    conn, trigger.event_time, gk.retrain_cooldown_hours)]
                decision = retraining.decide(
                    trigger, earlier, cooldown=timedelta(hours=gk.retrain_cooldown_hours),
                    timeout=timedelta(hours=gk.retrain_timeout_hours), wall_now=store.wall_now(),
                )
                if decision.action == "request":
                    message = retraining.retrain_message(trigger, decision.request_id)
                    await store.insert_request(conn, message)
                    await self._record(conn, store.HistoryEntry(
                        message.message_id, "retrain_requested", None, trigger.requested_by, trigger.reason,
                        trigger.event_time, {"request_id": message.message_id, "target_class": trigger.target_class,
                                             **message.evidence},
                    ))
                    queued.append(await self._queue(conn, self._retrain_topic, message))
                await store.insert_trigger(
                    conn, trigger_id=trigger.trigger_id, request_id=decision.request_id, source=trigger.source,
                    target_class=trigger.target_class, reason=trigger.reason, requested_by=trigger.requested_by,
                    evidence=trigger.evidence, event_time=trigger.event_time, folded=decision.action == "fold",
                    decision=decision.why,
                )
        await self._publish(queued)
        RETRAIN_DECISIONS.labels(trigger.source, "requested" if queued else "folded").inc()
        log.info("retrain." + ("requested" if queued else "folded"), request_id=decision.request_id,
                 trigger=trigger.source, why=decision.why)
        return RetrainOutcome(decision.request_id, trigger.trigger_id, decision.action == "fold", decision.why)

    # ---- reactions to the streams -------------------------------------------------------------------------

    async def judge_candidate(self, trained: m.ModelTrained) -> gates.Verdict | None:
        """Gate a freshly trained candidate and act on the verdict; a redelivered message changes nothing."""
        event_id = m.stable_id("gate-verdict", trained.version)
        queued: list[tuple[str, m.Message]] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await registry.get(conn, trained.version)
                if row is None:
                    log.error("gate.unknown_candidate", version=trained.version,
                              reason="ModelTrained names a version that is not in the registry")
                    return None
                rows = await store.lock_kind(conn, row["kind"])
                row = next(r for r in rows if r["version"] == trained.version)
                if row["status"] != "candidate":
                    return None
                champion = _holder(rows, "champion")
                verdict = gates.judge(
                    candidate_evidence(row, trained, await _files_problem(row)), champion["version"] if champion else None,
                    self.settings.thresholds, self.settings.gatekeeper.promotion_policy,
                )
                requested_by = None
                if trained.request_id:
                    requested_by = await store.finish_request(conn, trained.request_id, "trained")
                now = await self.event_now(conn)
                await self._record(conn, store.HistoryEntry(
                    event_id, "gate_verdict", trained.version, SYSTEM, verdict.reason, now,
                    {"kind": row["kind"], "request_id": trained.request_id, "requested_by": requested_by,
                     "champion": champion["version"] if champion else None, **verdict.evidence()},
                ), check=False)
                for check in verdict.checks:
                    await store.log_check(conn, event_id, f"gate.{check.name}", check.passed is True,
                                          {"observed": check.observed, "required": check.required}, SYSTEM)
                await store.log_check(conn, event_id, "gate.verdict", verdict.decision != "REJECT",
                                      f"{verdict.decision}: {verdict.reason}", SYSTEM)
                if verdict.decision == "PROMOTE":
                    queued = await self._crown(conn, row, champion, rows, SYSTEM, verdict.reason, "promoted",
                                               m.stable_id("gate-promotion", trained.version), {"verdict_event": event_id})
                else:
                    await store.set_status(conn, trained.version, "held" if verdict.decision == "HOLD" else "rejected")
        await self._publish(queued)
        GATE_VERDICTS.labels(verdict.decision.lower()).inc()
        log.info("gate.verdict", version=trained.version, decision=verdict.decision, reason=verdict.reason)
        return verdict

    async def training_failed(self, failed: m.TrainingFailed) -> None:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                if failed.request_id:
                    await store.finish_request(conn, failed.request_id, "failed")
                await self._record(conn, store.HistoryEntry(
                    failed.message_id, "training_failed", None, "trainer", failed.reason, failed.event_time,
                    {"request_id": failed.request_id},
                ), check=False)

    async def clock_moved(self, event_time: datetime) -> list[RetrainOutcome]:
        """Advance the event-time clock; ask for the monthly retraining at each tick the clock crosses. The
        history counted is what the stream has shown or the database holds, whichever reaches further back."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                previous, first = await store.advance_clock(conn, CLOCK_STREAM, event_time)
            ticks = retraining.monthly_ticks(previous, event_time)
            if not ticks:
                return []
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
            if row is None or row["status"] != "champion":
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
            monitoring.LiveMetrics(update.model_version, update.window, update.scored_count, update.event_time, update.metrics),
            monitoring.LiveMetrics(predecessor, before["window_name"], before["scored_count"], before["as_of"], before["metrics"]),
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

    # ---- helpers ------------------------------------------------------------------------------------------

    async def _model(self, conn: asyncpg.Connection, version: str) -> dict[str, Any]:
        row = await registry.get(conn, version)
        if row is None:
            raise NotFound(f"no model version {version!r} in the registry")
        return row

    async def _only_kind(self, conn: asyncpg.Connection, kind: str | None, status: str) -> str:
        if kind is not None:
            return kind
        kinds = sorted({r["kind"] for r in await store.with_status(conn, status)})
        if len(kinds) != 1:
            raise Conflict(
                f"name the model kind: {'no kind has' if not kinds else 'several kinds have'} a {status}"
                + (f" ({', '.join(kinds)})" if kinds else "")
            )
        return kinds[0]

    async def _predecessor(self, conn: asyncpg.Connection, version: str | None) -> str:
        if version is None:
            raise Conflict("there is no champion to roll back from")
        crowned = await store.last_champion_entry(conn, version)
        previous = crowned["evidence"].get("previous_version") if crowned else None
        if previous is None:
            raise Conflict(f"no champion before {version} is recorded; name the version to roll back to")
        return previous

    async def _gate_standing(self, conn: asyncpg.Connection, target: dict[str, Any]) -> GateStanding | None:
        """Why `target` has not passed the gates, or None: its last verdict was PROMOTE, or it was champion
        once (a retired version, or a challenger that had been champion)."""
        version = target["version"]
        if target["status"] == "retired" or await store.last_champion_entry(conn, version) is not None:
            return None
        verdict = await store.last_entry(conn, version, "gate_verdict")
        if verdict is None:
            return GateStanding("has no gate verdict: the gates have not judged it (the gatekeeper judges the "
                                "ModelTrained its trainer announces)", None, [])
        evidence = verdict["evidence"] or {}
        if evidence.get("decision") == "PROMOTE":
            return None
        gates_named = [c["name"] for c in evidence.get("checks", []) if c.get("passed") is not True]
        judged = "failed" if evidence.get("decision") == "REJECT" else "was held by"
        return GateStanding(f"{judged} the gates ({evidence.get('decision')}): {verdict['reason']}",
                            verdict["event_id"], gates_named)

    async def _held_verdict(self, conn: asyncpg.Connection, target: dict[str, Any], actor: str, act: str) -> dict[str, Any]:
        if target["status"] != "held":
            raise Conflict(f"{target['version']} is {target['status']}; only a held candidate can be approved or rejected")
        verdict = await store.last_entry(conn, target["version"], "gate_verdict")
        requested_by = verdict["evidence"].get("requested_by") if verdict else None
        if requested_by is not None and requested_by == actor:
            raise NotAllowed(f"{actor} asked for this model and cannot also {act} it; another operator must")
        return verdict or {"event_id": None}

    async def _crown(
        self, conn: asyncpg.Connection, target: dict[str, Any], champion: dict[str, Any] | None,
        rows: list[dict[str, Any]], actor: str, reason: str, action: str, event_id: str, evidence: dict[str, Any],
    ) -> list[tuple[str, m.Message]]:
        """Make `target` the champion of its kind; the champion it replaces retires. Returns the queued messages.
        Its files are verified against their registered digests first: a tampered model is never crowned."""
        if problem := await _files_problem(target):
            raise Unusable(f"{target['version']} cannot become champion: {problem}; nothing changed")
        now = await self.event_now(conn)
        previous = champion["version"] if champion else None
        queued = []
        if champion is not None:
            await store.set_status(conn, previous, "retired")
        if target["status"] == "challenger":
            await self._record(conn, store.HistoryEntry(
                f"{event_id}:challenger", "challenger_cleared", target["version"], actor,
                f"{target['version']} became champion", now, {"kind": target["kind"]},
            ))
        await store.set_status(conn, target["version"], "champion")
        await self._record(conn, store.HistoryEntry(
            event_id, action, target["version"], actor, reason, now,
            {"kind": target["kind"], "previous_version": previous, "prior_status": target["status"], **evidence},
        ))
        if action == "rolled_back":
            message: m.Message = m.ModelRolledBack(
                message_id=event_id, event_time=now, correlation_id=event_id, version=target["version"],
                from_version=previous, actor=actor, reason=reason,
            )
        else:
            message = m.ModelPromoted(
                message_id=event_id, event_time=now, correlation_id=event_id, version=target["version"],
                previous_version=previous, actor=actor, reason=reason,
            )
        queued.append(await self._queue(conn, self._lifecycle_topic, message))
        if target["status"] == "challenger":
            queued.append(await self._queue(conn, self._lifecycle_topic, m.ChallengerChanged(
                message_id=f"{event_id}:challenger", event_time=now, correlation_id=event_id, version=None,
                actor=actor, reason=f"{target['version']} became champion",
            )))
        return queued

    async def _step_down_challenger(
        self, conn: asyncpg.Connection, challenger: dict[str, Any], actor: str, reason: str, now: datetime, event_id: str,
    ) -> None:
        """The challenger returns to the status it had before it was made challenger."""
        chosen = await store.last_entry(conn, challenger["version"], "challenger_set")
        prior = chosen["evidence"].get("prior_status", "candidate") if chosen else "candidate"
        await store.set_status(conn, challenger["version"], prior)
        await self._record(conn, store.HistoryEntry(
            event_id, "challenger_cleared", challenger["version"], actor, reason, now,
            {"kind": challenger["kind"], "returned_to": prior},
        ))

    async def _record(self, conn: asyncpg.Connection, entry: store.HistoryEntry, *, check: bool = True) -> None:
        """History entry and, for acts, the matching row of the system validation log."""
        await registry.record(conn, action=entry.action, version=entry.version, actor=entry.actor, reason=entry.reason,
                              evidence=entry.evidence, event_id=entry.event_id, event_time=entry.event_time)
        if check:
            await store.log_check(conn, entry.event_id, entry.action, True,
                                  {"version": entry.version, "reason": entry.reason, **entry.evidence}, entry.actor)

    async def _queue(self, conn: asyncpg.Connection, topic: str, message: m.Message) -> tuple[str, m.Message]:
        await store.enqueue(conn, topic, message)
        return topic, message

    async def _state(self, conn: asyncpg.Connection, kind: str, changed: bool, event_id: str | None, detail: str) -> Outcome:
        champion = await registry.champion(conn, kind)
        challenger = await store.challenger(conn, kind)
        return Outcome(kind, champion["version"] if champion else None, challenger["version"] if challenger else None,
                       changed, event_id, detail)

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
