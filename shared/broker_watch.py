"""Noticing that the broker lost its log, and starting the service again so that it rebuilds from PostgreSQL.

The embedded Tansu broker keeps everything in memory: when it restarts, every topic, record and committed
offset is gone. The clients reconnect by themselves, but a running service still holds what belonged to the
old log: positions (faust skips the records below the offsets it last saw, and the new log counts from 0
again), group generations, tables rebuilt from changelogs that are gone. A fresh process holds none of it: it
creates the topics again, reads the new log from its start and takes what it knows from PostgreSQL.

So each long-running service leaves a marker record of its own on the broker when it starts and looks every
few seconds whether the record is still there, at the same offset. When the topic is gone, its log ends
before the marker, or another record sits at the marker's offset, the broker has lost its log: the service
logs `broker.restarted` with that evidence and replaces itself with a fresh process of the same command line
(same pid and output). While the broker is away nothing is proven and the watch waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from shared.kafka import _retry_connect, ensure_topics
from shared.logging import get_logger
from shared.topics import TopicSpec

log = get_logger(__name__)
MARKER_TOPIC = "flare.broker-markers"
MARKER_PARTITION = TopicPartition(MARKER_TOPIC, 0)
CHECK_SECONDS = 2.0
FETCH_TIMEOUT_MS = 2000
# kept for ever: a marker removed by retention would read as a lost log (each is about 120 bytes, one per start)
MARKER_SPEC = TopicSpec(MARKER_TOPIC, (), "service", description="one record per service process start",
                        config={"retention.ms": "-1"})


def restart_process() -> None:
    """Replace this process by a fresh one with the same interpreter, command line and environment."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


class BrokerWatch:
    """Leaves this process's marker on the broker, then checks every `check_seconds` that it is still there;
    calls `on_lost` (by default: restart the process) once it is not."""

    def __init__(self, bootstrap_servers: str, service: str, *, check_seconds: float = CHECK_SECONDS,
                 on_lost: Callable[[], None] = restart_process):
        self.bootstrap_servers = bootstrap_servers
        self.service = service
        self.check_seconds = check_seconds
        self.on_lost = on_lost
        self.marker = json.dumps({
            "service": service, "pid": os.getpid(), "id": uuid.uuid4().hex,
            "started_at": datetime.now(timezone.utc).isoformat(),
        }).encode()
        self.offset: int | None = None

    async def run(self) -> None:
        await self.leave_marker()
        async with self.marker_reader() as reader:
            while True:
                await asyncio.sleep(self.check_seconds)
                evidence = await self.check(reader)
                if evidence:
                    log.warning("broker.restarted", service=self.service, evidence=evidence,
                                action="the process starts again to rebuild from the new log and PostgreSQL")
                    self.on_lost()
                    return

    @asynccontextmanager
    async def marker_reader(self) -> AsyncIterator[AIOKafkaConsumer]:
        """A consumer of the marker's partition, in no group, that never moves its position by itself."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="none")
        await _retry_connect(consumer.start, "broker-watch")
        consumer.assign([MARKER_PARTITION])
        try:
            yield consumer
        finally:
            await consumer.stop()

    async def check(self, reader: AIOKafkaConsumer) -> str | None:
        """The evidence that the broker lost its log, or None: it holds the marker, or it is away or starting
        and nothing is proven yet."""
        try:
            return await self.lost_evidence(reader)
        except (KafkaError, OSError, asyncio.TimeoutError):
            return None

    async def leave_marker(self) -> None:
        await ensure_topics(self.bootstrap_servers, [MARKER_SPEC])
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
        await _retry_connect(producer.start, "broker-watch")
        try:
            sent = await producer.send_and_wait(MARKER_TOPIC, self.marker, key=self.service.encode())
        finally:
            await producer.stop()
        self.offset = sent.offset
        log.info("broker.marker_left", topic=MARKER_TOPIC, offset=self.offset)

    async def lost_evidence(self, consumer: AIOKafkaConsumer) -> str | None:
        """What shows that the broker lost the log since the marker was left, or None while it holds it."""
        if MARKER_TOPIC not in await consumer.topics():
            return f"topic {MARKER_TOPIC} is gone"
        consumer.seek(MARKER_PARTITION, self.offset)
        try:
            fetched = await consumer.getmany(MARKER_PARTITION, timeout_ms=FETCH_TIMEOUT_MS, max_records=1)
        except OffsetOutOfRangeError:
            return f"the log of {MARKER_TOPIC} ends before this process's marker's offset {self.offset}"
        records = fetched.get(MARKER_PARTITION, [])
        if records and (records[0].offset != self.offset or records[0].value != self.marker):
            return f"offset {self.offset} of {MARKER_TOPIC} holds another record than this process's marker"
        if not records:
            # the end Tansu reports is the start of the last batch, never above the true end: it can equal the
            # marker's offset while the marker is there, but then the fetch returns the marker
            end = (await consumer.end_offsets([MARKER_PARTITION]))[MARKER_PARTITION]
            if end <= self.offset:
                return (f"the log of {MARKER_TOPIC} ends at {end}, "
                        f"with no record at this process's marker's offset {self.offset}")
        return None
