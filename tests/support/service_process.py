"""One service, `python -m services.<name>`, run as a subprocess against the test stack: started, polled,
asked for its health, killed, restarted and stopped the same way by every test that needs a real process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Sequence, TypeVar

import httpx
import psutil

from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry
from tests.conftest import PROJECT_ROOT, service_env
from tests.support.ports import free_test_port

# The setting that names each service's HTTP port, for the services that answer on /health.
HTTP_PORT_SETTING = {"predictor": "API_PORT", "evaluator": "EVALUATOR_PORT", "gatekeeper": "GATEKEEPER_PORT",
                     "dashboard": "UI_PORT"}
# The trainer and the live ingestor serve only Prometheus' /metrics, on a port of their own.
METRICS_PORT_SETTING = {"trainer": "TRAINER_METRICS_PORT", "ingestor": "INGESTOR_METRICS_PORT"}
LOG_TAIL_CHARS = 4000
S = TypeVar("S", bound="ServiceProcess")


class ServiceProcess:
    """One service as a subprocess (started by `start()` or `running()`); its output appended to `log` across
    restarts, its API (if any) at `url`.

    The environment is the test stack's (`service_env(settings)`) plus `env`; a service with an HTTP API gets a
    free port unless `env` names one. `command` replaces `-m services.<name>` for a one-shot command such as
    `flare ingest` (`-m flare_cli.main ingest ...`)."""

    def __init__(self, name: str, settings: Settings, log: Path, *, command: Sequence[str] = (), **env: str):
        self.name = name
        self.command = list(command) or ["-m", f"services.{name}"]
        self.settings = settings
        self.log = log
        self.env = {**service_env(settings), "LOG_LEVEL": "info", **env}
        if name in METRICS_PORT_SETTING:
            self.env.setdefault(METRICS_PORT_SETTING[name], str(free_test_port()))
        port_setting = HTTP_PORT_SETTING.get(name)
        if port_setting:
            self.env.setdefault(port_setting, str(free_test_port()))
        self.url = f"http://127.0.0.1:{self.env[port_setting]}" if port_setting else None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, *self.command], cwd=PROJECT_ROOT,
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:] if self.log.exists() else ""

    async def until(self, condition, what: str, timeout: float = 180.0, interval: float = 0.5):
        """Poll `condition` (an async callable) until it returns something truthy; fail with the log's tail
        when the time is up or the process has died."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await condition()
            if value:
                return value
            if not self.alive or asyncio.get_running_loop().time() > deadline:
                state = "still running" if self.alive else f"exit code {self.process.poll()}"
                raise AssertionError(f"no {what} within {timeout:.0f} s ({self.name} {state}); its log:\n"
                                     f"{self.log_tail()}")
            await asyncio.sleep(interval)

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self._request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs) -> httpx.Response:
        return await self._request("POST", path, **kwargs)

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        if self.url is None:
            raise ValueError(f"the {self.name} has no HTTP API")
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0) as client:
            return await client.request(method, path, **kwargs)

    async def health(self) -> dict | None:
        """The service's /health answer, or None while it does not answer 200."""
        try:
            response = await self.get("/health")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    async def ready(self, timeout: float = 120.0) -> None:
        """Wait until the API answers on /health (for a service with one)."""
        await self.until(self.health, "answer on /health", timeout=timeout)

    async def exited(self, timeout: float = 120.0) -> int:
        """Wait for the process to end by itself; its exit code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.alive:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the {self.name} still runs after {timeout:.0f} s; its log:\n{self.log_tail()}")
            await asyncio.sleep(0.5)
        return self.process.wait()

    def kill(self) -> None:
        """A crash: SIGKILL, no chance to commit offsets, flush or leave the consumer group."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        """Start again with the same environment (after a kill or stop; a running process is stopped first)."""
        self.stop()
        self.start()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def rss(self) -> int:
        """Resident memory in bytes of the process and all its children."""
        parent = psutil.Process(self.process.pid)
        processes = [parent, *parent.children(recursive=True)]
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total


@asynccontextmanager
async def running(service: S) -> AsyncIterator[S]:
    """The service started on its test's topics (created first), ready when it has an API; stopped after."""
    await ensure_topics(service.settings.kafka_bootstrap_servers, topic_registry(service.settings).values())
    service.start()
    try:
        if service.url:
            await service.ready()
        yield service
    finally:
        service.stop()
