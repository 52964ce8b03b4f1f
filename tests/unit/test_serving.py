"""How a service runs its tasks and API and stops them: what `shared.serving.supervise` promises each service,
and how a faust service's API holds requests off until the service is ready."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from shared.serving import ServedWhenReady, supervise


class FakeApi:
    """An API server that serves until asked to exit, as uvicorn does, finishing its requests first."""

    def __init__(self):
        self.should_exit = False
        self.finished = False

    async def serve(self):
        while not self.should_exit:
            await asyncio.sleep(0.01)
        self.finished = True


async def forever():
    await asyncio.Event().wait()


async def test_a_stop_lets_the_api_finish_and_cancels_every_task():
    stop, api = asyncio.Event(), FakeApi()
    consuming = asyncio.create_task(forever())
    supervised = asyncio.create_task(supervise([consuming], stop, api=api))
    await asyncio.sleep(0.05)
    assert not supervised.done()

    stop.set()
    await asyncio.wait_for(supervised, 5)
    assert api.finished and consuming.cancelled()


async def test_a_task_that_fails_stops_the_service_with_its_error():
    async def consume():
        await asyncio.sleep(0.01)
        raise ConnectionError("broker gone")

    api, relay = FakeApi(), asyncio.create_task(forever())
    with pytest.raises(ConnectionError, match="broker gone"):
        await asyncio.wait_for(supervise([asyncio.create_task(consume()), relay], asyncio.Event(), api=api), 5)
    assert api.finished and relay.cancelled()


async def test_a_task_that_ends_by_itself_ends_the_service():
    async def one_batch():
        await asyncio.sleep(0.01)

    relay = asyncio.create_task(forever())
    await asyncio.wait_for(supervise([asyncio.create_task(one_batch()), relay], asyncio.Event()), 5)
    assert relay.cancelled()


async def test_a_service_that_is_not_ready_answers_503_and_then_its_api_answers():
    api = FastAPI()

    @api.get("/health")
    async def health():
        return {"status": "ok"}

    ready = asyncio.Event()
    served = httpx.AsyncClient(transport=httpx.ASGITransport(app=ServedWhenReady(api, ready)), base_url="http://t")
    async with served as client:
        starting = await client.get("/health")
        ready.set()
        started = await client.get("/health")
    assert starting.status_code == 503 and starting.headers["retry-after"] == "1"
    assert starting.json() == {"detail": "starting: not ready to answer yet"}
    assert started.status_code == 200 and started.json() == {"status": "ok"}
