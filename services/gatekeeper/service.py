"""The running gatekeeper: one process with the stream consumer, the REST API, the outbox relay and the
retention schedule.

The consumer reads alerts (drift, X-class flares), the lifecycle topic (trained candidates, failed trainings),
the metrics topic (live skill, for the automatic rollback) and the flux topic, whose event time is the clock of
the monthly schedule. Offsets are committed after a batch is handled; every handler is idempotent, so a batch
redelivered after a crash changes nothing, and a handler the database's absence interrupted is simply run
again once it is back (the batch is not committed meanwhile).
"""

from __future__ import annotations

import asyncio

from services.gatekeeper import retraining
from services.gatekeeper.api import create_app
from services.gatekeeper.lifecycle import Gatekeeper
from services.gatekeeper.retention import run_retention_schedule
from shared import infra
from shared import messages as m
from shared.broker_watch import BrokerWatch
from shared.db import create_pool, outlasting_outages
from shared.kafka import Publisher, Received, TypedConsumer, handler_failed
from shared.logging import bind_correlation, configure_logging, get_logger
from shared.serving import api_server, stop_on_signals, supervise
from shared.settings import Settings, get_settings
from shared.topics import topic_registry

log = get_logger(__name__)
SERVICE = "gatekeeper"

async def handle(gatekeeper: Gatekeeper, message: m.Message) -> None:
    """Route one message to its handler; the gatekeeper's own announcements on the lifecycle topic are skipped."""
    if isinstance(message, m.MetricDrift):
        await gatekeeper.request_retrain(retraining.drift_trigger(message))
    elif isinstance(message, m.XClassFlareObserved):
        await gatekeeper.request_retrain(retraining.x_flare_trigger(message))
    elif isinstance(message, m.ModelTrained):
        await gatekeeper.judge_candidate(message)
    elif isinstance(message, m.TrainingFailed):
        await gatekeeper.training_failed(message)
    elif isinstance(message, m.MetricsUpdated):
        await gatekeeper.metrics_updated(message)


async def handle_batch(gatekeeper: Gatekeeper, batch: list[Received], publisher: Publisher) -> None:
    """Flux only moves the clock (once per batch, to where the batch ends); everything else is handled in order."""
    flux = [r.message for r in batch if isinstance(r.message, m.FluxObserved)]
    for received in batch:
        if isinstance(received.message, m.FluxObserved):
            continue
        with bind_correlation(received.message.correlation_id):
            try:
                await outlasting_outages(lambda: handle(gatekeeper, received.message))
            except Exception as exc:  # a message the handler cannot take is set aside with the reason
                await publisher.publish(gatekeeper.settings.topics.dead_letters, handler_failed(
                    SERVICE, received.topic, received.message.model_dump_json().encode(), exc,
                    partition=received.partition, offset=received.offset,
                    correlation_id=received.message.correlation_id,
                ))
    if flux:
        await outlasting_outages(lambda: gatekeeper.clock_moved(flux[-1].event_time))


async def consume(gatekeeper: Gatekeeper, consumer: TypedConsumer, publisher: Publisher) -> None:
    async for batch in consumer.batches():
        if batch:
            await handle_batch(gatekeeper, batch, publisher)
            await consumer.commit()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    endpoints = await infra.prepare_service(settings)
    topics = topic_registry(settings)
    pool = await create_pool(endpoints.database_url)
    publisher = Publisher(endpoints.kafka_bootstrap_servers)
    await publisher.start()
    gatekeeper = Gatekeeper(pool, settings, publisher)
    consumer = TypedConsumer(
        endpoints.kafka_bootstrap_servers, [topics["alerts"], topics["lifecycle"], topics["metrics"], topics["flux"]],
        group_id=settings.gatekeeper.consumer_group, service=SERVICE, dead_letter_topic=settings.topics.dead_letters,
        publisher=publisher,
    )
    await consumer.start()
    tasks = [
        asyncio.create_task(consume(gatekeeper, consumer, publisher), name="consume"),
        asyncio.create_task(gatekeeper.run_relay(), name="outbox-relay"),
        asyncio.create_task(run_retention_schedule(gatekeeper), name="retention"),
        asyncio.create_task(BrokerWatch(endpoints.kafka_bootstrap_servers, SERVICE).run(), name="broker-watch"),
    ]
    log.info("gatekeeper.started", port=settings.gatekeeper_port, policy=settings.gatekeeper.promotion_policy)
    try:
        await supervise(tasks, stop, api=api_server(create_app(gatekeeper), settings.bind_host,
                                                    settings.gatekeeper_port))
    finally:
        await consumer.stop()
        await publisher.stop()
        await pool.close()
        log.info("gatekeeper.stopped")


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)

    async def serve() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop.set)
        await run(settings, stop)

    asyncio.run(serve())
