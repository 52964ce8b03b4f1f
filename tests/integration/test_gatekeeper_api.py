"""The gatekeeper's REST API and acts against the real database and broker: an operator promotes, rolls back
and sets a challenger; gates judge trained candidates; a held candidate waits for a second operator; a new
champion that does worse live is rolled back by itself; every step is in the history, the validation log and
the lifecycle topic."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from pydantic import SecretStr

from services.gatekeeper import store
from services.gatekeeper.api import create_app
from services.gatekeeper.lifecycle import Gatekeeper
from services.gatekeeper.retention import run_retention
from services.trainer import store as trainer_store
from shared import messages as m
from shared import contract
from shared.kafka import Publisher, ensure_topics
from shared.topics import topic_registry
from tests.support.topic_reader import read_all

ALICE, BOB, VIEWER = "alice:alice-secret", "bob:bob-secret", "carol:carol-secret"
GOOD_VALIDATION = {"checks": {"no_nan": True, "probabilities_sum_to_one": True}, "c_index": {"C": 0.72, "M": 0.75}}
GOOD_BACKTEST = {"f1": 0.52, "precision": 0.44, "brier": 0.11}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def gk_settings(settings):
    return settings.model_copy(update={
        "operator_tokens": [SecretStr(ALICE), SecretStr(BOB)], "viewer_tokens": [SecretStr(VIEWER)],
    })


@pytest.fixture
async def publisher(gk_settings):
    await ensure_topics(gk_settings.kafka_bootstrap_servers, topic_registry(gk_settings).values())
    async with Publisher(gk_settings.kafka_bootstrap_servers) as running:
        yield running


@pytest.fixture
async def gatekeeper(clean_db, gk_settings, publisher) -> Gatekeeper:
    async with clean_db.acquire() as conn:
        await conn.execute("TRUNCATE retrain_triggers, gatekeeper_outbox, gatekeeper_clock")
    return Gatekeeper(clean_db, gk_settings, publisher)


@pytest.fixture
async def api(gatekeeper):
    transport = httpx.ASGITransport(app=create_app(gatekeeper))
    async with httpx.AsyncClient(transport=transport, base_url="http://gatekeeper") as client:
        yield client


@pytest.fixture
def kind() -> str:
    """A model kind of this test alone: the history is append-only and shared by every test."""
    return f"bundle-{uuid.uuid4().hex[:8]}"


async def register(pool, kind: str, name: str, *, validation=GOOD_VALIDATION, backtest=GOOD_BACKTEST) -> str:
    """A candidate in the registry as the trainer leaves it, without files: the gates judge its evidence (a
    tampered file refused at promotion is in tests/reliability/test_security.py)."""
    version = f"{kind}-{name}"
    window = (datetime(2014, 1, 1, tzinfo=timezone.utc), datetime(2015, 1, 1, tzinfo=timezone.utc))
    async with pool.acquire() as conn:
        await trainer_store.register(
            conn, version=version, kind=kind, artifacts={}, digests={}, data_window=window, hyperparameters={},
            validation=validation, backtest=backtest, actor="trainer", reason="test candidate",
        )
    return version


async def status_of(pool, version: str) -> str:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT status FROM model_registry WHERE version = $1", version)


async def promote(api, version: str, expected: str | None, token: str = ALICE, *, force: bool = True) -> httpx.Response:
    """The operator's promotion. These candidates were never judged (the gates are tested below), so by default
    the operator overrides the gates, which the history records before each promotion."""
    return await api.post(f"/models/{version}/promote", headers=bearer(token),
                          json={"expected_current": expected, "reason": "better backtest", "force": force})


# ---- an operator's day --------------------------------------------------------------------------------------


async def test_an_operator_promotes_replaces_and_rolls_back_and_every_step_is_recorded(
    api, gatekeeper, gk_settings, kind,
):
    v1 = await register(gatekeeper.pool, kind, "v1")
    v2 = await register(gatekeeper.pool, kind, "v2")

    first = await promote(api, v1, None)
    assert first.status_code == 200 and first.json()["champion"] == v1 and first.json()["changed"]
    second = await promote(api, v2, v1, token=BOB)
    assert second.status_code == 200 and second.json()["champion"] == v2
    assert await status_of(gatekeeper.pool, v1) == "retired"

    rolled = await api.post("/rollback", headers=bearer(ALICE),
                            json={"from_version": v2, "reason": "forecasts look wrong"})
    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["champion"], rolled.json()["changed"]) == (v1, True)
    again = await api.post("/rollback", headers=bearer(ALICE), json={"from_version": v2, "reason": "retry"})
    assert (again.status_code, again.json()["champion"], again.json()["changed"]) == (200, v1, False)

    history = [h for h in (await api.get("/history", params={"kind": kind}, headers=bearer(VIEWER))).json()
               if h["action"] != "registered"]
    assert [(h["action"], h["version"], h["actor"]) for h in reversed(history)] == [
        ("gate_overridden", v1, "alice"), ("promoted", v1, "alice"), ("gate_overridden", v2, "bob"),
        ("promoted", v2, "bob"), ("rolled_back", v1, "alice"),
    ]
    assert history[0]["reason"] == "forecasts look wrong" and history[0]["evidence"]["previous_version"] == v2

    messages = await read_all(gk_settings, "lifecycle", 500, at_least=3, timeout=30)
    assert [(type(x).__name__, x.version, x.actor) for x in messages] == [
        ("ModelPromoted", v1, "alice"), ("ModelPromoted", v2, "bob"), ("ModelRolledBack", v1, "alice"),
    ]
    assert messages[1].previous_version == v1 and messages[2].from_version == v2
    async with gatekeeper.pool.acquire() as conn:
        logged = await conn.fetch(
            "SELECT check_name, actor FROM flare_system_validation_log WHERE run_id = ANY($1::text[]) ORDER BY id",
            [h["event_id"] for h in history],
        )
        unpublished = await conn.fetchval("SELECT count(*) FROM gatekeeper_outbox WHERE published_at IS NULL")
    assert [(r["check_name"], r["actor"]) for r in logged] == [
        ("gate_overridden", "alice"), ("promoted", "alice"), ("gate_overridden", "bob"), ("promoted", "bob"),
        ("rolled_back", "alice"),
    ]
    assert unpublished == 0


async def test_which_version_was_champion_at_a_given_time(api, gatekeeper, kind):
    v1 = await register(gatekeeper.pool, kind, "v1")
    v2 = await register(gatekeeper.pool, kind, "v2")
    before_any = datetime.now(timezone.utc)
    await promote(api, v1, None)
    between = datetime.now(timezone.utc)
    await promote(api, v2, v1)

    async def champion_at(at: datetime) -> str | None:
        answer = await api.get("/champion/at", params={"kind": kind, "time": at.isoformat()}, headers=bearer(VIEWER))
        assert answer.status_code == 200, answer.text
        return answer.json()["version"]

    assert await champion_at(before_any) is None
    assert await champion_at(between) == v1
    assert await champion_at(datetime.now(timezone.utc)) == v2


async def test_a_stale_promotion_answers_409_and_changes_nothing(api, gatekeeper, kind):
    v1, v2, v3 = [await register(gatekeeper.pool, kind, name) for name in ("v1", "v2", "v3")]
    await promote(api, v1, None)
    await promote(api, v2, v1)

    stale = await promote(api, v3, v1, token=BOB)  # Bob still thinks v1 is champion
    assert stale.status_code == 409 and v2 in stale.json()["detail"]
    assert (await status_of(gatekeeper.pool, v3), await status_of(gatekeeper.pool, v2)) == ("candidate", "champion")
    history = (await api.get("/history", params={"version": v3}, headers=bearer(VIEWER))).json()
    assert [h["action"] for h in history] == ["registered"]


async def test_two_operators_promoting_at_once_cannot_both_win(api, gatekeeper, kind):
    v1, v2, v3 = [await register(gatekeeper.pool, kind, name) for name in ("v1", "v2", "v3")]
    await promote(api, v1, None)
    answers = await asyncio.gather(promote(api, v2, v1), promote(api, v3, v1, token=BOB))
    assert sorted(a.status_code for a in answers) == [200, 409]
    winner = v2 if answers[0].status_code == 200 else v3
    async with gatekeeper.pool.acquire() as conn:
        champions = await conn.fetch("SELECT version FROM model_registry WHERE kind = $1 AND status = 'champion'", kind)
    assert [r["version"] for r in champions] == [winner]


async def test_writes_without_an_operator_token_are_refused_and_change_nothing(api, gatekeeper, kind):
    v1 = await register(gatekeeper.pool, kind, "v1")
    body = {"expected_current": None, "reason": "let me in"}

    assert (await api.post(f"/models/{v1}/promote", json=body)).status_code == 401
    assert (await api.post(f"/models/{v1}/promote", json=body, headers=bearer("mallory:guess"))).status_code == 401
    as_viewer = await api.post(f"/models/{v1}/promote", json=body, headers=bearer(VIEWER))
    assert as_viewer.status_code == 403 and "viewer" in as_viewer.json()["detail"]
    assert (await api.post("/retrain", json={"reason": "please"}, headers=bearer(VIEWER))).status_code == 403
    assert (await api.post("/rollback", json={"version": v1, "reason": "x" * 5})).status_code == 401

    assert await status_of(gatekeeper.pool, v1) == "candidate"
    history = (await api.get("/history", params={"version": v1}, headers=bearer(VIEWER))).json()
    assert [h["action"] for h in history] == ["registered"]
    assert (await api.get("/models", params={"kind": kind})).status_code == 401
    models = await api.get("/models", params={"kind": kind}, headers=bearer(VIEWER))
    assert [x["version"] for x in models.json()] == [v1]


async def test_rolling_back_to_a_named_former_champion_is_idempotent(api, gatekeeper, kind):
    v1, v2, v3 = [await register(gatekeeper.pool, kind, name) for name in ("v1", "v2", "v3")]
    await promote(api, v1, None)
    await promote(api, v2, v1)
    await promote(api, v3, v2)

    answers = [await api.post("/rollback", headers=bearer(ALICE), json={"version": v1, "reason": "v1 was best"})
               for _ in range(2)]
    assert [(a.status_code, a.json()["champion"], a.json()["changed"]) for a in answers] == [
        (200, v1, True), (200, v1, False)]
    never_champion = await register(gatekeeper.pool, kind, "v4")
    refused = await api.post("/rollback", headers=bearer(ALICE), json={"version": never_champion, "reason": "why not"})
    assert refused.status_code == 409 and "former champion" in refused.json()["detail"]


async def test_a_challenger_runs_beside_the_champion_and_steps_down_when_cleared(api, gatekeeper, gk_settings, kind):
    v1, v2 = [await register(gatekeeper.pool, kind, name) for name in ("v1", "v2")]
    await promote(api, v1, None)

    chosen = await api.post("/challenger", headers=bearer(ALICE), json={"version": v2, "reason": "shadow it a week"})
    assert chosen.status_code == 200 and (chosen.json()["champion"], chosen.json()["challenger"]) == (v1, v2)
    state = (await api.get("/champion", params={"kind": kind}, headers=bearer(VIEWER))).json()
    assert (state[0]["champion"]["version"], state[0]["challenger"]["version"]) == (v1, v2)
    refused = await api.post("/challenger", headers=bearer(ALICE), json={"version": v1, "reason": "the champion?"})
    assert refused.status_code == 409

    cleared = await api.post(
        "/challenger", headers=bearer(ALICE), json={"version": None, "kind": kind, "reason": "enough"})
    assert cleared.json()["challenger"] is None and await status_of(gatekeeper.pool, v2) == "candidate"
    messages = await read_all(gk_settings, "lifecycle", 500, at_least=3, timeout=30)
    assert [(type(x).__name__, x.version) for x in messages[1:]] == [
        ("ChallengerChanged", v2), ("ChallengerChanged", None)]


async def test_unknown_versions_answer_404_and_bad_bodies_422(api, gatekeeper):
    assert (await promote(api, "no-such-version", None)).status_code == 404
    assert (await api.get("/models/no-such-version", headers=bearer(VIEWER))).status_code == 404
    empty_reason = await api.post("/rollback", headers=bearer(ALICE), json={"version": "x", "reason": ""})
    assert empty_reason.status_code == 422
    assert (await api.post(
        "/retrain", headers=bearer(ALICE), json={"target_class": "Q", "reason": "abc"})).status_code == 422
    nameless = await api.post("/challenger", headers=bearer(ALICE), json={"version": "", "reason": "shadow it"})
    assert nameless.status_code == 422 and nameless.json()["detail"][0]["loc"] == ["body", "version"]


def test_the_api_is_documented_in_openapi(gatekeeper):
    spec = create_app(gatekeeper).openapi()
    assert {"/models", "/models/{version}", "/champion", "/champion/at", "/history", "/approvals", "/retrain",
            "/rollback", "/challenger", "/models/{version}/promote", "/models/{version}/approve",
            "/models/{version}/reject"} <= set(spec["paths"])
    assert "409" in spec["paths"]["/models/{version}/promote"]["post"]["responses"]


async def test_the_topics_contract_is_served_under_this_deployments_topic_names(api, gk_settings):
    response = await api.get("/asyncapi.json")
    assert response.status_code == 200
    served = response.json()
    assert served["asyncapi"] == "3.0.0"
    assert served["channels"]["forecasts"]["address"] == gk_settings.topics.forecasts != "forecasts"
    assert served["components"] == json.loads(contract.DOCUMENT_PATH.read_text())["components"]


# ---- gates, approvals and retraining ------------------------------------------------------------------------


def trained(version: str, request_id: str | None = None, **evidence) -> m.ModelTrained:
    return m.ModelTrained(message_id=m.stable_id("trained", version), event_time=datetime.now(timezone.utc),
                          version=version, request_id=request_id, artifacts={"classifier": f"{version}.joblib"},
                          evidence=evidence)


async def test_a_candidate_passing_every_gate_is_promoted_and_a_failing_one_rejected_with_the_reason(
    gatekeeper, gk_settings, kind,
):
    good = await register(gatekeeper.pool, kind, "good")
    bad = await register(gatekeeper.pool, kind, "bad", backtest={"f1": 0.35, "precision": 0.5, "brier": 0.1})

    assert (await gatekeeper.judge_candidate(trained(good))).decision == "PROMOTE"
    assert (await gatekeeper.judge_candidate(trained(good))) is None  # redelivered: already judged
    rejected = await gatekeeper.judge_candidate(trained(bad))
    assert rejected.decision == "REJECT" and "backtest.f1" in rejected.reason

    assert (await status_of(gatekeeper.pool, good), await status_of(gatekeeper.pool, bad)) == ("champion", "rejected")
    async with gatekeeper.pool.acquire() as conn:
        checks = {r["check_name"]: r["passed"] for r in await conn.fetch(
            "SELECT check_name, passed FROM flare_system_validation_log WHERE run_id = $1",
            m.stable_id("gate-verdict", bad))}
        verdicts = await conn.fetch(
            "SELECT version FROM model_history WHERE action = 'gate_verdict' AND version = $1", good)
    assert (checks["gate.backtest.f1"] is False and checks["gate.backtest.brier"] is True
            and checks["gate.verdict"] is False)
    assert len(verdicts) == 1
    promoted = (await read_all(gk_settings, "lifecycle", 500, at_least=1, timeout=30))[0]
    assert (promoted.version, promoted.actor) == (good, "gatekeeper")


async def test_under_the_approval_policy_a_second_operator_approves_the_held_candidate(api, gatekeeper, kind):
    gatekeeper.settings = gatekeeper.settings.model_copy(update={
        "gatekeeper": gatekeeper.settings.gatekeeper.model_copy(update={"promotion_policy": "approval"})})
    asked = await api.post("/retrain", headers=bearer(ALICE), json={"target_class": "all", "reason": "new season"})
    assert asked.status_code == 202
    candidate = await register(gatekeeper.pool, kind, "v1")
    verdict = await gatekeeper.judge_candidate(trained(candidate, request_id=asked.json()["request_id"]))
    assert verdict.decision == "HOLD"

    pending = (await api.get("/approvals", headers=bearer(VIEWER))).json()
    assert [p["model"]["version"] for p in pending] == [candidate]
    assert pending[0]["verdict"]["evidence"]["requested_by"] == "alice"
    own = await api.post(f"/models/{candidate}/approve", headers=bearer(ALICE), json={"reason": "looks good to me"})
    assert own.status_code == 403 and await status_of(gatekeeper.pool, candidate) == "held"
    around = await promote(api, candidate, None)  # nor can she promote it past the approval
    assert around.status_code == 409 and "approve" in around.json()["detail"]

    approved = await api.post(
        f"/models/{candidate}/approve", headers=bearer(BOB), json={"reason": "checked the backtest"})
    assert approved.status_code == 200 and approved.json()["champion"] == candidate
    actions = [(h["action"], h["actor"]) for h in reversed((await api.get(
        "/history", params={"version": candidate}, headers=bearer(VIEWER))).json())]
    assert actions == [
        ("registered", "trainer"), ("gate_verdict", "gatekeeper"), ("approved", "bob"), ("promoted", "bob")]
    requests = (await api.get("/retrain-requests", headers=bearer(VIEWER))).json()
    assert requests[0]["status"] == "trained"


async def test_a_held_candidate_can_be_rejected_by_an_operator(api, gatekeeper, kind):
    champion = await register(gatekeeper.pool, kind, "v1")
    await promote(api, champion, None)
    candidate = await register(gatekeeper.pool, kind, "v2")
    assert (await gatekeeper.judge_candidate(trained(candidate))).decision == "HOLD"  # no comparison with v1
    rejected = await api.post(f"/models/{candidate}/reject", headers=bearer(BOB), json={"reason": "not convincing"})
    assert rejected.status_code == 200 and await status_of(gatekeeper.pool, candidate) == "rejected"
    assert (await api.post(
        f"/models/{candidate}/approve", headers=bearer(BOB), json={"reason": "oops"})).status_code == 409


async def test_a_candidate_without_a_passing_verdict_is_promoted_only_by_an_override_the_history_keeps(
    api, gatekeeper, kind,
):
    unjudged = await register(gatekeeper.pool, kind, "unjudged")
    refused = await promote(api, unjudged, None, force=False)
    assert refused.status_code == 409 and "has no gate verdict" in refused.json()["detail"]
    assert "--force --reason" in refused.json()["detail"] and await status_of(gatekeeper.pool, unjudged) == "candidate"

    failed = await register(gatekeeper.pool, kind, "failed", backtest={"f1": 0.35, "precision": 0.5, "brier": 0.1})
    assert (await gatekeeper.judge_candidate(trained(failed))).decision == "REJECT"
    refused = await promote(api, failed, None, force=False)
    assert refused.status_code == 409 and "failed the gates" in refused.json()["detail"]
    assert "backtest.f1" in refused.json()["detail"] and await status_of(gatekeeper.pool, failed) == "rejected"

    forced = await api.post(f"/models/{failed}/promote", headers=bearer(BOB),
                            json={"expected_current": None, "reason": "F1 is low on a quiet month", "force": True})
    assert forced.status_code == 200 and forced.json()["champion"] == failed
    assert "forced past the gates" in forced.json()["detail"]
    entries = (await api.get("/history", params={"version": failed}, headers=bearer(VIEWER))).json()
    override, promotion = entries[1], entries[0]
    assert (override["action"], override["actor"], override["reason"]) == (
        "gate_overridden", "bob", "F1 is low on a quiet month")
    assert override["evidence"]["gates"] == ["backtest.f1"] and "failed the gates" in override["evidence"]["overridden"]
    assert (promotion["action"], promotion["actor"], promotion["evidence"]["forced"]) == ("promoted", "bob", True)

    # a former champion needs no new override to come back
    again = await promote(api, unjudged, failed, force=True)
    assert again.status_code == 200
    back = await promote(api, failed, unjudged, force=False)
    assert back.status_code == 200 and back.json()["champion"] == failed


async def test_an_operators_retrain_request_is_published_and_a_retried_call_is_the_same_request(
    api, gatekeeper, gk_settings,
):
    body = {"target_class": "C", "reason": "C-class skill is poor", "request_key": "ticket-42"}
    first = await api.post("/retrain", headers=bearer(ALICE), json=body)
    retried = await api.post("/retrain", headers=bearer(ALICE), json=body)
    assert first.status_code == retried.status_code == 202
    assert first.json()["request_id"] == retried.json()["request_id"] and not first.json()["folded"]
    other = await api.post("/retrain", headers=bearer(BOB), json={"target_class": "all", "reason": "me too"})
    assert other.json()["folded"] and other.json()["request_id"] == first.json()["request_id"]

    requested = await read_all(gk_settings, "retrain_requests", 1500, at_least=1, timeout=30)
    assert [(r.message_id, r.target_class, r.requested_by) for r in requested] == [
        (first.json()["request_id"], "C", "alice")]


# ---- the event-time clock and the live metrics --------------------------------------------------------------


async def test_the_monthly_retraining_follows_event_time_once_six_months_are_in(gatekeeper):
    start = datetime(2015, 1, 1, tzinfo=timezone.utc)
    opened = []
    for hours in range(0, 24 * 250, 6):  # about eight months of event time, in 6-hour steps
        opened += await gatekeeper.clock_moved(start + timedelta(hours=hours))
    async with gatekeeper.pool.acquire() as conn:
        requests = await conn.fetch("SELECT event_time, requested_by FROM retrain_requests ORDER BY event_time")
    # Jul 1 (181 days in) is short of 182 days; Aug 1 is the first month with enough history.
    assert [r["event_time"] for r in requests] == [datetime(2015, 8, 1, 2, tzinfo=timezone.utc)]
    assert requests[0]["requested_by"] == "gatekeeper:schedule"
    assert await gatekeeper.clock_moved(datetime(2015, 7, 31, tzinfo=timezone.utc)) == []  # a replay starts
    again = await gatekeeper.clock_moved(datetime(2015, 8, 1, 3, tzinfo=timezone.utc))
    assert [a.request_id for a in again] == [opened[0].request_id]  # the same tick replayed: the same request


def metrics(version: str, at: datetime, brier: float, scored: int = 24) -> m.MetricsUpdated:
    return m.MetricsUpdated(message_id=m.stable_id("metrics", version, at), event_time=at, model_version=version,
                            window="24h", scored_count=scored, metrics={"brier": brier, "tss": 0.5})


async def test_a_new_champion_doing_clearly_worse_live_is_rolled_back_by_itself(api, gatekeeper, gk_settings, kind):
    v1, v2 = [await register(gatekeeper.pool, kind, name) for name in ("v1", "v2")]
    now = datetime(2015, 6, 1, tzinfo=timezone.utc)
    await gatekeeper.clock_moved(now)
    await promote(api, v1, None)
    await gatekeeper.metrics_updated(metrics(v1, now - timedelta(hours=1), brier=0.10))
    await promote(api, v2, v1)

    assert await gatekeeper.metrics_updated(metrics(v2, now + timedelta(hours=12), brier=0.13)) is None  # within margin
    outcome = await gatekeeper.metrics_updated(metrics(v2, now + timedelta(hours=20), brier=0.25))
    assert outcome is not None and outcome.champion == v1
    assert await gatekeeper.metrics_updated(metrics(v2, now + timedelta(hours=20), brier=0.25)) is None  # redelivered

    latest = (await api.get("/history", params={"kind": kind, "limit": 1}, headers=bearer(VIEWER))).json()[0]
    assert (latest["action"], latest["version"], latest["actor"]) == ("rolled_back", v1, "gatekeeper:auto-rollback")
    assert "brier" in latest["reason"] and latest["evidence"]["predecessor_metrics"]["brier"] == 0.10
    rolled = [x for x in await read_all(gk_settings, "lifecycle", 500, at_least=3, timeout=30)
              if isinstance(x, m.ModelRolledBack)]
    assert [(x.version, x.from_version) for x in rolled] == [(v1, v2)]


async def test_an_announcement_lost_to_a_broker_outage_is_published_by_the_relay(
    clean_db, gk_settings, publisher, kind,
):
    offline = Publisher(gk_settings.kafka_bootstrap_servers)  # never started: every publish fails
    stranded = Gatekeeper(clean_db, gk_settings, offline, publish_timeout_seconds=1.0)
    version = await register(clean_db, kind, "v1")
    await stranded.promote(version, None, "alice", "while the broker is away", force=True)
    async with clean_db.acquire() as conn:
        waiting = await store.unpublished(conn)
    assert [row["payload"]["version"] for row in waiting if row["topic"] == gk_settings.topics.lifecycle] == [version]

    relayed = await Gatekeeper(clean_db, gk_settings, publisher).relay_outbox(older_than_seconds=0)
    assert relayed >= 1
    announced = (await read_all(gk_settings, "lifecycle", 500, at_least=1, timeout=30))[0]
    assert (type(announced).__name__, announced.version) == ("ModelPromoted", version)


async def test_the_monthly_schedule_counts_the_history_already_stored(gatekeeper):
    async with gatekeeper.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO flux_observations (satellite, time_tag, cadence_seconds, scaling_era, xrsb_flux, source,"
            " message_id) VALUES ('GOES-15', '2014-06-01T00:00Z', 3600, 'swpc_scaled', 1e-6, 'test', 'stored-1')")
    # a gatekeeper that starts watching in spring 2015 finds ten months already stored
    assert await gatekeeper.clock_moved(datetime(2015, 3, 31, 23, tzinfo=timezone.utc)) == []
    [outcome] = await gatekeeper.clock_moved(datetime(2015, 4, 1, 3, tzinfo=timezone.utc))
    assert not outcome.folded
    async with gatekeeper.pool.acquire() as conn:
        request = await conn.fetchrow("SELECT * FROM retrain_requests WHERE request_id = $1", outcome.request_id)
    assert request["event_time"] == datetime(2015, 4, 1, 2, tzinfo=timezone.utc)
    assert request["evidence"]["history_start"].startswith("2014-06-01")


async def test_retention_runs_through_the_gatekeeper_and_every_step_is_recorded(gatekeeper, kind):
    model_dir = gatekeeper.settings.model_path
    model_dir.mkdir(parents=True, exist_ok=True)
    versions = []
    async with gatekeeper.pool.acquire() as conn:
        for i in range(5):
            path = model_dir / f"survival_model_C_2015010{i}_{kind}.joblib"
            path.write_bytes(f"model {i}".encode())
            version = f"{kind}-v{i}"
            await trainer_store.register(
                conn, version=version, kind=kind, artifacts={"survival_C": str(path)},
                digests={"survival_C": hashlib.sha256(path.read_bytes()).hexdigest()},
                data_window=(datetime(2014, 1, 1, tzinfo=timezone.utc), datetime(2015, 1, 1, tzinfo=timezone.utc)),
                hyperparameters={}, validation={}, backtest={}, actor="trainer", reason="retention test")
            versions.append(version)
    await gatekeeper.promote(versions[0], None, "alice", "the oldest stays champion", force=True)

    report = await run_retention(gatekeeper)
    assert report.archived == [versions[1]]  # newest three kept, the champion protected
    assert await status_of(gatekeeper.pool, versions[1]) == "archived"
    assert (model_dir / "archive" / f"survival_model_C_20150101_{kind}.joblib").exists()
    async with gatekeeper.pool.acquire() as conn:
        archived = await conn.fetchrow(
            "SELECT actor FROM model_history WHERE version = $1 AND action = 'archived'", versions[1])
        logged = await conn.fetchval(
            "SELECT detail FROM flare_system_validation_log WHERE check_name = 'retention' AND detail LIKE $1",
            f"%{versions[1]}%")
    assert archived["actor"] == "gatekeeper:retention" and logged is not None
    assert (await run_retention(gatekeeper)).archived == []  # nothing more is due


async def test_a_flare_validate_run_is_logged_by_the_gatekeeper_once_under_the_operators_name(api, gatekeeper):
    run_id = f"validate-{uuid.uuid4().hex}"
    run = {"run_id": run_id, "checks": [{"name": "database", "passed": True, "detail": "connected, 4 migrations"},
                                        {"name": "full pipeline", "passed": False, "detail": "no forecast logged"}]}

    assert (await api.post("/validation-runs", json=run)).status_code == 401
    assert (await api.post("/validation-runs", json=run, headers=bearer(VIEWER))).status_code == 403
    twice = {**run, "checks": run["checks"] + run["checks"][:1]}
    repeated = await api.post("/validation-runs", json=twice, headers=bearer(ALICE))
    assert repeated.status_code == 422 and "repeats a name" in repeated.json()["detail"]
    no_checks = await api.post("/validation-runs", json={"run_id": run_id, "checks": []}, headers=bearer(ALICE))
    assert no_checks.status_code == 422

    logged = await api.post("/validation-runs", json=run, headers=bearer(ALICE))
    assert logged.status_code == 201 and logged.json() == {"run_id": run_id, "logged": 2}
    again = await api.post("/validation-runs", json=run, headers=bearer(ALICE))  # a retried post
    assert again.status_code == 201 and again.json()["logged"] == 0
    async with gatekeeper.pool.acquire() as conn:
        rows = await conn.fetch("SELECT check_name, passed, detail, actor FROM flare_system_validation_log"
                                " WHERE run_id = $1 ORDER BY id", run_id)
    assert [tuple(row) for row in rows] == [("database", True, "connected, 4 migrations", "alice"),
                                            ("full pipeline", False, "no forecast logged", "alice")]
