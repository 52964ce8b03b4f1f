"""Running `python -m services.predictor` against the test stack, and reading what it produced."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import httpx
from aiokafka import AIOKafkaConsumer

from services.ingestor.pipeline import Ingestor
from shared import infra
from shared.kafka import Publisher, decode, ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry
from tests.conftest import PROJECT_ROOT, service_env


class PredictorProcess:
    """One run of the predictor; its REST API at `url`, its output in `log`."""

    def __init__(self, env: dict[str, str], log: Path, port: int):
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "services.predictor"], cwd=PROJECT_ROOT, env=env,
                                            stdout=out, stderr=subprocess.STDOUT)
        self.client = httpx.AsyncClient(base_url=self.url, timeout=30.0)

    async def until(self, condition, what: str, timeout: float = 180.0):
        """Poll `condition` (an async callable) until it returns something truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await condition()
            if value:
                return value
            if self.process.poll() is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {what} (predictor exit code {self.process.poll()}); its log:\n"
                                     f"{self.log.read_text()[-4000:]}")
            await asyncio.sleep(0.5)

    async def health(self) -> dict | None:
        try:
            response = await self.client.get("/health")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    async def stop(self) -> None:
        await self.client.aclose()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@asynccontextmanager
async def predictor_running(settings: Settings, log: Path, **env_overrides: str) -> AsyncIterator[PredictorProcess]:
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    port = infra.free_port()
    env = service_env(settings)
    env.update(PREDICTOR__APP_NAME=f"predictor-{uuid.uuid4().hex[:8]}", API_PORT=str(port), LOG_LEVEL="info")
    env.update(env_overrides)
    predictor = PredictorProcess(env, log, port)
    try:
        await predictor.until(predictor.health, "answer on /health", timeout=120)
        yield predictor
    finally:
        await predictor.stop()


async def ingest(settings: Settings, pool, path: Path):
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        return await Ingestor(settings, pool, publisher).ingest_file(path)


async def read_forecasts(settings: Settings, expected: int, timeout: float = 120.0) -> list:
    """The forecasts topic from the beginning: at least `expected` messages, then whatever else arrives within
    a short quiet period (so a test sees extra messages too)."""
    spec = topic_registry(settings)["forecasts"]
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                batch = await consumer.getmany(timeout_ms=1500)
                got = [r for rs in batch.values() for r in rs]
                records += got
                if len(records) >= expected and not got:
                    break
    finally:
        await consumer.stop()
    return [decode(spec, r.value, r.headers) for r in records]
