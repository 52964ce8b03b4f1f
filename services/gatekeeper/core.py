"""The gatekeeper's acts without I/O: each takes the state of one model kind (its versions, locked by the
caller) and the facts the act needs from the history, and returns a `Change`: the new statuses, the history
entries (with their validation-log rows) and the lifecycle messages. The shell (`lifecycle.Gatekeeper`) reads
the state, applies the change in one transaction through its unit of work, and publishes after the commit.

An act that must not happen raises a `GatekeeperError` naming why; nothing is changed then.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.gatekeeper import gates
from services.gatekeeper.store import HistoryEntry
from shared import messages as m
from shared.model_status import (
    CHALLENGER_SOURCES,
    JUDGED,
    PROMOTABLE,
    ROLLBACK_TARGETS,
    ModelStatus,
    allowed,
    ordered,
)
from shared.settings import ThresholdSettings

S = ModelStatus
SYSTEM = "gatekeeper"
LIFECYCLE = "lifecycle"  # the topic key (shared.topics) every act announces on


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
class KindState:
    """The versions of one kind as the act finds them, and the system's event time."""

    kind: str
    rows: tuple[dict[str, Any], ...]
    now: datetime

    def holder(self, status: ModelStatus) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["status"] == status), None)

    def version_of(self, status: ModelStatus) -> str | None:
        row = self.holder(status)
        return row["version"] if row else None

    def row(self, version: str) -> dict[str, Any]:
        found = next((r for r in self.rows if r["version"] == version), None)
        if found is None:
            raise NotFound(f"{version} is not a {self.kind} model in the registry")
        return found


@dataclass(frozen=True)
class Logged:
    """A history entry and its validation-log rows (name, passed, detail), written in this order."""

    entry: HistoryEntry
    checks: tuple[tuple[str, bool, Any], ...] = ()


@dataclass(frozen=True)
class Change:
    """What an act does: statuses to set (in order), history to append, messages to queue, the version it makes
    champion (whose files the shell verifies first: a tampered model is never crowned); and what the caller is
    told."""

    kind: str
    changed: bool
    detail: str
    event_id: str | None = None
    statuses: tuple[tuple[str, ModelStatus], ...] = ()
    history: tuple[Logged, ...] = ()
    messages: tuple[tuple[str, m.Message], ...] = ()
    crowns: str | None = None

    def then(self, other: Change, **update: Any) -> Change:
        """This change followed by `other` (same kind), with `update` for the caller's view."""
        return replace(self, statuses=self.statuses + other.statuses, history=self.history + other.history,
                       messages=self.messages + other.messages, crowns=other.crowns or self.crowns, **update)


def roles_after(state: KindState, change: Change) -> tuple[str | None, str | None]:
    """The kind's champion and challenger once `change` is written (the state's rows are locked: nothing else
    changes them meanwhile)."""
    statuses = {row["version"]: row["status"] for row in state.rows} | dict(change.statuses)

    def holder(status: ModelStatus) -> str | None:
        return next((version for version, held in statuses.items() if held == status), None)

    return holder(ModelStatus.CHAMPION), holder(ModelStatus.CHALLENGER)


def unchanged(state: KindState, detail: str) -> Change:
    return Change(state.kind, False, detail)


def act_entry(entry: HistoryEntry) -> Logged:
    """An act's history entry with its row in the validation log, as the operator's checklist reads it."""
    return Logged(entry, ((entry.action, True, {"version": entry.version, "reason": entry.reason, **entry.evidence}),))


def _status(version: str, before: str, after: ModelStatus) -> tuple[str, ModelStatus]:
    if not allowed(before, after):  # a bug in an act, never an operator's mistake
        raise AssertionError(f"{version}: {before} -> {after} is not an allowed transition")
    return version, after


# ---- the acts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateStanding:
    """Why a version has not passed the gates: no verdict, or a failed or held one (the gates it did not pass)."""

    why: str
    verdict_event: str | None
    gates: list[str] = field(default_factory=list)


def gate_standing(target: dict[str, Any], verdict: dict[str, Any] | None, was_champion: bool) -> GateStanding | None:
    """Why `target` has not passed the gates, or None: its last verdict was PROMOTE, or it was champion once."""
    if target["status"] == S.RETIRED or was_champion:
        return None
    if verdict is None:
        return GateStanding("has no gate verdict: the gates have not judged it (the gatekeeper judges the "
                            "ModelTrained its trainer announces)", None)
    evidence = verdict["evidence"] or {}
    if evidence.get("decision") == "PROMOTE":
        return None
    named = [c["name"] for c in evidence.get("checks", []) if c.get("passed") is not True]
    judged = "failed" if evidence.get("decision") == "REJECT" else "was held by"
    return GateStanding(f"{judged} the gates ({evidence.get('decision')}): {verdict['reason']}",
                        verdict["event_id"], named)


