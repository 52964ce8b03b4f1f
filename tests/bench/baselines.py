"""The bare minimum the benchmarks measure their figures against, on the same broker in the same run, and the
one way latencies are recorded (p50 and p99, each beside the baseline's)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.kafka import ensure_topics
from shared.topics import TopicSpec
from tests.conftest import PROJECT_ROOT


def p50_p99_ms(seconds: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
    return float(p50), float(p99)


def record_latencies(bench_figures, area: str, name: str, latencies: list[float], baseline_name: str,
                     baseline_latencies: list[float], note: str = "") -> None:
    """Two figures, p50 and p99 of `latencies` in ms, each beside the same percentile of the baseline."""
    for label, value, base in zip(("p50", "p99"), p50_p99_ms(latencies), p50_p99_ms(baseline_latencies)):
        bench_figures(area, f"{name} {label}", value, "ms", baseline=(f"{baseline_name} {label}", base), note=note)


async def scratch_topic(bootstrap: str, prefix: str) -> str:
    """A new one-partition topic for a baseline's records, created up front (auto-creation on the first send
    can outlast the producer's metadata timeout on a busy broker)."""
    name = f"{prefix}.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(name, (), "none", description="raw benchmark records, never decoded")])
    return name


async def bare_consume_seconds(bootstrap: str, topics: Sequence[str], count: int, echo: bool = False) -> float:
    """Seconds a bare aiokafka loop takes to read `count` records of `topics` from the start and parse their
    JSON (and, with `echo`, produce each one again to a topic of its own)."""
    echo_to = await scratch_topic(bootstrap, "bench.bare-echo") if echo else None
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        began, seen = time.perf_counter(), 0
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=500, max_records=2000)).values():
                for record in records:
                    parsed = json.loads(record.value)
                    if echo_to is not None:
                        await producer.send(echo_to, json.dumps(parsed).encode())
                    seen += 1
        await producer.flush()
        return time.perf_counter() - began
    finally:
        await consumer.stop()
        await producer.stop()


async def faust_floor_seconds(bootstrap: str, topics: list[str], count: int, timeout: float = 600.0) -> float:
    """Seconds a bare faust worker (`tests.bench.faust_floor`) takes from its first record to its `count`-th,
    reading `topics` from the start in batches as the services do."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.faust_floor", bootstrap, str(count), *topics,
        cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise AssertionError(f"the bare faust worker exited with {process.returncode}: {out.decode()[-2000:]}")
    return float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])
