"""The model lifecycle survives SIGKILLs: an operator asks for a retrain, the trainer is killed mid-training and
restarted, the gatekeeper is killed around the verdict and promotion and restarted, and what is left (registry,
model history, lifecycle messages) is what an uninterrupted run of the same story leaves.

Each run has its own database (a year of stored hourly GOES-15 history, the small models of `flare demo
--short`) and topics; the uninterrupted reference runs first, and its training time sets where in the training
the interrupted run's trainer is killed. The kill moments come from one seed, printed and named in the failure
message; `KILL_SEED=<seed>` runs the same kills again. Full version only (`make reliability`, 65-100 s): two
trainings, the restarts and the wait for a redelivery.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from flare_cli.commands.demo import SHORT
from shared.registry import FORECAST_KIND
from tests.support.gatekeeper_process import OPERATORS, GatekeeperProcess
from tests.reliability.test_kill_and_restart import Replay, replay
from tests.reliability.test_kill_and_restart import kill_seed as kill_seed  # fixture, re-exported
from tests.support.service_process import ServiceProcess
from tests.support.topic_reader import read_all
from tests.support.trainer_data import insert_history

STORY_TIMEOUT = 600.0
REDELIVERY_SECONDS = 20.0
# The story is the lifecycle, not a model's skill on a year of data: the backtest thresholds are relaxed (as in
# the loop's integration test) so the candidate is promoted and the gatekeeper has a promotion to be killed in.
LENIENT = {"THRESHOLDS__BACKTEST_MIN_F1": "0", "THRESHOLDS__BACKTEST_MIN_PRECISION": "0",
           "THRESHOLDS__BACKTEST_MAX_BRIER": "1"}

REGISTRY = "SELECT kind, status, count(*) FROM model_registry GROUP BY kind, status"
HISTORY = "SELECT action, actor, count(*) FROM model_history GROUP BY action, actor"
REQUESTS = "SELECT status, count(*) FROM retrain_requests GROUP BY status"
UNPUBLISHED = "SELECT count(*) FROM gatekeeper_outbox WHERE published_at IS NULL"
JUDGED = "SELECT count(*) FROM model_history WHERE action = 'gate_verdict'"
REGISTERED = "SELECT count(*) FROM model_registry WHERE status = 'candidate' OR status = 'champion'"
SETTLED = f"SELECT ({JUDGED}) = 1 AND ({UNPUBLISHED}) = 0"


@dataclass(frozen=True)
class Lifecycle:
    """What a run left, without version names, ids or clock times: counts per status, action and message type."""

    registry: Counter
    history: Counter
    requests: Counter
    messages: Counter  # lifecycle and retrain-request messages by type, each distinct id once

    @classmethod
    async def of(cls, run: Replay) -> Lifecycle:
        async with run.pool.acquire() as conn:
            registry, history, requests = [Counter({tuple(r.values())[:-1]: r["count"] for r in await conn.fetch(sql)})
                                           for sql in (REGISTRY, HISTORY, REQUESTS)]
        messages = [*await read_all(run.settings, "lifecycle"), *await read_all(run.settings, "retrain_requests")]
        distinct = {msg.message_id: msg for msg in messages}.values()
        return cls(registry, history, requests, Counter(type(msg).__name__ for msg in distinct))


async def retrain_asked(run: Replay, stack: AsyncExitStack, log_dir: Path) -> tuple[ServiceProcess, GatekeeperProcess]:
    """The run's trainer and gatekeeper started (stopped when `stack` closes), an operator's retrain request
    asked through the gatekeeper's API and taken up by the trainer."""
    trainer = ServiceProcess("trainer", run.settings, log_dir / f"{run.name}-trainer.log", **SHORT.model_env)
    gatekeeper = GatekeeperProcess(run.settings, log_dir / f"{run.name}-gatekeeper.log", **SHORT.model_env, **LENIENT)
    for service in (trainer, gatekeeper):
        service.start()
        stack.callback(service.stop)
    await gatekeeper.ready()
    asked = await gatekeeper.post("/retrain", headers={"Authorization": f"Bearer {OPERATORS[0]}"},
                                  json={"target_class": "all", "reason": "kill test", "request_key": "kill-test"})
    assert asked.status_code == 202, asked.text
    await trainer.until(lambda: logged(trainer, "trainer.request"), "retrain request at the trainer",
                        timeout=STORY_TIMEOUT)
    return trainer, gatekeeper


