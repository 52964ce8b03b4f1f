"""The gatekeeper's decisions as plain functions: who may call, when to retrain, what the gates say, when to
roll back."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import SecretStr

from services.gatekeeper import auth, gates, monitoring, retraining
from shared import messages as m
from shared.settings import Settings, ThresholdSettings

T0 = datetime(2015, 3, 10, 12, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


# ---- authorization ------------------------------------------------------------------------------------------


@pytest.fixture
def tokens() -> list[tuple[str, auth.Role]]:
    settings = Settings.model_construct(
        operator_tokens=[SecretStr("alice:op-secret"), SecretStr("anonymous-op-token")],
        viewer_tokens=[SecretStr("carol:view-secret")],
    )
    return auth.configured_tokens(settings)


def test_an_operator_token_may_write_and_names_its_holder(tokens):
    caller = auth.authorize(auth.identify("alice:op-secret", tokens), auth.Role.OPERATOR)
    assert caller == auth.Caller("alice", auth.Role.OPERATOR)


def test_a_token_without_a_name_is_recorded_by_fingerprint_not_by_its_value(tokens):
    caller = auth.identify("anonymous-op-token", tokens)
    assert caller.name.startswith("operator-") and "anonymous" not in caller.name


def test_a_viewer_may_read_but_not_write(tokens):
    caller = auth.identify("carol:view-secret", tokens)
    assert auth.authorize(caller, auth.Role.VIEWER) == caller
    with pytest.raises(auth.Forbidden, match="viewer"):
        auth.authorize(caller, auth.Role.OPERATOR)


@pytest.mark.parametrize("token", [None, "", "alice:wrong", "carol"])
def test_missing_or_unknown_tokens_are_not_authenticated(tokens, token):
    with pytest.raises(auth.NotAuthenticated):
        auth.identify(token, tokens)


# ---- retraining: folding and cooldown -----------------------------------------------------------------------


def drift(i: int, at: datetime, correlation_id: str | None = None) -> m.MetricDrift:
    return m.MetricDrift(message_id=f"drift-{i}", event_time=at, model_version="v1", metric="brier", value=0.2,
                         baseline=0.1, threshold=0.11, window="7d", correlation_id=correlation_id)


def request(request_id: str, target: str, status: str, at: datetime, created: datetime | None = None):
    return retraining.RequestState(request_id, target, status, at, created or datetime.now(timezone.utc))


def decide(trigger, earlier, cooldown_hours=24.0, timeout_hours=6.0):
    return retraining.decide(trigger, earlier, cooldown=timedelta(hours=cooldown_hours),
                             timeout=timedelta(hours=timeout_hours), wall_now=datetime.now(timezone.utc))


def test_a_first_drift_alert_opens_a_request_for_all_classes():
    trigger = retraining.drift_trigger(drift(1, T0))
    decision = decide(trigger, [])
    assert decision.action == "request"
    message = retraining.retrain_message(trigger, decision.request_id)
    assert message.target_class == "all" and message.train_until == T0
    assert "brier" in message.reason and message.evidence["alert_id"] == "drift-1"


def test_a_retrain_request_carries_the_correlation_id_of_the_alert_behind_it():
    trigger = retraining.drift_trigger(drift(1, T0, correlation_id="scoring-run-7"))
    message = retraining.retrain_message(trigger, decide(trigger, []).request_id)
    assert message.correlation_id == "scoring-run-7"

    operator = retraining.operator_trigger("alice", "all", "new data", T0, "key-1")
    request_id = decide(operator, []).request_id
    assert retraining.retrain_message(operator, request_id).correlation_id == request_id


def test_the_same_alert_redelivered_maps_to_the_same_request_id():
    first = decide(retraining.drift_trigger(drift(1, T0)), [])
    redelivered = decide(retraining.drift_trigger(drift(1, T0)), [])
    assert first.request_id == redelivered.request_id


def test_an_alert_while_a_request_is_in_flight_is_folded_into_it():
    in_flight = request("r1", "all", "requested", T0)
    decision = decide(retraining.drift_trigger(drift(2, T0 + 30 * 24 * HOUR)), [in_flight])
    assert (decision.action, decision.request_id) == ("fold", "r1")
    assert "in flight" in decision.why


def test_a_request_in_flight_for_one_class_folds_an_all_class_request_but_not_another_class():
    in_flight_c = request("r-c", "C", "requested", T0)
    assert decide(retraining.operator_trigger("alice", "all", "x", T0, "k1"), [in_flight_c]).action == "fold"
    assert decide(retraining.operator_trigger("alice", "M", "x", T0, "k2"), [in_flight_c]).action == "request"


def test_within_the_cooldown_after_a_finished_training_alerts_are_folded_and_after_it_they_open_a_request():
    done = request("r1", "all", "trained", T0)
    assert decide(retraining.drift_trigger(drift(2, T0 + 23 * HOUR)), [done]).action == "fold"
    assert decide(retraining.drift_trigger(drift(3, T0 + 25 * HOUR)), [done]).action == "request"


def test_an_operator_is_not_held_back_by_the_cooldown_but_is_by_a_request_in_flight():
    done = request("r1", "all", "trained", T0)
    assert decide(retraining.operator_trigger("alice", "all", "new data", T0 + HOUR, "k"), [done]).action == "request"
    flying = request("r2", "all", "requested", T0)
    assert decide(retraining.operator_trigger("alice", "all", "new data", T0 + HOUR, "k"), [flying]).action == "fold"


def test_a_request_unanswered_past_the_timeout_no_longer_blocks():
    stale = request("r1", "all", "requested", T0 - 48 * HOUR, created=datetime.now(timezone.utc) - 7 * HOUR)
    assert decide(retraining.drift_trigger(drift(2, T0)), [stale], timeout_hours=6).action == "request"


def test_a_storm_of_alerts_yields_one_request():
    requests: list[retraining.RequestState] = []
    opened = 0
    for i in range(100):
        trigger = retraining.drift_trigger(drift(i, T0 + i * timedelta(minutes=1)))
        decision = decide(trigger, requests)
        if decision.action == "request":
            opened += 1
            requests.append(request(decision.request_id, "all", "requested", trigger.event_time))
    assert opened == 1


# ---- retraining: the monthly schedule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "previous, current, ticks",
    [
        (utc(2015, 3, 1, 1, 59), utc(2015, 3, 1, 2, 0), [utc(2015, 3, 1, 2)]),  # crossing exactly at 02:00
        (utc(2015, 3, 1, 2, 0), utc(2015, 3, 1, 2, 1), []),  # already past it
        (utc(2015, 2, 27), utc(2015, 2, 28), []),  # no first of month crossed
        (utc(2014, 12, 31, 23), utc(2015, 1, 1, 3), [utc(2015, 1, 1, 2)]),  # over the new year
        (utc(2015, 1, 15), utc(2015, 4, 20), [utc(2015, 2, 1, 2), utc(2015, 3, 1, 2), utc(2015, 4, 1, 2)]),  # a jump
        (utc(2015, 5, 20), utc(2015, 1, 15), []),  # the clock moves back (a replay starts)
        (None, utc(2015, 3, 1, 2), []),  # the first message sets the clock, crosses nothing
        (utc(2015, 3, 1, 1), utc(2015, 3, 1, 1, 30), []),  # first of month but before 02:00
    ],
)
def test_a_monthly_tick_is_due_when_event_time_crosses_the_first_at_0200(previous, current, ticks):
    assert retraining.monthly_ticks(previous, current) == ticks


def test_a_replay_in_big_steps_crosses_the_same_ticks_as_a_live_run_in_small_ones():
    start = utc(2014, 11, 20)
    live, replay = [], []
    for hour in range(1, 24 * 120):
        live += retraining.monthly_ticks(start + timedelta(hours=hour - 1), start + timedelta(hours=hour))
    for step in range(1, 6):
        replay += retraining.monthly_ticks(start + timedelta(days=24 * (step - 1)), start + timedelta(days=24 * step))
    assert live == replay == [utc(2014, 12, 1, 2), utc(2015, 1, 1, 2), utc(2015, 2, 1, 2), utc(2015, 3, 1, 2)]


def test_the_schedule_waits_for_six_months_of_history():
    six_months = timedelta(days=182)
    assert not retraining.enough_history(utc(2015, 1, 1), utc(2015, 6, 1, 2), six_months)
    assert retraining.enough_history(utc(2015, 1, 1), utc(2015, 7, 2, 2), six_months)


def test_a_monthly_tick_is_one_trigger_however_often_it_is_replayed():
    first = retraining.schedule_trigger(utc(2015, 8, 1, 2), utc(2015, 1, 1))
    again = retraining.schedule_trigger(utc(2015, 8, 1, 2), utc(2014, 1, 1))
    assert first.trigger_id == again.trigger_id and first.train_until == utc(2015, 8, 1, 2)


# ---- the gates ----------------------------------------------------------------------------------------------


THRESHOLDS = ThresholdSettings()


def evidence(f1=0.5, precision=0.4, brier=0.1, checks=None, c_index=0.7, comparison=None,
             flare_history_c_index=0.66) -> gates.CandidateEvidence:
    return gates.CandidateEvidence(
        validation_checks=checks if checks is not None else {"no_nan": True, "probabilities_sum_to_one": True},
        c_index={"C": c_index, "M": 0.72},
        backtest={"f1": f1, "precision": precision, "brier": brier},
        comparison=comparison,
        flare_history_c_index={"C": 0.64, "M": flare_history_c_index},
    )


def test_a_first_model_passing_every_gate_is_promoted_under_the_auto_policy():
    verdict = gates.judge(evidence(), None, THRESHOLDS, "auto")
    assert verdict.decision == "PROMOTE"
    assert {c.name for c in verdict.checks} >= {"backtest.f1", "backtest.precision", "backtest.brier",
                                                  "validation.no_nan", "validation.c_index_C", "champion.improvement",
                                                  "validation.flare_history_c_index_M"}


def test_a_candidate_whose_files_changed_after_registration_is_rejected_naming_the_file():
    tampered = dataclasses.replace(evidence(), files_problem="v2.joblib: sha256 does not match the registered one")
    verdict = gates.judge(tampered, None, THRESHOLDS, "auto")
    assert verdict.decision == "REJECT"
    assert "artifacts.digests (v2.joblib: sha256 does not match" in verdict.reason


def test_the_approval_policy_holds_a_model_that_passes_every_gate():
    verdict = gates.judge(evidence(), None, THRESHOLDS, "approval")
    assert verdict.decision == "HOLD" and "approval" in verdict.reason


@pytest.mark.parametrize(
    "candidate, failing",
    [
        (evidence(f1=0.4), "backtest.f1"),  # F1 must exceed 0.4
        (evidence(precision=0.29), "backtest.precision"),
        (evidence(brier=0.3), "backtest.brier"),  # Brier must stay under 0.3
        (evidence(brier=float("nan")), "backtest.brier"),
        (evidence(f1=None), "backtest.f1"),  # not reported is not passed
        (evidence(c_index=0.5), "validation.c_index_C"),
        # the degraded forecasts' models are judged too: a flux model's skill does not carry them
        (evidence(flare_history_c_index=0.5), "validation.flare_history_c_index_M"),
        (evidence(flare_history_c_index=None), "validation.flare_history_c_index_M"),
        (evidence(checks={"no_nan": False, "probabilities_sum_to_one": True}), "validation.no_nan"),
        (evidence(checks={}), "validation.reported"),
    ],
)
def test_a_candidate_failing_any_gate_is_rejected_and_the_verdict_names_the_gate(candidate, failing):
    verdict = gates.judge(candidate, None, THRESHOLDS, "auto")
    assert verdict.decision == "REJECT"
    assert [c.name for c in verdict.checks if c.passed is False] == [failing]
    assert failing in verdict.reason


def test_against_a_champion_the_candidate_must_improve_on_the_same_data():
    better = gates.Comparison("v1", "brier", candidate=0.09, champion=0.10, lower_is_better=True)
    worse = gates.Comparison("v1", "brier", candidate=0.11, champion=0.10, lower_is_better=True)
    assert gates.judge(evidence(comparison=better), "v1", THRESHOLDS, "auto").decision == "PROMOTE"
    rejected = gates.judge(evidence(comparison=worse), "v1", THRESHOLDS, "auto")
    assert rejected.decision == "REJECT" and "champion.improvement" in rejected.reason
    higher_is_better = gates.Comparison("v1", "tss", candidate=0.6, champion=0.5, lower_is_better=False)
    assert gates.judge(evidence(comparison=higher_is_better), "v1", THRESHOLDS, "auto").decision == "PROMOTE"


def test_a_comparison_with_a_former_champion_or_none_at_all_is_held_for_an_operator():
    stale = gates.Comparison("v0", "brier", candidate=0.09, champion=0.10, lower_is_better=True)
    held = gates.judge(evidence(comparison=stale), "v1", THRESHOLDS, "auto")
    assert held.decision == "HOLD" and "no longer champion" in held.reason
    assert gates.judge(evidence(comparison=None), "v1", THRESHOLDS, "auto").decision == "HOLD"


def test_thresholds_come_from_the_settings():
    lenient = ThresholdSettings(backtest_min_f1=0.2)
    assert gates.judge(evidence(f1=0.3), None, lenient, "auto").decision == "PROMOTE"
    assert gates.judge(evidence(f1=0.3), None, THRESHOLDS, "auto").decision == "REJECT"


# ---- the automatic rollback rule ----------------------------------------------------------------------------


PROMOTED = utc(2015, 6, 1)


def live(version: str, hours_after: float, brier: float, tss: float = 0.5, scored: int = 20, window: str = "24h"):
    return monitoring.LiveMetrics(version, window, scored, PROMOTED + timedelta(hours=hours_after),
                                  {"brier": brier, "tss": tss, "count": scored})


def reason(new, old, margin=0.05, min_scored=12, window_hours=48):
    return monitoring.rollback_reason(new, old, promoted_at=PROMOTED, window=timedelta(hours=window_hours),
                                      margin=margin, min_scored=min_scored)


def test_a_new_champion_clearly_worse_than_its_predecessor_within_the_window_is_rolled_back():
    why = reason(live("v2", 30, brier=0.20), live("v1", -5, brier=0.12))
    assert why is not None and "brier" in why and "v1" in why


def test_small_differences_late_reports_and_thin_evidence_keep_the_champion():
    previous = live("v1", -5, brier=0.12)
    assert reason(live("v2", 30, brier=0.16), previous) is None  # within the margin
    assert reason(live("v2", 49, brier=0.30), previous) is None  # after the monitoring window
    assert reason(live("v2", 30, brier=0.30, scored=5), previous) is None  # too few scored forecasts
    assert reason(live("v2", 30, brier=0.30, window="7d"), previous) is None  # different windows do not compare


def test_a_contingency_score_swinging_on_a_handful_of_flares_does_not_roll_back():
    assert reason(live("v2", 10, brier=0.12, tss=0.0), live("v1", -5, brier=0.12, tss=1.0)) is None


def test_brier_scores_qualified_by_class_are_compared_and_other_keys_are_not():
    new = {"C.brier": 0.30, "M.brier": 0.05, "C.brier_climatology": 0.9, "count": 40}
    old = {"C.brier": 0.10, "M.brier": 0.04, "C.brier_climatology": 0.1, "count": 10}
    assert [d.split()[0] for d in monitoring.degradations(new, old, 0.05)] == ["C.brier"]
