"""The gatekeeper's acts as pure functions (services/gatekeeper/core.py), applied to a fake unit of work that
keeps the registry, the history, the validation log and the outbox in memory: no database, no broker."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from services.gatekeeper import core, gates
from shared import messages as m
from shared.model_status import TRANSITIONS, ModelStatus
from shared.paths import project_root
from shared.settings import ThresholdSettings

S = ModelStatus
T0 = datetime(2015, 3, 10, 12, tzinfo=UTC)
KIND = "forecast"


class FakeUnitOfWork:
    """The registry rows of one kind, the history, the validation log and the outbox, in memory; applies a
    Change as the shell's unit of work does, and holds the registry's one-champion-per-kind rule."""

    def __init__(self, **statuses: str):
        self.rows = {v: {"version": v, "kind": KIND, "status": s} for v, s in statuses.items()}
        self.history: list[tuple[str, str | None, str]] = []
        self.evidence: dict[str, dict] = {}
        self.log: list[tuple[str, str, bool]] = []
        self.outbox: list[m.Message] = []

    def state(self) -> core.KindState:
        return core.KindState(KIND, tuple(dict(r) for r in self.rows.values()), T0)

    def apply(self, change: core.Change) -> core.Change:
        for version, status in change.statuses:
            self.rows[version]["status"] = status
        assert sum(r["status"] == S.CHAMPION for r in self.rows.values()) <= 1
        for logged in change.history:
            entry = logged.entry
            self.history.append((entry.action, entry.version, entry.actor))
            self.evidence[entry.event_id] = {**entry.evidence, "reason": entry.reason}
            self.log += [(entry.event_id, name, passed) for name, passed, _ in logged.checks]
        self.outbox += [message for _, message in change.messages]
        return change

    def status(self, version: str) -> str:
        return self.rows[version]["status"]


def verdict_entry(decision: str, *, failed: tuple[str, ...] = (), requested_by: str | None = None) -> dict:
    checks = [{"name": name, "passed": False} for name in failed] + [{"name": "backtest.brier", "passed": True}]
    return {"event_id": f"verdict-{decision}", "reason": f"{decision} because", "evidence": {
        "decision": decision, "checks": checks, "requested_by": requested_by}}


def promote(work: FakeUnitOfWork, version: str, expected: str | None, *, verdict=None, was_champion=False,
            force=False) -> core.Change:
    standing = core.gate_standing(work.rows[version], verdict, was_champion)
    return work.apply(core.promote(work.state(), version, expected, "alice", "better backtest", force=force,
                                   standing=standing, event_id="e1"))


# ---- the status type ------------------------------------------------------------------------------------------


def test_the_sql_check_on_model_status_lists_exactly_the_status_type():
    schema = (project_root() / "shared" / "migrations" / "0007_model_status.sql").read_text()
    listed = re.search(r"status\s+text\s+NOT NULL DEFAULT 'candidate'\s+CHECK \(status IN \(([^)]*)\)\)", schema)
    assert {name.strip().strip("'") for name in listed.group(1).split(",")} == {s.value for s in ModelStatus}
    assert set(TRANSITIONS) == set(ModelStatus)


# ---- what the caller is told ----------------------------------------------------------------------------------


def test_the_champion_and_challenger_told_are_those_the_change_leaves():
    work = FakeUnitOfWork(v1=S.CHAMPION, v2=S.CHALLENGER, v3=S.CANDIDATE)
    before = work.state()
    change = promote(work, "v2", "v1", verdict=verdict_entry("PROMOTE"))
    assert core.roles_after(before, change) == ("v2", None) == (
        next(v for v in work.rows if work.status(v) == S.CHAMPION), None)
    assert core.roles_after(before, core.unchanged(before, "nothing")) == ("v1", "v2")


# ---- promote --------------------------------------------------------------------------------------------------


def test_a_candidate_that_passed_the_gates_replaces_the_champion_which_retires():
    work = FakeUnitOfWork(v1=S.CHAMPION, v2=S.CANDIDATE)
    change = promote(work, "v2", "v1", verdict=verdict_entry("PROMOTE"))
    assert (work.status("v1"), work.status("v2")) == (S.RETIRED, S.CHAMPION)
    assert work.history == [("promoted", "v2", "alice")] and change.crowns == "v2"
    assert work.evidence["e1"]["previous_version"] == "v1" and work.log == [("e1", "promoted", True)]
    [message] = work.outbox
    assert (type(message).__name__, message.version, message.previous_version) == ("ModelPromoted", "v2", "v1")


def test_a_candidate_without_a_passing_verdict_is_refused_naming_the_gate_unless_forced():
    work = FakeUnitOfWork(v1=S.CANDIDATE, v2=S.REJECTED)
    with pytest.raises(core.GateRefused, match="has no gate verdict"):
        promote(work, "v1", None)
    with pytest.raises(core.GateRefused, match="failed the gates .*REJECT"):
        promote(work, "v2", None, verdict=verdict_entry("REJECT", failed=("backtest.f1",)))
    assert work.history == [] and work.outbox == []

    change = promote(work, "v2", None, verdict=verdict_entry("REJECT", failed=("backtest.f1",)), force=True)
    assert work.status("v2") == S.CHAMPION and "forced past the gates" in change.detail
    assert work.history == [("gate_overridden", "v2", "alice"), ("promoted", "v2", "alice")]
    assert work.evidence["e1:forced"]["gates"] == ["backtest.f1"] and work.evidence["e1"]["forced"] is True


def test_a_former_champion_comes_back_without_a_new_verdict():
    work = FakeUnitOfWork(v1=S.RETIRED, v2=S.CHAMPION)
    promote(work, "v1", "v2")
    assert work.status("v1") == S.CHAMPION and work.history == [("promoted", "v1", "alice")]


def test_a_stale_expectation_a_held_candidate_and_the_champion_itself_change_nothing():
    work = FakeUnitOfWork(v1=S.CHAMPION, v2=S.CANDIDATE, v3=S.HELD, v4=S.ARCHIVED)
    with pytest.raises(core.Conflict, match="you expected to replace no champion, but the champion of forecast is v1"):
        promote(work, "v2", None, verdict=verdict_entry("PROMOTE"))
    with pytest.raises(core.Conflict, match="held for approval"):
        promote(work, "v3", "v1", force=True)
    with pytest.raises(core.Conflict, match="only candidate, challenger, retired, rejected"):
        promote(work, "v4", "v1", force=True)
    assert not promote(work, "v1", "v1").changed
    assert work.history == [] and work.status("v1") == S.CHAMPION


def test_a_promoted_challenger_stops_shadowing():
    work = FakeUnitOfWork(v1=S.CHAMPION, v2=S.CHALLENGER)
    promote(work, "v2", "v1", was_champion=True)
    assert work.history == [("challenger_cleared", "v2", "alice"), ("promoted", "v2", "alice")]
    assert [(type(x).__name__, x.version) for x in work.outbox] == [
        ("ModelPromoted", "v2"), ("ChallengerChanged", None)]


# ---- rollback -------------------------------------------------------------------------------------------------


def test_a_rollback_returns_to_a_former_champion_and_refuses_anything_else():
    work = FakeUnitOfWork(v1=S.RETIRED, v2=S.CHAMPION, v3=S.CANDIDATE)
    with pytest.raises(core.Conflict, match="roll back from v3"):
        core.rollback(work.state(), "v1", "v3", "alice", "wrong", event_id="r1", evidence={})
    with pytest.raises(core.Conflict, match="a rollback returns to a former champion"):
        core.rollback(work.state(), "v3", "v2", "alice", "wrong", event_id="r1", evidence={})
    change = work.apply(core.rollback(work.state(), "v1", "v2", "alice", "forecasts look wrong", event_id="r1",
                                      evidence={"why": "test"}))
    assert change.detail == "rolled back from v2 to v1"
    assert (work.status("v1"), work.status("v2")) == (S.CHAMPION, S.RETIRED)
    assert work.history == [("rolled_back", "v1", "alice")] and work.evidence["r1"]["why"] == "test"
    assert [(type(x).__name__, x.from_version) for x in work.outbox] == [("ModelRolledBack", "v2")]
    assert not core.rollback(work.state(), "v1", "v2", "alice", "retry", event_id="r2", evidence={}).changed


# ---- challenger -----------------------------------------------------------------------------------------------


def test_a_challenger_is_set_replaced_and_cleared_each_returning_to_its_status_before():
    work = FakeUnitOfWork(v1=S.CHAMPION, v2=S.CANDIDATE, v3=S.HELD)
    with pytest.raises(core.Conflict, match="a challenger must be"):
        core.set_challenger(work.state(), "v1", "alice", "?", event_id="c0", previous_prior_status=None)
    work.apply(core.set_challenger(work.state(), "v2", "alice", "shadow", event_id="c1", previous_prior_status=None))
    assert work.status("v2") == S.CHALLENGER and work.evidence["c1"]["prior_status"] == S.CANDIDATE
    work.apply(core.set_challenger(work.state(), "v3", "bob", "another", event_id="c2",
                                   previous_prior_status="candidate"))
    assert (work.status("v2"), work.status("v3")) == (S.CANDIDATE, S.CHALLENGER)
    work.apply(core.set_challenger(work.state(), None, "bob", "enough", event_id="c3", previous_prior_status="held"))
    assert work.status("v3") == S.HELD
    assert work.history == [("challenger_set", "v2", "alice"), ("challenger_cleared", "v2", "bob"),
                            ("challenger_set", "v3", "bob"), ("challenger_cleared", "v3", "bob")]
    assert [x.version for x in work.outbox] == ["v2", "v3", None]


# ---- approve and reject ---------------------------------------------------------------------------------------


def test_a_held_candidate_is_approved_by_another_operator_or_rejected():
    work = FakeUnitOfWork(v1=S.HELD, v2=S.HELD)
    held = verdict_entry("HOLD", requested_by="alice")
    with pytest.raises(core.NotAllowed, match="alice asked for this model"):
        core.approve(work.state(), "v1", "alice", "mine", verdict=held, already_approved=False, event_id="a1")
    change = work.apply(core.approve(work.state(), "v1", "bob", "checked", verdict=held, already_approved=False,
                                     event_id="a1"))
    assert change.detail == "v1 approved and promoted" and work.status("v1") == S.CHAMPION
    assert work.evidence["a1"]["approved_by"] == "bob"
    work.apply(core.reject(work.state(), "v2", "bob", "not convincing", verdict=held, event_id="j1"))
    assert work.status("v2") == S.REJECTED
    assert work.history == [("approved", "v1", "bob"), ("promoted", "v1", "bob"), ("rejected", "v2", "bob")]
    with pytest.raises(core.Conflict, match="only a held candidate"):
        core.approve(work.state(), "v2", "bob", "oops", verdict=held, already_approved=False, event_id="a2")
    assert not core.approve(work.state(), "v1", "bob", "again", verdict=held, already_approved=True,
                            event_id="a3").changed


# ---- judge ----------------------------------------------------------------------------------------------------


def evidence(f1: float) -> gates.CandidateEvidence:
    return gates.CandidateEvidence({"no_nan": True}, {"C": 0.7}, {"f1": f1, "precision": 0.5, "brier": 0.1}, None)


def trained(version: str) -> m.ModelTrained:
    return m.ModelTrained(message_id=f"t-{version}", event_time=T0, version=version, artifacts={}, evidence={})


def test_the_gates_promote_a_passing_candidate_and_reject_a_failing_one_with_every_check_logged():
    work = FakeUnitOfWork(good=S.CANDIDATE, bad=S.CANDIDATE)
    thresholds = ThresholdSettings()
    verdict, change = core.judge(work.state(), trained("good"), evidence(0.6), thresholds=thresholds,
                                 policy="auto", requested_by=None)
    work.apply(change)
    assert verdict.decision == "PROMOTE" and work.status("good") == S.CHAMPION and change.crowns == "good"
    verdict, change = core.judge(work.state(), trained("bad"), evidence(0.1), thresholds=thresholds, policy="auto",
                                 requested_by="alice")
    work.apply(change)
    assert verdict.decision == "REJECT" and work.status("bad") == S.REJECTED and change.crowns is None
    assert work.history == [("gate_verdict", "good", "gatekeeper"), ("promoted", "good", "gatekeeper"),
                            ("gate_verdict", "bad", "gatekeeper")]
    logged = {name: passed for run, name, passed in work.log if run == m.stable_id("gate-verdict", "bad")}
    assert logged["gate.backtest.f1"] is False and logged["gate.verdict"] is False
    assert core.judge(work.state(), trained("bad"), evidence(0.6), thresholds=thresholds, policy="auto",
                      requested_by=None) is None  # redelivered: no longer a candidate


def test_under_the_approval_policy_a_passing_candidate_is_held():
    work = FakeUnitOfWork(v1=S.CANDIDATE)
    verdict, change = core.judge(work.state(), trained("v1"), evidence(0.6), thresholds=ThresholdSettings(),
                                 policy="approval", requested_by="alice")
    work.apply(change)
    assert verdict.decision == "HOLD" and work.status("v1") == S.HELD and work.outbox == []
