"""faust-streaming helpers: one way to build a service's app, to accept records or dead-letter them, and to read
a service's high-volume topics in bulk beside its agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from typing import Any, Awaitable

import faust

from shared import messages as m
from shared.kafka import LIVE_FETCH_WAIT_MS, Publisher, Received, Refused, TypedConsumer, accept_record, encode
from shared.logging import get_logger
from shared.settings import Settings
from shared.telemetry import MESSAGES_CONSUMED, MESSAGES_PUBLISHED, ConsumerLag
from shared.topics import TopicSpec

log = get_logger(__name__)


def make_app(service: str, settings: Settings, bootstrap_servers: str, **options: Any) -> faust.App:
    """A faust app for one service. Tables are in memory and rebuilt from their changelog topics; durable
    state lives in PostgreSQL."""
    datadir = settings.state_dir / "faust" / service
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"flare-{service}",
        broker=f"kafka://{bootstrap_servers}",
        store="memory://",
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
        topic_allow_declare=True,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        **options,
    )


def raw_topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    """The topic with raw bytes values: decoding is ours, so a bad record is dead-lettered, not fatal."""
    return app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _headers(event: faust.EventT) -> list[tuple[str, bytes]]:
    headers = event.message.headers or []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


class Acceptor:
    """Turns a faust event into a typed message, or publishes it to the dead-letter topic with the reason."""

    def __init__(self, app: faust.App, service: str, spec: TopicSpec, dead_letter_spec: TopicSpec):
        self.service = service
        self.spec = spec
        self.dead_letters = raw_topic(app, dead_letter_spec)
        self.rejected = 0
        self._consumed = MESSAGES_CONSUMED.labels(topic=spec.name)
        self._lag = ConsumerLag(lambda tp: app.consumer.highwater(tp))  # faust makes its consumer at start

    async def accept(self, event: faust.EventT) -> m.Message | None:
        self._consumed.inc()
        self._lag.read(event.message.tp, event.message.offset)
        message = accept_record(self.service, self.spec, event.value, _headers(event),
                                partition=event.message.partition, offset=event.message.offset)
        if isinstance(message, Refused):
            self.rejected += 1
            await send(self.dead_letters, message.dead_letter)
            return None
        return message


async def send(topic: faust.TopicT, message: m.Message) -> Awaitable:
    """Queue `message` for the broker; awaiting what this returns waits until the broker has it."""
    value, key, headers = encode(message)
    MESSAGES_PUBLISHED.labels(topic=topic.get_topic_name()).inc()
    return await topic.send(key=key, value=value, headers=headers)


BULK_BATCH = 2000  # records a batch takes when the reader is behind; live, a batch is what has come
BULK_POLL_MS = 500  # how long a read waits for the first record; a record already there is taken at once


class BulkReader:
    """A faust service's high-volume topics read with aiokafka in batches, not by faust agents: a replay is
    millions of records, and faust's handling of each (about 3,000 records/s on 2 cores whatever the agent does,
    measured by `tests/bench/faust_floor.py`) would cap it at a tenth of what the broker delivers.

    One consumer reads all the topics, the `held_back` ones only while the others have nothing waiting (see
    `TypedConsumer`), with the live fetch wait. `publisher` publishes what the batches make and their dead
    letters. A batch is committed by `done()` once it is handled, so a crash before that reads it again."""

    def __init__(self, app: faust.App, specs: Sequence[TopicSpec], *, bootstrap_servers: str, group: str,
                 service: str, dead_letter_topic: str, held_back: Sequence[str] = ()):
        self.app = app
        self._bootstrap_servers = bootstrap_servers
        self._consumer_for = partial(
            TypedConsumer, bootstrap_servers, list(specs), group_id=f"{app.conf.id}-{group}", service=service,
            dead_letter_topic=dead_letter_topic, held_back=list(held_back), fetch_max_wait_ms=LIVE_FETCH_WAIT_MS)
        self.publisher: Publisher | None = None
        self.consumer: TypedConsumer | None = None
        self.started = asyncio.Event()

    async def start(self) -> None:
        # made here, on the worker's event loop: faust starts the loop after the app is built
        self.publisher = Publisher(self._bootstrap_servers)
        self.consumer = self._consumer_for(publisher=self.publisher)
        await self.publisher.start()
        await self.consumer.start()
        self.started.set()

    async def batches(self) -> AsyncIterator[list[Received]]:
        """The accepted records in partition order, batch by batch (empty when nothing came in time); a batch
        of refused records only comes empty, and is done with once `done()` commits it: they are dead-lettered."""
        assert self.consumer is not None, "start() first"
        async for taken in self.consumer.batches(timeout_ms=BULK_POLL_MS, max_records=BULK_BATCH):
            yield taken

    async def done(self) -> None:
        """Commit the batches taken so far. The records faust's producer holds (its tables' changelogs) go to
        the broker first, as faust's own commit does: committed before them, a crash would lose what the batches
        wrote to the tables."""
        assert self.consumer is not None, "start() first"
        await self.app.producer.flush()
        await self.consumer.commit()

    def lag(self, topic: str) -> int | None:
        """How many records of the topic's partition 0 wait to be read; None until its first fetch."""
        return self.consumer.lag(faust.types.TP(topic, 0)) if self.consumer is not None else None

    async def stop(self) -> None:
        for client in (self.consumer, self.publisher):
            if client is not None:
                await client.stop()
