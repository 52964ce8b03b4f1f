"""The trainer service: consumes `RetrainRequested`, trains, validates, backtests and registers a candidate,
and publishes `ModelTrained` with its evidence, or `TrainingFailed` with the reason.

A request is handled once: a redelivered request (same message id) whose version is already registered gets
the same `ModelTrained` again instead of a second training. The offset is committed after the answer is
published, so a crash mid-training retrains after the restart; while the database is away, the request in hand
waits and is tried again (a version already registered is answered, not trained again). Training runs in a
worker thread so the consumer keeps its group membership alive during long fits.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka.errors import CommitFailedError

from services.trainer.pipeline import RegisteredVersion, train_and_register
from services.trainer.training import TrainingError
from shared import infra, registry
from shared import messages as m
from shared.broker_watch import BrokerWatch
from shared.db import DATABASE_OUTAGES, create_pool, outlasting_outages_on
from shared.kafka import Publisher, TypedConsumer
from shared.logging import bind_correlation, configure_logging, get_logger
from shared.serving import stop_on_signals, supervise
from shared.settings import Settings, get_settings
from shared.telemetry import start_metrics_server
from shared.topics import topic_registry

SERVICE = "trainer"
log = get_logger(__name__)


def model_trained(
    version: str, artifacts: dict[str, str], evidence: dict[str, Any], *, event_time: datetime,
    request: m.RetrainRequested | None = None,
) -> m.ModelTrained:
    """The announcement the gatekeeper judges a candidate on, however it was trained: for a retrain request
    (at the request's event time), or by an operator's `flare train` (at the end of its training data)."""
    message_id = m.stable_id("model-trained", version)
    return m.ModelTrained(
        message_id=message_id,
        event_time=event_time,
        correlation_id=(request.correlation_id or request.message_id) if request else message_id,
        version=version,
        request_id=request.message_id if request else None,
        artifacts=artifacts,
        evidence=evidence,
    )


def trained_announcement(registered: RegisteredVersion, request: m.RetrainRequested | None = None) -> m.ModelTrained:
    event_time = request.event_time if request else registered.training.data_window[1]
    return model_trained(registered.version, registered.artifacts, registered.evidence, event_time=event_time,
                         request=request)


async def announce(publisher: Publisher, settings: Settings, answer: m.ModelTrained | m.TrainingFailed) -> None:
    """Tell the gatekeeper: every candidate, from the service or the CLI, reaches the gates this way."""
    await publisher.publish(settings.topics.lifecycle, answer)


def training_failed(request: m.RetrainRequested, reason: str) -> m.TrainingFailed:
    return m.TrainingFailed(
        message_id=m.stable_id("training-failed", request.message_id),
        event_time=request.event_time,
        correlation_id=request.correlation_id or request.message_id,
        request_id=request.message_id,
        reason=reason,
    )


async def handle_request(
    conn: asyncpg.Connection, settings: Settings, request: m.RetrainRequested,
) -> m.ModelTrained | m.TrainingFailed:
    """The answer to one retrain request."""
    done = await registry.find_by_request(conn, request.message_id)
    if done is not None:
        log.info("trainer.already_trained", request_id=request.message_id, version=done["version"])
        evidence = {"validation": done["validation"], "backtest": done["backtest"],
                    "comparison": (done["validation"] or {}).get("comparison"), "kind": done["kind"]}
        return model_trained(done["version"], done["artifacts"], evidence, event_time=request.event_time,
                             request=request)
    # A forecast version bundles all three targets, so a request naming one class retrains the bundle.
    reason = f"retrain requested by {request.requested_by}: {request.reason}"
    if request.target_class != "all":
        reason += f" (for >={request.target_class}; the forecast model of all classes is retrained)"
    try:
        registered = await train_and_register(
            conn, settings, until=request.train_until, actor=SERVICE, reason=reason, request_id=request.message_id)
    except TrainingError as exc:
        log.warning("trainer.refused", request_id=request.message_id, reason=str(exc))
        return training_failed(request, str(exc))
    except DATABASE_OUTAGES:
        raise  # the database or disk is away: not this request's fault; it is tried again
    except Exception as exc:
        log.exception("trainer.failed", request_id=request.message_id)
        return training_failed(request, f"training failed: {type(exc).__name__}: {exc}")
    return trained_announcement(registered, request)


async def consume(settings: Settings, pool: asyncpg.Pool, consumer: TypedConsumer, publisher: Publisher) -> None:
    async for batch in consumer.batches(max_records=10):
        for received in batch:
            request = received.message
            with bind_correlation(request.correlation_id or request.message_id):
                log.info("trainer.request", request_id=request.message_id, until=str(request.train_until))
                answer = await outlasting_outages_on(pool, lambda conn: handle_request(conn, settings, request))
                await announce(publisher, settings, answer)
                log.info("trainer.answered", type=answer.type, request_id=request.message_id)
        if batch:
            try:
                await consumer.commit()
            except CommitFailedError:
                # a long training outlived the group membership: the request comes again and is answered
                # from the registry without training twice
                log.warning("trainer.commit_failed", requests=len(batch))


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    endpoints = await infra.prepare_service(settings)
    topics = topic_registry(settings)
    pool = await create_pool(endpoints.database_url)
    publisher = Publisher(endpoints.kafka_bootstrap_servers)
    await publisher.start()
    consumer = TypedConsumer(
        endpoints.kafka_bootstrap_servers, [topics["retrain_requests"]], group_id="flare-trainer", service=SERVICE,
        dead_letter_topic=settings.topics.dead_letters, publisher=publisher,
    )
    await consumer.start()
    stop = stop or asyncio.Event()
    tasks = [
        asyncio.create_task(consume(settings, pool, consumer, publisher), name="consume"),
        asyncio.create_task(BrokerWatch(endpoints.kafka_bootstrap_servers, SERVICE).run(), name="broker-watch"),
    ]
    log.info("trainer.started", topic=settings.topics.retrain_requests)
    try:
        await supervise(tasks, stop)
    finally:
        await consumer.stop()
        await publisher.stop()
        await pool.close()
        log.info("trainer.stopped")


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)
    stop_metrics = start_metrics_server(settings.trainer_metrics_port, settings.bind_host)
    stop = asyncio.Event()

    async def serve() -> None:
        stop_on_signals(stop.set)
        await run(settings, stop)

    try:
        asyncio.run(serve())
    finally:
        stop_metrics()
