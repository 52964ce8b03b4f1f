"""`python -m services.gatekeeper` against the test stack with known operators and viewers, and the `flare`
commands an operator drives it with."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from shared.settings import Settings
from tests.conftest import PROJECT_ROOT
from tests.support.service_process import ServiceProcess, running

OPERATORS = ["alice:alice-secret", "bob:bob-secret"]
VIEWERS = ["carol:carol-secret"]
GATEKEEPER_TABLES = "retrain_triggers, gatekeeper_outbox, gatekeeper_clock"


class GatekeeperProcess(ServiceProcess):
    """`python -m services.gatekeeper` with known operators and viewers, and the `flare` commands that drive it."""

    def __init__(self, settings: Settings, log: Path, **overrides: str):
        super().__init__("gatekeeper", settings, log, OPERATOR_TOKENS=json.dumps(OPERATORS),
                         VIEWER_TOKENS=json.dumps(VIEWERS),
                         GATEKEEPER__CONSUMER_GROUP=f"gatekeeper-{uuid.uuid4().hex[:8]}", **overrides)

    def flare(self, *args: str, token: str | None = OPERATORS[0], timeout: float = 60,
              **env: str) -> subprocess.CompletedProcess:
        """A `flare` command as an operator runs it, finding the API from the same settings; with no token,
        from a shell that knows none."""
        command_env = {**self.env, "FLARE_TOKEN": token or "", **env}
        if token is None:
            del command_env["OPERATOR_TOKENS"], command_env["VIEWER_TOKENS"]
        return subprocess.run([sys.executable, "-m", "flare_cli.main", *args], check=False, cwd=PROJECT_ROOT,
                              env=command_env, capture_output=True, text=True, timeout=timeout)


@asynccontextmanager
async def gatekeeper_running(settings: Settings, pool, log: Path, **overrides: str) -> AsyncIterator[GatekeeperProcess]:
    async with pool.acquire() as conn:
        await conn.execute(f"TRUNCATE {GATEKEEPER_TABLES}")
    async with running(GatekeeperProcess(settings, log, **overrides)) as gatekeeper:
        yield gatekeeper
