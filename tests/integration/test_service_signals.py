"""An operator's `flare down` (or systemd, or Kubernetes) sends SIGTERM: every service stops by itself, closes what
it holds and exits 0, whether faust, asyncio or uvicorn runs its loop (shared.serving owns the signals)."""

from __future__ import annotations

import asyncio

import pytest

from shared.kafka import ensure_topics
from shared.topics import topic_registry
from tests.support.service_process import ServiceProcess

# what each service logs once it is up, for the services without an API to ask
STARTED_LINE = {"trainer": "trainer.started"}
# what each service logs once it has closed its consumers (the faust workers say it through their exit code)
STOPPED_LINE = {"trainer": "trainer.stopped", "gatekeeper": "gatekeeper.stopped", "dashboard": "dashboard.stopped"}
SERVICES = ("predictor", "evaluator", "gatekeeper", "dashboard", "trainer")


@pytest.fixture
def services(settings, tmp_path):
    started = {name: ServiceProcess(name, settings, tmp_path / f"{name}.log") for name in SERVICES}
    yield started
    for service in started.values():
        if service.process is not None:
            service.kill()


async def _is_up(service: ServiceProcess):
    if service.url:
        return await service.health()
    return STARTED_LINE[service.name] in service.log_tail()


async def test_every_service_sent_sigterm_stops_cleanly_and_exits_0(settings, services):
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    for service in services.values():
        service.start()
    await asyncio.gather(*(service.until(lambda s=service: _is_up(s), "start", timeout=180)
                           for service in services.values()))

    for service in services.values():
        service.process.terminate()
    codes = {name: await service.exited(timeout=60) for name, service in services.items()}

    assert codes == {name: 0 for name in SERVICES}, {name: services[name].log_tail() for name in SERVICES
                                                     if codes[name] != 0}
    for name, line in STOPPED_LINE.items():
        assert line in services[name].log.read_text(), services[name].log_tail()
    for service in services.values():
        assert "Traceback" not in service.log.read_text(), service.log_tail()
