"""The whole model loop on the embedded stack, every service a real process: a drift alert leads the gatekeeper
to ask for retraining, the trainer trains on the stored GOES-15 history and registers a candidate, the gates
hold it for approval, a second operator approves it with `flare approve`, the predictor's forecasts switch to
the new version; `flare rollback` then gives the old version back within seconds, and the history tells the
story."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx

from services.ingestor.readers import read_path
from services.gatekeeper import store as gatekeeper_store
from services.trainer import store as trainer_store
from shared import messages as m
from shared import registry
from shared.kafka import Publisher
from tests.support.gatekeeper_process import OPERATORS, VIEWERS, gatekeeper_running
from services.trainer.artifacts import save_version
from services.trainer.training import train
from tests.support.predictor_models import JULY_2015
from tests.support.predictor_service import predictor_running
from tests.support.service_process import ServiceProcess, running
from tests.support.topic_reader import read_all
from tests.support.trainer_data import history, insert_history

DRIFT_AT = datetime(2015, 7, 1, tzinfo=timezone.utc)
OLD_CHAMPION_UNTIL = datetime(2011, 7, 1, tzinfo=timezone.utc)
SMALL_MODELS = {"rsf_n_estimators": 10, "classifier_max_iter": 30}
# The loop is the subject here, not the skill of a model trained on nine months: the backtest thresholds are
# relaxed so the gates' verdict depends on the validation checks and the comparison with the champion.
LENIENT = {"THRESHOLDS__BACKTEST_MIN_F1": "0", "THRESHOLDS__BACKTEST_MIN_PRECISION": "0",
           "THRESHOLDS__BACKTEST_MAX_BRIER": "1"}


def july_day(day: int) -> list[m.FluxObserved]:
    return [
        m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag, satellite=r.satellite,
                       cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era, xrsa_flux=r.xrsa_flux,
                       xrsb_flux=r.xrsb_flux, source="test")
        for r in read_path(JULY_2015).flux if r.usable and r.time_tag.day == day
    ]


async def forecast_versions(pool, day: int) -> list[str]:
    start = datetime(2015, 7, day, tzinfo=timezone.utc)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT model_version FROM flare_prediction_log WHERE NOT shadow AND prediction_timestamp >= $1"
            " AND prediction_timestamp < $2 ORDER BY prediction_timestamp", start, start + timedelta(days=1))
    return [r["model_version"] for r in rows]


async def register_old_champion(conn, settings) -> str:
    """Last cycle's champion: trained by the trainer's own code on 2010-2011, before the activity maximum, so a
    model trained on 2014-2015 beats it on 2015's data (both are deterministic: the data and the seeds are)."""
    small = settings.model_copy(update={"model": settings.model.model_copy(update=SMALL_MODELS)})
    result = train(history("2010-10-01", OLD_CHAMPION_UNTIL), small, until=OLD_CHAMPION_UNTIL)
    saved = save_version(result.artifacts, settings.model_path)
    await trainer_store.register(
        conn, version=saved.version, kind=registry.FORECAST_KIND, artifacts=saved.artifacts, digests=saved.digests,
        data_window=result.data_window, hyperparameters=result.hyperparameters, validation={}, backtest={},
        actor="test", reason="last cycle's champion")
    await gatekeeper_store.set_status(conn, saved.version, "champion")
    return saved.version


