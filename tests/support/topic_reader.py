"""Reading back what a test's topics hold, from the beginning, until the broker has nothing more to give."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from shared import messages as m
from shared.kafka import decode
from shared.settings import Settings
from shared.topics import topic_registry


async def read_all(settings: Settings, role: str, idle_ms: int = 2000) -> list[m.Message]:
    """Every message on the topic of `role` (e.g. "flux"), decoded; done after `idle_ms` without a record."""
    spec = topic_registry(settings)[role]
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records = []
    try:
        while batch := await consumer.getmany(timeout_ms=idle_ms):
            for partition_records in batch.values():
                records += partition_records
    finally:
        await consumer.stop()
    return [decode(spec, r.value, r.headers) for r in records]
