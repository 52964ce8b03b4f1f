"""faust-streaming helpers: one way to build a service's app and to accept records or dead-letter them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Awaitable

import faust

from shared import messages as m
from shared.kafka import Refused, accept_record, encode
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