async def test_drift_to_retrain_to_approval_to_new_forecasts_and_back_with_one_rollback(settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        await insert_history(conn, "2014-10-01", "2015-07-01")
        old = await register_old_champion(conn, settings)
    trainer = ServiceProcess("trainer", settings, tmp_path / "trainer.log",
                             **{f"MODEL__{k.upper()}": str(v) for k, v in SMALL_MODELS.items()})
    async with running(trainer), \
            gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log",
                               GATEKEEPER__PROMOTION_POLICY="approval", **LENIENT) as gatekeeper, \
            predictor_running(settings, tmp_path / "predictor.log",
                              PREDICTOR__APP_NAME=f"predictor-{uuid.uuid4().hex[:8]}") as predictor, \
            Publisher(settings.kafka_bootstrap_servers) as publisher:
        await publisher.publish_many(settings.topics.flux, july_day(1))
        await predictor.until(lambda: _full_day(clean_db, 1), "forecasts for July 1")

        # the evaluator says skill drifted: the gatekeeper asks, the trainer trains, the gates hold it
        await publisher.publish(settings.topics.alerts, m.MetricDrift(
            message_id=m.stable_id("loop-drift", uuid.uuid4().hex), event_time=DRIFT_AT, model_version=old,
            metric="C.brier", value=0.21, baseline=0.12, threshold=0.132, window="30d"))
        judged = await gatekeeper.until(lambda: _judged(gatekeeper, old), "verdict on a candidate", timeout=240)
        new = judged["model"]["version"]
        assert judged["verdict"]["evidence"]["decision"] == "HOLD", judged["verdict"]["reason"]
        assert "approval" in judged["verdict"]["reason"]
        request = (await read_all(settings, "retrain_requests", at_least=1))[0]
        assert request.requested_by == "gatekeeper" and "C.brier" in request.reason

        approved = gatekeeper.flare("approve", new, "--reason", "backtest and comparison checked",
                                    token=OPERATORS[1])
        assert approved.returncode == 0, approved.stderr
        await predictor.until(lambda: _champion_is(predictor, new), "the predictor to load the new champion")
        await publisher.publish_many(settings.topics.flux, july_day(2))
        await predictor.until(lambda: _full_day(clean_db, 2), "forecasts for July 2")
        assert set(await forecast_versions(clean_db, 1)) == {old}
        assert set(await forecast_versions(clean_db, 2)) == {new}

        # the new version disappoints: one command, and the predictor is back on the old one in seconds
        started = time.perf_counter()
        rolled = gatekeeper.flare("rollback", "--kind", registry.FORECAST_KIND, "--reason", "July 2 looks off")
        assert rolled.returncode == 0, rolled.stderr
        await predictor.until(lambda: _champion_is(predictor, old), "the predictor to load the old champion",
                              timeout=30)
        restored_in = time.perf_counter() - started
        await publisher.publish_many(settings.topics.flux, july_day(3))
        await predictor.until(lambda: _full_day(clean_db, 3), "forecasts for July 3")
        assert set(await forecast_versions(clean_db, 3)) == {old}

        history = json.loads(gatekeeper.flare("history", "--limit", "1000", "--json").stdout)

    story = [(h["action"], h["version"], h["actor"]) for h in reversed(history)
             if h["version"] in (old, new) or h["evidence"].get("request_id") == request.message_id]
    assert story == [
        ("registered", old, "test"),
        ("retrain_requested", None, "gatekeeper"),
        ("registered", new, "trainer"),
        ("gate_verdict", new, "gatekeeper"),
        ("approved", new, "bob"),
        ("promoted", new, "bob"),
        ("rolled_back", old, "alice"),
    ], story
    assert restored_in < 10, f"rollback took {restored_in:.1f} s to reach the predictor"
    print(f"\nrollback: `flare rollback` (a new process) to the predictor serving {old} again: {restored_in:.2f} s;"
          f" the API call itself: {rolled.stdout.strip().rsplit('[', 1)[-1].rstrip(']')}")


async def _full_day(pool, day: int) -> bool:
    return len(await forecast_versions(pool, day)) == 24


async def _champion_is(predictor, version: str) -> bool:
    health = await predictor.health()
    return bool(health) and health["models"]["champion"] == version


async def _judged(gatekeeper, old: str) -> dict | None:
    """The first candidate the gates have judged, with the verdict."""
    async with httpx.AsyncClient(base_url=gatekeeper.url, headers={"Authorization": f"Bearer {VIEWERS[0]}"}) as api:
        for model in (await api.get("/models", params={"kind": registry.FORECAST_KIND})).json():
            if model["version"] != old and model["status"] != "candidate":
                return (await api.get(f"/models/{model['version']}")).json()
    return None