def crown(
    state: KindState, target: dict[str, Any], actor: str, reason: str, action: str, event_id: str,
    evidence: dict[str, Any],
) -> Change:
    """`target` becomes the champion of its kind; the champion it replaces retires."""
    champion = state.holder(S.CHAMPION)
    previous = champion["version"] if champion else None
    statuses = [_status(previous, S.CHAMPION, S.RETIRED)] if champion else []
    history: list[Logged] = []
    messages: list[tuple[str, m.Message]] = []
    was_challenger = target["status"] == S.CHALLENGER
    if was_challenger:
        history.append(act_entry(HistoryEntry(
            f"{event_id}:challenger", "challenger_cleared", target["version"], actor,
            f"{target['version']} became champion", state.now, {"kind": state.kind})))
    statuses.append(_status(target["version"], target["status"], S.CHAMPION))
    history.append(act_entry(HistoryEntry(
        event_id, action, target["version"], actor, reason, state.now,
        {"kind": state.kind, "previous_version": previous, "prior_status": target["status"], **evidence})))
    if action == "rolled_back":
        messages.append((LIFECYCLE, m.ModelRolledBack(
            message_id=event_id, event_time=state.now, correlation_id=event_id, version=target["version"],
            from_version=previous, actor=actor, reason=reason)))
    else:
        messages.append((LIFECYCLE, m.ModelPromoted(
            message_id=event_id, event_time=state.now, correlation_id=event_id, version=target["version"],
            previous_version=previous, actor=actor, reason=reason)))
    if was_challenger:
        messages.append((LIFECYCLE, m.ChallengerChanged(
            message_id=f"{event_id}:challenger", event_time=state.now, correlation_id=event_id, version=None,
            actor=actor, reason=f"{target['version']} became champion")))
    return Change(state.kind, True, f"{target['version']} is champion", event_id, tuple(statuses), tuple(history),
                  tuple(messages), crowns=target["version"])


def promote(
    state: KindState, version: str, expected_current: str | None, actor: str, reason: str, *, force: bool,
    standing: GateStanding | None, event_id: str,
) -> Change:
    target = state.row(version)
    current = state.version_of(S.CHAMPION)
    if current == version:
        return unchanged(state, f"{version} is already champion")
    if expected_current != current:
        raise Conflict(f"you expected to replace {expected_current or 'no champion'}, but the champion of "
                       f"{state.kind} is {current or 'nobody'}; nothing changed")
    if target["status"] == S.HELD:
        raise Conflict(f"{version} is held for approval: another operator approves it (`flare approve`)")
    if target["status"] not in PROMOTABLE:
        raise Conflict(f"{version} is {target['status']}; only {', '.join(ordered(PROMOTABLE))} versions can be "
                       "promoted")
    if standing is not None and not force:
        raise GateRefused(
            f"{version} {standing.why}; it is not promoted. Promoting it past the gates is an override: "
            f"`flare promote {version} --force --reason TEXT` (REST: \"force\": true), kept in the history")
    if standing is None:
        return crown(state, target, actor, reason, "promoted", event_id, {})
    evidence = {"forced": True, "overridden": standing.why, "verdict_event": standing.verdict_event}
    override = Change(state.kind, True, "", history=(act_entry(HistoryEntry(
        f"{event_id}:forced", "gate_overridden", version, actor, reason, state.now,
        {"kind": state.kind, "status": target["status"], "gates": standing.gates, **evidence})),))
    crowned = crown(state, target, actor, reason, "promoted", event_id, evidence)
    return override.then(crowned, event_id=event_id,
                         detail=f"{version} is champion (forced past the gates: {standing.why})")


def rollback(
    state: KindState, target_version: str, from_version: str | None, actor: str, reason: str, *, event_id: str,
    evidence: dict[str, Any],
) -> Change:
    """`target_version` (the caller found the predecessor if none was named) becomes champion again."""
    current = state.version_of(S.CHAMPION)
    if target_version == current:
        return unchanged(state, f"{target_version} is already champion")
    if from_version is not None and from_version != current:
        raise Conflict(f"you asked to roll back from {from_version}, but the champion of {state.kind} is "
                       f"{current or 'nobody'}; nothing changed")
    if current is None:
        raise Conflict(f"{state.kind} has no champion to roll back from; promote a version instead")
    target = state.row(target_version)
    if target["status"] not in ROLLBACK_TARGETS:
        raise Conflict(f"{target_version} is {target['status']}; a rollback returns to a former champion "
                       f"({' or '.join(ordered(ROLLBACK_TARGETS))})")
    crowned = crown(state, target, actor, reason, "rolled_back", event_id, evidence)
    return replace(crowned, detail=f"rolled back from {current} to {target_version}")


