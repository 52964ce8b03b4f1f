"""Kafka helpers: JSON serde with the message schemas, dead-lettering, typed producers and consumers.

A record that fails to decode or validate never stops a consumer: it is wrapped in `DeadLettered` with the
reason and published to the dead-letter topic, and the consumer moves on.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, NamedTuple, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ConsumerStoppedError, KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.metadata import MetadataRequest
import aiokafka.client
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared import messages as m
from shared.logging import get_logger
from shared.telemetry import MESSAGES_CONSUMED, MESSAGES_DEAD_LETTERED, MESSAGES_PUBLISHED, ConsumerLag
from shared.topics import TopicSpec

CORRELATION_HEADER = "correlation_id"
# a rejection's reason quotes what pydantic says, which may quote the input; a dead letter stays readable
MAX_REASON_CHARS = 2000
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
TYPE_HEADER = "message_type"
log = get_logger(__name__)


# The topics `ensure_topics` created or found in this process: only `ensure_topics` creates them again.
_ENSURED_TOPICS: set[str] = set()


class _MetadataRequestWithoutTopicCreation(MetadataRequest):
    """A metadata request that does not ask the broker to create any topic of ours.

    aiokafka asks for auto-creation in every metadata request and has no option against it; a broker that
    restarted empty (the in-memory Tansu) then re-creates each topic the first client names with its own default
    of 4 partitions, before `ensure_topics` can create it with the registry's. So a request that names a topic
    `ensure_topics` took care of asks for no creation, and the client waits until the topic is there again;
    other names (a test's or a benchmark's scratch topics) are still created on first use."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None):
        if allow_auto_topic_creation is None:
            allow_auto_topic_creation = _ENSURED_TOPICS.isdisjoint(topics or ())
        super().__init__(topics, allow_auto_topic_creation)


# for every aiokafka client of the process, faust's included: the client looks the name up at each request
aiokafka.client.MetadataRequest = _MetadataRequestWithoutTopicCreation


class Rejected(Exception):
    """A record that cannot be accepted; the message says why."""


def encode(message: m.Message) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Value, key and headers for one message."""
    headers = [(TYPE_HEADER, message.type.encode())]
    if message.correlation_id:
        headers.append((CORRELATION_HEADER, message.correlation_id.encode()))
    return message.model_dump_json().encode(), message.key.encode(), headers


# what json.loads would read differently (NaN and Infinity as numbers) or what may decode to unstorable text
_READ_WITH_CARE = (b"\\u", b"NaN", b"Infinity")


def decode(spec: TopicSpec, raw: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> m.Message:
    """Parse and validate a record of `spec`'s topic; raise `Rejected` with a readable reason otherwise."""
    if raw is None:
        raise Rejected("empty value (tombstone) where a message was expected")
    header_cid = dict(headers).get(CORRELATION_HEADER)
    if not any(mark in raw for mark in _READ_WITH_CARE):
        # The common record, parsed and validated in one pass: half the cost of json.loads and validation, which
        # bounds a replay. Without an escape or a JSON constant it holds no NUL, lone surrogate or NaN; anything
        # refused here is read again with care, for the reason.
        try:
            message = spec.adapter.validate_json(raw)
        except ValidationError:
            pass
        else:
            if message.correlation_id or not header_cid:
                return message
    return decode_with_care(spec, raw, header_cid)


