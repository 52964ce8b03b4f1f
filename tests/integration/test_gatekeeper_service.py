"""`python -m services.gatekeeper` running against the test stack: a storm of drift alerts becomes one retrain
request, a malformed alert is dead-lettered, and an operator drives promotions and rollbacks with the `flare`
commands, which are refused without the operator role or with a stale view of the champion."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from aiokafka import AIOKafkaProducer

from services.trainer import store as trainer_store
from shared import messages as m
from shared.kafka import Publisher
from tests.support.gatekeeper_process import OPERATORS, VIEWERS, gatekeeper_running
from tests.support.topic_reader import read_all


async def count(pool, sql: str, *args) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval(sql, *args)


async def test_a_storm_of_100_drift_alerts_yields_one_retrain_request_and_bad_alerts_are_dead_lettered(
        settings, clean_db, tmp_path):
    start = datetime(2015, 7, 10, tzinfo=timezone.utc)
    storm = [m.MetricDrift(message_id=m.stable_id("storm", i), event_time=start + i * timedelta(minutes=5),
                           model_version="v-live", metric="C.brier", value=0.2 + i / 1000, baseline=0.1,
                           threshold=0.11, window="30d") for i in range(100)]
    async with gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log") as gatekeeper:
        async with Publisher(settings.kafka_bootstrap_servers) as publisher:
            await publisher.publish_many(settings.topics.alerts, storm[:50])
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
            await producer.start()
            await producer.send_and_wait(settings.topics.alerts, b'{"type": "MetricDrift", "value": "high"}')
            await producer.stop()
            await publisher.publish_many(settings.topics.alerts, storm[50:])

        async def all_triggers_seen() -> bool:
            return await count(clean_db, "SELECT count(*) FROM retrain_triggers") == 100
        await gatekeeper.until(all_triggers_seen, "record of all 100 alerts")

        requests = await read_all(settings, "retrain_requests", at_least=1)
        assert len(requests) == 1 and requests[0].target_class == "all" and requests[0].train_until == start
        assert await count(clean_db, "SELECT count(*) FROM retrain_triggers WHERE folded") == 99
        dead = await read_all(settings, "dead_letters", at_least=1)
        assert [(d.service, d.source_topic) for d in dead] == [("gatekeeper", settings.topics.alerts)]

        # the operator asks too while the request is in flight: folded into it, not queued
        asked = gatekeeper.flare("retrain", "--target-class", "M", "--reason", "M skill looks off")
        assert asked.returncode == 0, asked.stderr
        assert f"folded into {requests[0].message_id}" in asked.stdout
        listed = gatekeeper.flare("history", "--action", "retrain_requested", "--limit", "1000", "--json")
        assert listed.returncode == 0, listed.stderr
        ours = [e for e in json.loads(listed.stdout) if e["evidence"].get("alert_id") in {a.message_id for a in storm}]
        assert [e["evidence"]["request_id"] for e in ours] == [requests[0].message_id]
        assert gatekeeper.process.poll() is None
    assert len(await read_all(settings, "retrain_requests", at_least=1)) == 1


async def register(pool, kind: str, name: str) -> str:
    version = f"{kind}-{name}"
    window = (datetime(2014, 1, 1, tzinfo=timezone.utc), datetime(2015, 1, 1, tzinfo=timezone.utc))
    async with pool.acquire() as conn:
        await trainer_store.register(
            conn, version=version, kind=kind, artifacts={}, digests={}, data_window=window, hyperparameters={},
            validation={}, backtest={"f1": 0.5, "precision": 0.4, "brier": 0.1}, actor="trainer", reason="test")
    return version


async def test_an_operator_drives_the_registry_with_flare_commands_and_is_refused_when_unauthorised_or_stale(
        settings, clean_db, tmp_path):
    kind = f"cli-{uuid.uuid4().hex[:6]}"
    v1, v2, v3 = [await register(clean_db, kind, name) for name in ("v1", "v2", "v3")]
    async with gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log") as gatekeeper:
        unjudged = gatekeeper.flare("promote", v1)  # no gate has judged these candidates
        assert unjudged.returncode == 1 and "HTTP 409" in unjudged.stderr and "has no gate verdict" in unjudged.stderr
        no_reason = gatekeeper.flare("promote", v1, "--force")
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
        assert gatekeeper.flare("promote", v1, "--force", "--reason", "the first model of this kind").returncode == 0
        promoted = gatekeeper.flare("promote", v2, "--force", "--reason", "better Brier on the spring data",
                                    token=OPERATORS[1])
        assert promoted.returncode == 0 and f"champion {v2}" in promoted.stdout

        stale = gatekeeper.flare("promote", v3, "--expect", v1)
        assert stale.returncode == 1 and "HTTP 409" in stale.stderr and v2 in stale.stderr
        as_viewer = gatekeeper.flare("promote", v3, token=VIEWERS[0])
        assert as_viewer.returncode == 1 and "HTTP 403" in as_viewer.stderr
        anonymous = gatekeeper.flare("rollback", token=None)
        assert anonymous.returncode == 1 and "HTTP 401" in anonymous.stderr
        assert await count(clean_db, "SELECT count(*) FROM model_registry WHERE kind = $1 AND status = 'champion'"
                           " AND version = $2", kind, v2) == 1

        rolled = gatekeeper.flare("rollback", "--kind", kind, "--reason", "v2 forecasts look wrong")
        assert rolled.returncode == 0, rolled.stderr
        assert rolled.stdout.startswith("done") and f"champion {v1}" in rolled.stdout
        again = gatekeeper.flare("rollback", v1, "--reason", "make sure")
        assert again.returncode == 0 and again.stdout.startswith("nothing to do")

        listing = gatekeeper.flare("models", "--kind", kind, token=VIEWERS[0])
        statuses = {line.split()[0]: line.split()[2] for line in listing.stdout.splitlines()[1:]}
        assert statuses == {v1: "champion", v2: "retired", v3: "candidate"}
        history = gatekeeper.flare("history", "--kind", kind, "--action", "promoted", token=VIEWERS[0])
        assert [line.split()[1:4] for line in history.stdout.splitlines()] == [
            ["promoted", v1, "alice"], ["promoted", v2, "bob"]]
        rollbacks = json.loads(gatekeeper.flare("history", "--kind", kind, "--action", "rolled_back", "--json").stdout)
        assert [(e["version"], e["actor"], e["reason"]) for e in rollbacks] == [
            (v1, "alice", "v2 forecasts look wrong")]

    announced = await read_all(settings, "lifecycle", at_least=3)
    assert [(type(x).__name__, x.version) for x in announced] == [
        ("ModelPromoted", v1), ("ModelPromoted", v2), ("ModelRolledBack", v1)]


async def test_flare_validate_has_the_gatekeeper_log_its_run_and_says_so_when_it_cannot(settings, clean_db, tmp_path):
    async with gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log") as gatekeeper:
        validated = gatekeeper.flare("validate", "--api-url", "http://127.0.0.1:9")  # an empty system: checks fail
        assert validated.returncode == 1 and "PASS  database" in validated.stdout, validated.stdout + validated.stderr
        assert "not logged" not in validated.stderr, validated.stderr
        rows = await clean_db.fetch("SELECT run_id, check_name, passed, actor FROM flare_system_validation_log")
        assert [(r["check_name"], r["actor"]) for r in rows] == [
            (name, "alice") for name in ("database", "ingestion", "model loading", "predictions", "api endpoint",
                                         "full pipeline")]
        assert len({r["run_id"] for r in rows}) == 1 and [r["passed"] for r in rows][:2] == [True, False]

        nowhere = "http://127.0.0.1:9"
        unlogged = gatekeeper.flare("validate", "--api-url", nowhere, "--gatekeeper-url", nowhere)
        assert unlogged.returncode == 1 and "the run is not logged in flare_system_validation_log" in unlogged.stderr
    assert await count(clean_db, "SELECT count(*) FROM flare_system_validation_log") == 6