async def logged(service: ServiceProcess, event: str) -> bool:
    return service.log.exists() and event in service.log.read_text(errors="replace")


async def test_trainer_and_gatekeeper_killed_mid_lifecycle_leave_the_registry_and_history_of_an_uninterrupted_run(
        settings, db_pool, tmp_path, full_run, kill_seed):
    if not full_run:
        pytest.skip("two trainings, two restarts and a redelivery wait take over a minute: "
                    "full version only (`make reliability`, pytest --full)")
    rng = random.Random(kill_seed)
    training_share = rng.random()  # of the reference's training time
    # the gatekeeper's verdict and promotion come about 0.2 s after the candidate is registered: a kill within
    # 0.3 s lands before, during or just after them
    verdict_delay = rng.uniform(0.0, 0.3)
    trainer_pause, gatekeeper_pause = rng.uniform(0.0, 3.0), rng.uniform(0.0, 3.0)

    async with AsyncExitStack() as stack:
        reference = await stack.enter_async_context(replay("uninterrupted", settings, db_pool))
        interrupted = await stack.enter_async_context(replay("interrupted", settings, db_pool))
        for run in (reference, interrupted):
            async with run.pool.acquire() as conn:
                await insert_history(conn, SHORT.history_from, SHORT.history_until)

        # the uninterrupted story, timed
        trainer, gatekeeper = await retrain_asked(reference, stack, tmp_path)
        started = asyncio.get_running_loop().time()
        await trainer.until(lambda: reference.count(REGISTERED), "registered candidate", timeout=STORY_TIMEOUT)
        training_seconds = asyncio.get_running_loop().time() - started
        await gatekeeper.until(lambda: reference.count(SETTLED), "verdict and an empty outbox", timeout=STORY_TIMEOUT)
        expected = await Lifecycle.of(reference)
        for service in (trainer, gatekeeper):  # the trainer's consumer group is the same in both runs
            service.stop()
        told = (f"KILL_SEED={kill_seed}: trainer killed {training_share * training_seconds:.1f} s into a training that"
                f" took {training_seconds:.1f} s uninterrupted, restarted {trainer_pause:.1f} s later; gatekeeper"
                f" killed {verdict_delay:.2f} s after the candidate is registered,"
                f" restarted {gatekeeper_pause:.1f} s later")
        print(told)

        # the same story with the kills
        trainer, gatekeeper = await retrain_asked(interrupted, stack, tmp_path)
        await asyncio.sleep(training_share * training_seconds)
        trainer.kill()
        print(f"killed the trainer with {await interrupted.count(REGISTERED)} candidate(s) registered")
        await asyncio.sleep(trainer_pause)
        trainer.restart()
        await trainer.until(lambda: interrupted.count(REGISTERED), "registered candidate after the restart",
                            timeout=STORY_TIMEOUT, interval=0.01)
        await asyncio.sleep(verdict_delay)
        gatekeeper.kill()
        print(f"killed the gatekeeper with {await interrupted.count(JUDGED)} verdict(s) and"
              f" {await interrupted.count(UNPUBLISHED)} unpublished outbox message(s)")
        await asyncio.sleep(gatekeeper_pause)
        gatekeeper.restart()
        await gatekeeper.until(lambda: interrupted.count(SETTLED), "verdict and an empty outbox after the restart",
                               timeout=STORY_TIMEOUT)
        # the killed gatekeeper's uncommitted ModelTrained comes back once its group session (10 s) has expired
        # and the restarted one has the partitions: give a redelivery the time to do harm, if it does any
        await asyncio.sleep(REDELIVERY_SECONDS)
        got = await Lifecycle.of(interrupted)

    assert expected.registry[(FORECAST_KIND, "champion")] == 1, f"the reference story promoted nothing: {expected}"
    assert expected.messages["ModelTrained"] == 1 and expected.messages["RetrainRequested"] == 1, expected
    assert got == expected, f"{told}\ninterrupted: {got}\nreference:   {expected}"