def decode_with_care(spec: TopicSpec, raw: bytes, header_cid: bytes | None = None) -> m.Message:
    """`decode` step by step: what a record the one-pass read refuses, or may read wrongly, goes through, so that a
    refusal says what is wrong."""
    try:
        payload = json.loads(raw, parse_constant=_not_a_json_number)
    except RecursionError:
        raise Rejected("not JSON we can read: nested too deeply") from None
    except ValueError as exc:  # also bad UTF-8, NaN/Infinity and integers of more than 4300 digits
        raise Rejected(f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise Rejected(f"expected a JSON object, got {type(payload).__name__}")
    if header_cid and not payload.get("correlation_id"):
        payload["correlation_id"] = header_cid.decode(errors="replace")
    if b"\\u" in raw or header_cid:  # only an escape or a header can bring NUL or a lone surrogate
        _refuse_unstorable_text(payload)
    try:
        return spec.adapter.validate_python(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise Rejected(
            f"does not match {'/'.join(t.__name__ for t in spec.value_types)}: {problems[:MAX_REASON_CHARS]}") from exc


def _not_a_json_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON number")


def _refuse_unstorable_text(payload: dict) -> None:
    """PostgreSQL text cannot hold NUL and UTF-8 cannot encode a lone surrogate: such a message could be
    accepted here and then fail in every sink (and in its own dead-lettering), so it is refused at the door."""
    pending: list = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and (found := _UNSTORABLE_TEXT.search(value)):
            raise Rejected(f"text holds {found.group()!r} (NUL or a lone surrogate), which cannot be stored")


def dead_letter_for(
    service: str, topic: str, raw: bytes | None, reason: str, *, partition: int | None = None,
    offset: int | None = None, correlation_id: str | None = None,
) -> m.DeadLettered:
    MESSAGES_DEAD_LETTERED.labels(topic=topic).inc()
    # as text that can be stored and read back: bad UTF-8 and NUL bytes become U+FFFD
    text = (raw or b"").decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return m.DeadLettered(
        message_id=m.stable_id("dead-letter", service, topic, partition, offset, text),
        event_time=datetime.now(timezone.utc),
        correlation_id=correlation_id,
        service=service,
        source_topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        raw_value=text[:m.MAX_TEXT_CHARS],
    )


@dataclass(frozen=True)
class Refused:
    """A consumed record that is not a message of its topic, with the dead letter that says why (a wrapper, not
    the DeadLettered itself: a consumer of the dead-letter topic accepts DeadLettered messages)."""

    dead_letter: m.DeadLettered


def accept_record(
    service: str, spec: TopicSpec, value: bytes | None, headers: Sequence[tuple[str, bytes]], *, partition: int,
    offset: int,
) -> m.Message | Refused:
    """One consumed record as its typed message or, refused, with the dead letter that says why: what every
    consumer does first, whichever client read the record."""
    try:
        return decode(spec, value, headers)
    except Rejected as exc:
        cid = dict(headers).get(CORRELATION_HEADER)
        log.warning("message.rejected", topic=spec.name, offset=offset, reason=str(exc))
        return Refused(dead_letter_for(service, spec.name, value, str(exc), partition=partition, offset=offset,
                                       correlation_id=cid.decode(errors="replace") if cid else None))


def handler_failed(
    service: str, topic: str, raw: bytes | None, exc: Exception, *, partition: int, offset: int,
    correlation_id: str | None,
) -> m.DeadLettered:
    """The dead letter of an accepted message its handler failed on (the failure logged with its traceback):
    the message is set aside with the reason and the stream goes on."""
    log.exception("message.handler_failed", topic=topic, offset=offset)
    return dead_letter_for(service, topic, raw, f"{service} failed on it: {type(exc).__name__}: {exc}",
                           partition=partition, offset=offset, correlation_id=correlation_id)


async def _retry_connect(start, what: str, timeout_seconds: float = 60.0) -> None:
    """Brokers restart and start slowly; keep trying with backoff instead of failing at the first refusal."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((KafkaConnectionError, OSError)),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(timeout_seconds),
        reraise=True,
    ):
        with attempt:
            await start()
    log.debug("kafka.connected", client=what)


class Publisher:
    """An aiokafka producer that speaks messages."""

    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 5):
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, linger_ms=linger_ms, acks="all", enable_idempotence=False,
            max_batch_size=512 * 1024,
        )

    async def start(self) -> None:
        await _retry_connect(self._producer.start, "producer")

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> "Publisher":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def publish(self, topic: str, message: m.Message) -> None:
        value, key, headers = encode(message)
        await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        MESSAGES_PUBLISHED.labels(topic=topic).inc()

    async def publish_many(self, topic: str, messages: Iterable[m.Message]) -> int:
        """Send in order without waiting per record; return once all are acknowledged.

        Records are packed into record batches per partition (the key picks the partition exactly as a
        single send would), which costs a third of one `send` per record; a record too large for a batch
        of its own still goes alone, after the records before it."""
        partitions: list[int] | None = None
        partition_of: dict[bytes, int] = {}
        builders: dict[int, Any] = {}
        futures = []
        count = 0
        for message in messages:
            if partitions is None:
                partitions = sorted(await self._producer.partitions_for(topic))
            value, key, headers = encode(message)
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = DefaultPartitioner()(key, partitions, partitions)
            builder = builders.get(partition) or self._producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                if builder.record_count():
                    futures.append(await self._send_batch(builder, topic, partition))
                    builder = self._producer.create_batch()
                if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    futures.append(
                        await self._producer.send(topic, value, key=key, headers=headers, partition=partition))
            builders[partition] = builder
            count += 1
        for partition, builder in builders.items():
            if builder.record_count():
                futures.append(await self._send_batch(builder, topic, partition))
        if futures:
            await asyncio.gather(*futures)
        MESSAGES_PUBLISHED.labels(topic=topic).inc(count)
        return count

    async def _send_batch(self, builder: Any, topic: str, partition: int) -> asyncio.Future:
        builder.close()
        return await self._producer.send_batch(builder, topic, partition=partition)


class Received(NamedTuple):  # one per record of a replay: a tuple is made in a fifth of a frozen dataclass's time
    message: m.Message
    topic: str
    partition: int
    offset: int
    recorded_ms: int | None = None  # the record's timestamp: wall-clock when it was published, epoch ms
    value: bytes | None = None  # the record as it came, for its dead letter should handling the message fail


# For consumers on the live path: a new record is read within this, and an idle consumer asks 50 times a second.
LIVE_FETCH_WAIT_MS = 20


class TypedConsumer:
    """Consumes topics as typed messages; bad records go to the dead-letter topic and consumption goes on.

    The topics named in `held_back` are read only while the others have nothing waiting: a replay publishes
    a month of flux in seconds, and read as fast as it comes it would run ahead of the flares and forecasts of
    the same hours, which the services must know before the flux moves their clock past them.

    `fetch_max_wait_ms` is how long the broker may hold a fetch that finds nothing new. The embedded broker
    holds it that long even when a record arrives meanwhile, so a consumer on the live path asks for less."""

    def __init__(
        self, bootstrap_servers: str, specs: Sequence[TopicSpec], *, group_id: str | None, service: str,
        dead_letter_topic: str, publisher: Publisher, from_beginning: bool = True, held_back: Sequence[str] = (),
        fetch_max_wait_ms: int = 500,
    ):
        self._specs = {spec.name: spec for spec in specs}
        self._held_back = set(held_back)
        self._service = service
        self._dead_letter_topic = dead_letter_topic
        self._publisher = publisher
        self.rejected = 0
        self._consumer = AIOKafkaConsumer(
            *self._specs,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._lag = ConsumerLag(self._consumer.highwater)
        self._uncommitted = False

    async def start(self) -> None:
        await _retry_connect(self._consumer.start, "consumer")

    async def stop(self) -> None:
        await self._consumer.stop()

    async def commit(self) -> None:
        """Commit what the batches so far have yielded; nothing to do when no record came since the last."""
        if self._uncommitted:
            await self._consumer.commit()
            self._uncommitted = False

    def lag(self, tp: Any) -> int | None:
        """Records of the partition not yet yielded; None before its first, or while it is not assigned."""
        return self._lag.lag(tp)

    async def batches(self, timeout_ms: int = 500, max_records: int = 2000) -> AsyncIterator[list[Received]]:
        """Yield lists of accepted messages in partition order; an empty list when nothing arrived in time. The
        batches end when the consumer is stopped."""
        while True:
            try:
                await self._hold_back()
                polled = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            except ConsumerStoppedError:  # stopped (the service is shutting down): no more batches
                return
            accepted: list[Received] = []
            for tp, records in polled.items():
                MESSAGES_CONSUMED.labels(topic=tp.topic).inc(len(records))
                spec = self._specs[tp.topic]
                for record in records:
                    message = accept_record(self._service, spec, record.value, record.headers,
                                            partition=record.partition, offset=record.offset)
                    if isinstance(message, Refused):
                        await self._refuse(message)
                        continue
                    recorded = record.timestamp if record.timestamp is not None and record.timestamp > 0 else None
                    accepted.append(Received(message, record.topic, record.partition, record.offset, recorded,
                                             record.value))
                if records:
                    self._lag.read(tp, records[-1].offset)
                    self._uncommitted = True
            yield accepted

    async def _hold_back(self) -> None:
        if not self._held_back:
            return
        assigned = self._consumer.assignment()
        held = [tp for tp in assigned if tp.topic in self._held_back]
        behind = [tp for tp in assigned if tp.topic not in self._held_back and await self._waiting(tp)]
        if behind:
            self._consumer.pause(*held)
        else:
            self._consumer.resume(*held)

    async def _waiting(self, tp: Any) -> bool:
        """Has the partition records not yet read? Until its first fetch tells its end, it may have."""
        end = self._consumer.highwater(tp)
        return end is None or await self._consumer.position(tp) < end

    async def _refuse(self, refused: Refused) -> None:
        self.rejected += 1
        await self._publisher.publish(self._dead_letter_topic, refused.dead_letter)


async def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Safe to run again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await _retry_connect(admin.start, "admin")
    specs = list(specs)
    _ENSURED_TOPICS.update(spec.name for spec in specs)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            new = [
                NewTopic(
                    spec.name, spec.partitions, 1,
                    topic_configs={"cleanup.policy": spec.cleanup_policy, **spec.config},
                )
                for spec in missing
            ]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [spec.name for spec in missing]
    finally:
        await admin.close()
