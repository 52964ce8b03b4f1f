"""A typed message travels through the real broker; a malformed one is dead-lettered and nothing stops."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timezone

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import messages as m
from shared.kafka import CORRELATION_HEADER, Publisher, TypedConsumer, decode, ensure_topics
from shared.topics import topic_registry
from tests.conftest import PROJECT_ROOT, service_env


def flux_at(minute: int, correlation_id: str = "cid-1") -> m.FluxObserved:
    time_tag = datetime(2015, 7, 1, 0, minute, tzinfo=timezone.utc)
    return m.FluxObserved(
        message_id=m.stable_id("GOES-15", 60, time_tag), event_time=time_tag, correlation_id=correlation_id,
        satellite="GOES-15", cadence_seconds=60, scaling_era="swpc_scaled", xrsa_flux=1e-9, xrsb_flux=3.6e-7,
        source="test",
    )


NEGATIVE_FLUX = (flux_at(2).model_dump_json().replace("3.6e-7", "-3.6e-7")
                 .replace('"xrsb_flux":3.6e-07', '"xrsb_flux":-3.6e-07').encode())


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_typed_consumer_takes_good_messages_and_dead_letters_bad_ones(settings):
    topics = topic_registry(settings)
    await ensure_topics(settings.kafka_bootstrap_servers, topics.values())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        await publisher.publish(settings.topics.flux, flux_at(0))
        await producer.send_and_wait(settings.topics.flux, b"{not json")
        await producer.send_and_wait(settings.topics.flux, NEGATIVE_FLUX)
        await publisher.publish(settings.topics.flux, flux_at(1))
        await producer.stop()

        consumer = TypedConsumer(
            settings.kafka_bootstrap_servers, [topics["flux"]], group_id="test-typed", service="test",
            dead_letter_topic=settings.topics.dead_letters, publisher=publisher,
        )
        await consumer.start()
        accepted = []
        async with asyncio.timeout(60):
            async for batch in consumer.batches():
                accepted += batch
                if len(accepted) == 2 and consumer.rejected == 2:
                    break
        await consumer.stop()

    assert [r.message for r in accepted] == [flux_at(0), flux_at(1)]
    assert accepted[0].message.correlation_id == "cid-1"
    dead = [decode(topics["dead_letters"], r.value)
            for r in await read_topic(settings.kafka_bootstrap_servers, settings.topics.dead_letters, 2)]
    assert "not JSON" in dead[0].reason
    assert "xrsb_flux" in dead[1].reason and dead[1].source_topic == settings.topics.flux
    assert dead[1].raw_value == NEGATIVE_FLUX.decode()


async def test_faust_agent_consumes_typed_messages_and_survives_malformed_ones(settings):
    topics = topic_registry(settings)
    await ensure_topics(settings.kafka_bootstrap_servers, topics.values())
    worker = subprocess.Popen(
        [sys.executable, "tests/support/echo_worker.py"], cwd=PROJECT_ROOT, env=service_env(settings),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        async with Publisher(settings.kafka_bootstrap_servers) as publisher:
            await publisher.publish(settings.topics.flux, flux_at(0, "cid-a"))
            await producer.send_and_wait(settings.topics.flux, b"\xff\xfe garbage",
                                         headers=[(CORRELATION_HEADER, b"cid-bad")])
            await publisher.publish(settings.topics.flux, flux_at(1, "cid-b"))
        await producer.stop()

        echoed = await read_topic(settings.kafka_bootstrap_servers, f"{settings.topics.flux}.echo", 2, timeout=90)
        dead = await read_topic(settings.kafka_bootstrap_servers, settings.topics.dead_letters, 1)
        assert worker.poll() is None, "the agent must keep running after a malformed message"
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")

    echoed_messages = [decode(topics["flux"], r.value, r.headers) for r in echoed]
    assert echoed_messages == [flux_at(0, "cid-a"), flux_at(1, "cid-b")], output[-2000:]
    dead_letter = decode(topics["dead_letters"], dead[0].value)
    assert dead_letter.service == "echo-test" and dead_letter.correlation_id == "cid-bad"
    assert "not JSON" in dead_letter.reason
