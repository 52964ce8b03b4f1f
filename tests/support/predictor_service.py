"""Running `python -m services.predictor` against the test stack, and reading what it produced."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer

from services.ingestor.pipeline import Ingestor
from shared.kafka import Publisher, decode
from shared.settings import Settings
from shared.topics import topic_registry
from tests.support.service_process import ServiceProcess, running


@asynccontextmanager
async def predictor_running(settings: Settings, log: Path, **env_overrides: str) -> AsyncIterator[ServiceProcess]:
    env = {"PREDICTOR__APP_NAME": f"predictor-{uuid.uuid4().hex[:8]}", **env_overrides}
    async with running(ServiceProcess("predictor", settings, log, **env)) as predictor:
        yield predictor


async def ingest(settings: Settings, pool, path: Path):
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        return await Ingestor(settings, pool, publisher).ingest_file(path)


async def read_forecasts(settings: Settings, expected: int, timeout: float = 120.0) -> list:
    """The forecasts topic from the beginning: at least `expected` messages, then whatever else arrives within
    a short quiet period (so a test sees extra messages too)."""
    spec = topic_registry(settings)["forecasts"]
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                batch = await consumer.getmany(timeout_ms=1500)
                got = [r for rs in batch.values() for r in rs]
                records += got
                if len(records) >= expected and not got:
                    break
    finally:
        await consumer.stop()
    return [decode(spec, r.value, r.headers) for r in records]
