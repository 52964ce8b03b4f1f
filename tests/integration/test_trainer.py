"""The trainer against the real database and broker: history stored as the ingestor stores it, a model trained,
registered with digests, validated and backtested (also through the `flare` CLI), a tampered file refused,
retention applied, and the service answering retrain requests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.gatekeeper.retention import apply_retention
from services.trainer import service
from services.trainer.pipeline import backtest_registered, train_and_register, validate_registered
from services.trainer.training import InsufficientHistory
from services.gatekeeper import store as gatekeeper_store
from services.trainer import store as trainer_store
from shared import messages as m
from shared import registry
from shared.forecast_model import DigestMismatch
from shared.kafka import Publisher
from tests.conftest import PROJECT_ROOT, service_env
from tests.support.topic_reader import read_all
from tests.support.trainer_data import insert_history

UTC = timezone.utc
UNTIL = datetime(2012, 2, 1, tzinfo=UTC)
SMALL_MODELS = {"rsf_n_estimators": 10, "classifier_max_iter": 30}


def small(settings):
    return settings.model_copy(update={"model": settings.model.model_copy(update=SMALL_MODELS)})


def flare_cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = service_env(settings)
    env.update({f"MODEL__{key.upper()}": str(value) for key, value in SMALL_MODELS.items()})
    return subprocess.run([sys.executable, "-m", "flare_cli.main", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


async def test_train_register_validate_backtest_and_refuse_a_tampered_file(settings, clean_db, tmp_path):
    settings = small(settings)
    async with clean_db.acquire() as conn:
        await insert_history(conn, "2011-06-01", "2012-03-20")
        registered = await train_and_register(conn, settings, until=UNTIL, actor="test", reason="integration test")

        row = await registry.get(conn, registered.version)
        assert row["status"] == "candidate" and row["kind"] == "forecast"
        assert row["data_window_end"] == UNTIL
        # the flare-history models (the degraded forecasts where no flux can be used) are part of the version
        assert set(row["artifacts"]) == {"survival_C", "survival_M", "survival_X", "classification",
                                         "flare_history_survival_C", "flare_history_survival_M",
                                         "flare_history_survival_X"}
        for name, path in row["artifacts"].items():
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == row["digests"][name]
        names = sorted(Path(p).name for p in row["artifacts"].values())
        assert names[0].startswith("classification_pipeline_") and names[4].startswith("survival_model_C_")
        assert names[1].startswith("flare_history_survival_model_C_")
        assert all(name.endswith(f"_{registered.version}.joblib") for name in names)
        assert registered.version.startswith("v") and len(registered.version.split("-")[-1]) == 8
        assert row["hyperparameters"]["survival"]["C"]["estimator"] in ("coxph", "rsf")
        checks = row["validation"]["checks"]
        for name in ("digest_matches", "loads", "no_nan", "probabilities_sum_to_one", "survival_non_increasing",
                     "better_than_champion"):
            assert checks[name] is True, name
        assert {"f1", "precision", "brier", "per_target"} <= set(row["backtest"])
        history = await conn.fetch("SELECT action FROM model_history WHERE version = $1", registered.version)
        assert [h["action"] for h in history] == ["registered"]

        survival_c = row["artifacts"]["survival_C"]
        report = await validate_registered(conn, settings, survival_c, start=UNTIL,
                                           end=datetime(2012, 3, 10, tzinfo=UTC))
        by_name = {c.name: c for c in report.checks}
        for name in ("registered", "digest_matches", "loads", "no_nan", "probabilities_sum_to_one",
                     "survival_non_increasing"):
            assert by_name[name].passed, by_name[name]
        assert ">=C" in by_name["c_index"].detail
        assert set(report.c_index) >= {"C", "M"}

        result = await backtest_registered(conn, settings, registered.version, start=UNTIL,
                                           end=datetime(2012, 3, 10, 23, tzinfo=UTC))
        assert result.issued == 39 * 24 and result.scorable > 800
        stored = await registry.get(conn, registered.version)
        assert stored["backtest"]["kind"] == "walk-forward" and stored["backtest"]["issued"] == result.issued

    # the operator's commands on the same registry, as subprocesses
    out = tmp_path / "report"
    done = flare_cli(settings, "backtest", "--model", survival_c, "--from", "2012-02-01", "--to", "2012-02-20",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Brier skill" in (out / "backtest_report.txt").read_text()
    assert len((out / "forecasts.csv").read_text().splitlines()) == 1 + 20 * 24

    with open(survival_c, "ab") as handle:
        handle.write(b"tampered")
    async with clean_db.acquire() as conn:
        with pytest.raises(DigestMismatch, match="refused"):
            registry.load_model(await registry.get(conn, registered.version))
        report = await validate_registered(conn, settings, survival_c)
        assert [(c.name, c.passed) for c in report.checks][-1] == ("digest_matches", False)
    done = flare_cli(settings, "validate-model", survival_c)
    assert done.returncode == 1
    assert "FAIL  digest_matches" in done.stdout and "refused" in done.stdout


async def test_too_short_a_stored_history_is_refused_with_a_clear_message(settings, clean_db):
    async with clean_db.acquire() as conn:
        await insert_history(conn, "2012-01-01", "2012-04-01")
        with pytest.raises(InsufficientHistory, match=r"only 91 days .* at least 182 days"):
            await train_and_register(conn, small(settings), until=None, actor="test", reason="too short")
        assert await conn.fetchval("SELECT count(*) FROM model_registry") == 0
    done = flare_cli(settings, "train")
    assert done.returncode == 1 and "refusing to train: only 91 days" in done.stderr


async def _register_dummy(conn, model_dir: Path, label: str) -> str:
    version = f"v-retention-{label}-{uuid.uuid4().hex[:6]}"
    path = model_dir / f"survival_model_C_20260101_{version}.joblib"
    path.write_bytes(version.encode())
    await trainer_store.register(
        conn, version=version, kind="retention-test", artifacts={"survival_C": str(path)},
        digests={"survival_C": hashlib.sha256(path.read_bytes()).hexdigest()},
        data_window=(datetime(2011, 1, 1, tzinfo=UTC), datetime(2012, 1, 1, tzinfo=UTC)), hyperparameters={},
        validation={}, backtest={}, actor="test", reason="retention test")
    return version


async def test_retention_keeps_the_newest_three_archives_the_rest_and_deletes_archives_after_90_days(
        settings, clean_db):
    model_dir = settings.model_path
    model_dir.mkdir(parents=True)
    async with clean_db.acquire() as conn:
        versions = [await _register_dummy(conn, model_dir, str(i)) for i in range(6)]
        await gatekeeper_store.set_status(conn, versions[0], "champion")
        now = datetime.now(UTC)
        report = await apply_retention(conn, model_dir, keep=3, archive_days=90, actor="test", now=now)
        assert sorted(report.archived) == sorted(versions[1:3]) and report.deleted == []
        for version in versions[1:3]:
            row = await registry.get(conn, version)
            archived_path = Path(row["artifacts"]["survival_C"])
            assert (row["status"] == "archived" and archived_path.parent == model_dir / "archive"
                    and archived_path.exists())
        assert (Path((await registry.get(conn, versions[0]))["artifacts"]["survival_C"]).parent
                == model_dir)  # champion stays
        again = await apply_retention(conn, model_dir, keep=3, archive_days=90, actor="test",
                                      now=now + timedelta(days=89))
        assert again.archived == [] and again.deleted == []
        later = await apply_retention(conn, model_dir, keep=3, archive_days=90, actor="test",
                                      now=now + timedelta(days=91))
        assert sorted(later.deleted) == sorted(versions[1:3])
        for version in versions[1:3]:
            row = await registry.get(conn, version)
            assert row["status"] == "deleted" and not Path(row["artifacts"]["survival_C"]).exists()
            actions = [r["action"] for r in await conn.fetch(
                "SELECT action FROM model_history WHERE version = $1 ORDER BY id", version)]
            assert actions == ["registered", "archived", "deleted"]


def retrain_request(reason: str, until: datetime) -> m.RetrainRequested:
    return m.RetrainRequested(
        message_id=m.stable_id("retrain", reason, until.isoformat()), event_time=until, reason=reason,
        requested_by="test", train_until=until)


async def test_the_service_answers_retrain_requests_once_and_dead_letters_bad_ones(settings, clean_db):
    settings = small(settings)
    async with clean_db.acquire() as conn:
        await insert_history(conn, "2011-06-01", "2012-02-10")
    stop = asyncio.Event()
    worker = asyncio.create_task(service.run(settings, stop))
    good = retrain_request("monthly schedule", UNTIL)
    too_early = retrain_request("drift", datetime(2011, 9, 1, tzinfo=UTC))
    try:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(settings.topics.retrain_requests, b'{"type": "RetrainRequested", "reason": 3}')
        await producer.stop()
        async with Publisher(settings.kafka_bootstrap_servers) as publisher:
            await publisher.publish(settings.topics.retrain_requests, good)
            await publisher.publish(settings.topics.retrain_requests, too_early)
            await publisher.publish(settings.topics.retrain_requests, good)  # redelivered
        answers = await read_all(settings, "lifecycle", 500, at_least=3, timeout=240)
    finally:
        stop.set()
        await worker

    trained = [a for a in answers if isinstance(a, m.ModelTrained)]
    failed = [a for a in answers if isinstance(a, m.TrainingFailed)]
    assert len(trained) == 2 and trained[0].version == trained[1].version  # trained once, answered twice
    assert trained[0].request_id == good.message_id
    assert trained[0].evidence["validation"]["checks"]["no_nan"] is True and "f1" in trained[0].evidence["backtest"]
    assert len(failed) == 1 and failed[0].request_id == too_early.message_id
    assert "refusing to train: only" in failed[0].reason
    async with clean_db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM model_registry") == 1
        row = await registry.find_by_request(conn, good.message_id)
        assert row["version"] == trained[0].version

    consumer = AIOKafkaConsumer(settings.topics.dead_letters, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    dead = [json.loads(r.value) for records in batch.values() for r in records]
    assert len(dead) == 1 and dead[0]["service"] == "trainer" and "RetrainRequested" in dead[0]["reason"]
