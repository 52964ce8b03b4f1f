"""The least a faust worker does with a stream: one agent over the given topics, taking events in batches as the
services do, parsing each value as JSON and nothing more. The benchmarks run it on the records a service has just
been timed on, so that a service's figure stands beside what faust itself manages on the same broker.

`python -m tests.bench.faust_floor BOOTSTRAP COUNT TOPIC...` reads the topics from the start and prints, as JSON,
the seconds from its first record to its COUNT-th, then exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import faust

from shared.serving import run_faust_worker
from shared.streaming import BULK_BATCH

BATCH_SECONDS = 0.05


def build_app(bootstrap: str, count: int, topics: list[str]) -> faust.App:
    app = faust.App(f"bench-faust-floor-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, topic_partitions=1, consumer_auto_offset_reset="earliest",
                    datadir=f"/tmp/faust-floor-{os.getpid()}")
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    async def read(stream) -> None:
        began, seen = None, 0
        async for events in stream.take_events(BULK_BATCH, within=BATCH_SECONDS):  # as the services take theirs
            began = began or time.perf_counter()
            for event in events:
                json.loads(event.value)
            seen += len(events)
            if seen >= count:
                # to the descriptor: the worker has redirected sys.stdout to its logger
                os.write(1, json.dumps({"seconds": time.perf_counter() - began, "records": seen}).encode() + b"\n")
                os._exit(0)  # the figure is out; a worker's orderly shutdown takes seconds the caller need not wait

    app.agent(source, name="read")(read)
    return app


if __name__ == "__main__":
    bootstrap, count, *topic_names = sys.argv[1:]
    run_faust_worker(build_app(bootstrap, int(count), topic_names))
