"""Reading back what a test's topics hold, from the beginning, until the broker has nothing more to give."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from shared import messages as m
from shared.kafka import decode
from shared.settings import Settings
from shared.topics import topic_registry


async def read_all(settings: Settings, role: str, idle_ms: int = 2000, *, at_least: int = 0,
                   timeout: float = 60.0) -> list[m.Message]:
    """Every message on the topic of `role` (e.g. "flux"), decoded: at least `at_least` of them (waiting up to
    `timeout` seconds for them), then whatever else arrives before the topic has been quiet for `idle_ms`."""
    spec = topic_registry(settings)[role]
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[m.Message] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                batch = await consumer.getmany(timeout_ms=idle_ms)
                found += [decode(spec, r.value, r.headers) for records in batch.values() for r in records]
                if not batch and len(found) >= at_least:
                    return found
    finally:
        await consumer.stop()
