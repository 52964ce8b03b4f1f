"""The long-running live ingestor: polls the SWPC feeds of the settings until it is told to stop."""

from __future__ import annotations

import asyncio

from services.ingestor.live import SwpcFeedClient
from services.ingestor.pipeline import Ingestor, run_live
from shared import infra
from shared.broker_watch import BrokerWatch
from shared.db import create_pool
from shared.kafka import Publisher
from shared.logging import configure_logging, get_logger
from shared.serving import stop_on_signals
from shared.settings import get_settings
from shared.telemetry import start_metrics_server

SERVICE = "ingestor"
log = get_logger(__name__)


async def serve() -> None:
    settings = get_settings()
    endpoints = await infra.prepare_service(settings)
    stop = asyncio.Event()
    stop_on_signals(stop.set)
    pool = await create_pool(endpoints.database_url)
    watch = asyncio.create_task(BrokerWatch(endpoints.kafka_bootstrap_servers, SERVICE).run(), name="broker-watch")
    try:
        async with Publisher(endpoints.kafka_bootstrap_servers) as publisher, SwpcFeedClient(
            settings.ingestion, settings.state_dir / "cache" / "swpc"
        ) as client:
            log.info("ingestor.started", feeds=settings.ingestion.swpc_feeds,
                     interval=settings.ingestion.poll_interval_seconds)
            await run_live(
                Ingestor(settings, pool, publisher, service=SERVICE), client, settings.ingestion.swpc_feeds,
                interval_seconds=settings.ingestion.poll_interval_seconds, stop=stop,
            )
    finally:
        watch.cancel()
        await pool.close()
        log.info("ingestor.stopped")


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)
    stop_metrics = start_metrics_server(settings.ingestor_metrics_port, settings.bind_host)
    try:
        asyncio.run(serve())
    finally:
        stop_metrics()
