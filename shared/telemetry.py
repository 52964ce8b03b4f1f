"""Prometheus metrics common to every service, read by operators' Prometheus at each service's `/metrics`.

The services with a REST API serve `/metrics` from it (`shared.http.serve_metrics`, which also times every
request); the trainer and the live ingestor, which have none, serve it on a port of their own
(`start_metrics_server`). One process is one service, so no metric carries a service label: Prometheus adds
`job` and `instance` when it scrapes. Counting happens once, in the shared consume, publish and dead-letter
code, never per service.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import prometheus_client
from prometheus_client import Counter, Gauge

from shared.logging import get_logger

log = get_logger(__name__)

# the `_created` series of every counter and histogram only double the scrape
prometheus_client.disable_created_metrics()

MESSAGES_CONSUMED = Counter(
    "flare_messages_consumed", "Records read from a topic (accepted or not)", ["topic"])
MESSAGES_DEAD_LETTERED = Counter(
    "flare_messages_dead_lettered",
    "Records set aside on the dead-letter topic, by the topic they came from (for the ingestor: its source)",
    ["topic"])
MESSAGES_PUBLISHED = Counter("flare_messages_published", "Messages handed to the producer for a topic", ["topic"])
CONSUMER_LAG = Gauge(
    "flare_consumer_lag_messages", "Records on a partition after the last one this service read",
    ["topic", "partition"])


class ConsumerLag:
    """The lag gauge of one consumer: the partition's high watermark less the offset after the last record read,
    computed when Prometheus scrapes (so a consumer that stopped reading shows its lag growing). `highwater` is
    the client's (aiokafka's or faust's); it is unknown until the first fetch of a partition."""

    def __init__(self, highwater: Callable[[Any], int | None]):
        self._highwater = highwater
        self._next: dict[Any, int] = {}

    def read(self, tp: Any, offset: int) -> None:
        if tp not in self._next:
            CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set_function(lambda: self._lag(tp))
        self._next[tp] = offset + 1

    def lag(self, tp: Any) -> int | None:
        """Records of the partition not yet read; None before the first was read or the first fetch."""
        try:
            end = self._highwater(tp)
        except Exception:  # the partition was revoked meanwhile (the clients assert it is assigned)
            end = None
        return None if end is None or tp not in self._next else max(end - self._next[tp], 0)

    def _lag(self, tp: Any) -> float:
        lag = self.lag(tp)
        return math.nan if lag is None else float(lag)


def start_metrics_server(port: int, host: str) -> Callable[[], None]:
    """Serve `/metrics` on `host:port` from a thread, for a service without a REST API; returns its stop.
    A port already taken is logged and the service runs on without metrics: training or ingesting matters more
    than being scraped (and Prometheus shows the target down)."""
    try:
        server, thread = prometheus_client.start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics.unavailable", host=host, port=port, error=str(exc))
        return lambda: None
    log.info("metrics.serving", url=f"http://{host}:{port}/metrics")

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
