"""The dashboard service: reads the topics from their beginning into the view and serves it on UI_PORT.

It joins no consumer group, so every dashboard sees every message and a restart rebuilds the view from the
topics (the view holds nothing that cannot be read again). It needs the broker only, never the database.
"""

from __future__ import annotations

import asyncio

from services.dashboard.app import PUSH_INTERVAL_SECONDS, Hub, create_app
from services.dashboard.view import DashboardView
from shared import infra
from shared.kafka import Publisher, TypedConsumer, ensure_topics
from shared.logging import configure_logging, get_logger
from shared.serving import api_server, stop_on_signals, supervise
from shared.settings import Settings, get_settings
from shared.topics import topic_registry

SERVICE = "dashboard"
TOPIC_ROLES = ("flux", "flares", "forecasts", "metrics", "lifecycle", "retrain_requests", "alerts")
log = get_logger(__name__)


async def consume(consumer: TypedConsumer, hub: Hub) -> None:
    """Fold every accepted message into the view and push the changes to the pages, paced by the hub."""
    async for batch in consumer.batches(timeout_ms=int(PUSH_INTERVAL_SECONDS * 1000)):
        hub.apply(batch)
        hub.rejected = consumer.rejected
        # an empty batch means the topics are quiet: push what is pending now rather than wait for more
        hub.push_changes(force=not batch)


async def serve(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers or infra.start_embedded_broker(settings.state_dir)["bootstrap"]
    topics = topic_registry(settings)
    await ensure_topics(bootstrap, topics.values())
    hub = Hub(DashboardView())
    server = api_server(create_app(hub), settings.bind_host, settings.ui_port,
                        timeout_graceful_shutdown=1)  # open event streams never end by themselves
    stop = asyncio.Event()
    stop_on_signals(stop.set)
    async with Publisher(bootstrap) as publisher:
        consumer = TypedConsumer(
            bootstrap, [topics[role] for role in TOPIC_ROLES], group_id=None, service=SERVICE,
            dead_letter_topic=settings.topics.dead_letters, publisher=publisher,
        )
        await consumer.start()
        log.info("dashboard.started", url=f"http://{settings.bind_host}:{settings.ui_port}/", bootstrap=bootstrap)
        try:
            await supervise([asyncio.create_task(consume(consumer, hub), name="consume")], stop, api=server)
        finally:
            await consumer.stop()
            log.info("dashboard.stopped", consumed=hub.consumed, rejected=consumer.rejected)


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)
    asyncio.run(serve(settings))