def set_challenger(
    state: KindState, version: str | None, actor: str, reason: str, *, event_id: str,
    previous_prior_status: str | None,
) -> Change:
    """`version` runs in shadow beside the champion (None: nobody does); the challenger it replaces returns to
    the status it had before (`previous_prior_status`, from its challenger_set entry)."""
    previous = state.holder(S.CHALLENGER)
    if (previous["version"] if previous else None) == version:
        return unchanged(state, f"challenger is already {version or 'none'}")
    target = state.row(version) if version is not None else None
    if target is not None and target["status"] not in CHALLENGER_SOURCES:
        raise Conflict(f"{version} is {target['status']}; a challenger must be "
                       f"{', '.join(ordered(CHALLENGER_SOURCES))}")
    statuses: list[tuple[str, ModelStatus]] = []
    history: list[Logged] = []
    if previous is not None:
        prior = ModelStatus(previous_prior_status or S.CANDIDATE)
        statuses.append(_status(previous["version"], S.CHALLENGER, prior))
        history.append(act_entry(HistoryEntry(
            f"{event_id}:previous" if version else event_id, "challenger_cleared", previous["version"], actor, reason,
            state.now, {"kind": state.kind, "returned_to": prior})))
    if target is not None:
        statuses.append(_status(version, target["status"], S.CHALLENGER))
        history.append(act_entry(HistoryEntry(
            event_id, "challenger_set", version, actor, reason, state.now,
            {"kind": state.kind, "prior_status": target["status"],
             "replaced": previous["version"] if previous else None})))
    message = m.ChallengerChanged(message_id=event_id, event_time=state.now, correlation_id=event_id,
                                  version=version, actor=actor, reason=reason)
    return Change(state.kind, True, f"challenger is {version or 'none'}", event_id, tuple(statuses),
                  tuple(history), messages=((LIFECYCLE, message),))


def _held_verdict(target: dict[str, Any], verdict: dict[str, Any] | None, actor: str, act: str) -> dict[str, Any]:
    if target["status"] != S.HELD:
        raise Conflict(f"{target['version']} is {target['status']}; only a held candidate can be approved or rejected")
    requested_by = verdict["evidence"].get("requested_by") if verdict else None
    if requested_by is not None and requested_by == actor:
        raise NotAllowed(f"{actor} asked for this model and cannot also {act} it; another operator must")
    return verdict or {"event_id": None}


def approve(
    state: KindState, version: str, actor: str, reason: str, *, verdict: dict[str, Any] | None,
    already_approved: bool, event_id: str,
) -> Change:
    """A held candidate is promoted; its requester may not approve it (four eyes)."""
    target = state.row(version)
    if target["status"] == S.CHAMPION and already_approved:
        return unchanged(state, f"{version} was already approved")
    held = _held_verdict(target, verdict, actor, "approve")
    approval = Change(state.kind, True, "", history=(act_entry(HistoryEntry(
        f"{event_id}:approved", "approved", version, actor, reason, state.now,
        {"kind": state.kind, "verdict_event": held["event_id"]})),))
    crowned = crown(state, target, actor, reason, "promoted", event_id, {"approved_by": actor})
    return approval.then(crowned, event_id=event_id, detail=f"{version} approved and promoted")


def reject(state: KindState, version: str, actor: str, reason: str, *, verdict: dict[str, Any] | None,
           event_id: str) -> Change:
    target = state.row(version)
    if target["status"] == S.REJECTED:
        return unchanged(state, f"{version} was already rejected")
    held = _held_verdict(target, verdict, actor, "reject")
    return Change(state.kind, True, f"{version} rejected", event_id,
                  (_status(version, S.HELD, S.REJECTED),),
                  (act_entry(HistoryEntry(event_id, "rejected", version, actor, reason, state.now,
                                          {"kind": state.kind, "verdict_event": held["event_id"]})),))


def judge(
    state: KindState, trained: m.ModelTrained, evidence: gates.CandidateEvidence, *, thresholds: ThresholdSettings,
    policy: str, requested_by: str | None,
) -> tuple[gates.Verdict, Change] | None:
    """The gates' verdict on a freshly trained candidate and what follows from it: promoted (PROMOTE), held for
    an operator (HOLD) or rejected (REJECT). None if it is no longer a candidate (a redelivered message)."""
    row = state.row(trained.version)
    if row["status"] != JUDGED:
        return None
    champion = state.version_of(S.CHAMPION)
    verdict = gates.judge(evidence, champion, thresholds, policy)  # type: ignore[arg-type]
    event_id = m.stable_id("gate-verdict", trained.version)
    checks = tuple((f"gate.{c.name}", c.passed is True, {"observed": c.observed, "required": c.required})
                   for c in verdict.checks)
    checks += (("gate.verdict", verdict.decision != "REJECT", f"{verdict.decision}: {verdict.reason}"),)
    judged = Change(state.kind, True, verdict.reason, event_id, history=(Logged(HistoryEntry(
        event_id, "gate_verdict", trained.version, SYSTEM, verdict.reason, state.now,
        {"kind": state.kind, "request_id": trained.request_id, "requested_by": requested_by, "champion": champion,
         **verdict.evidence()}), checks),))
    if verdict.decision == "PROMOTE":
        follow = crown(state, row, SYSTEM, verdict.reason, "promoted", m.stable_id("gate-promotion", trained.version),
                       {"verdict_event": event_id})
    else:
        after = S.HELD if verdict.decision == "HOLD" else S.REJECTED
        follow = Change(state.kind, True, "", statuses=(_status(trained.version, row["status"], after),))
    return verdict, judged.then(follow)
