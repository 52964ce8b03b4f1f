"""An operator starts the predictor in the background, finds it recorded, reads its log and stops it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import psutil

from shared import infra
from tests.conftest import PROJECT_ROOT, service_env
from tests.support.predictor_models import register_model
from tests.support.ports import free_test_port


def flare(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flare_cli.main", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


async def test_api_bg_starts_a_recorded_predictor_api_logs_shows_it_and_api_stop_stops_it(settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        champion = await register_model(conn, tmp_path / "models", status="champion")
    port = free_test_port()
    state = tmp_path / "var"
    env = {**service_env(settings), "STATE_DIR": str(state), "API_PORT": str(port),
           "PREDICTOR__APP_NAME": f"predictor-{uuid.uuid4().hex[:8]}"}

    started = flare(env, "api-bg")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout and champion in started.stdout
        record = json.loads((state / "runtime.json").read_text())["services"]["predictor"]
        assert psutil.pid_exists(record["pid"]) and record["log"] == str(state / "logs" / "predictor.log")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["models"]["champion"] == champion

        again = flare(env, "api-bg")
        assert "already running" in again.stdout and f"pid {record['pid']}" in again.stdout

        logs = flare(env, "api-logs", "-n", "200")
        assert logs.returncode == 0 and "predictor.ready" in logs.stdout
    finally:
        stopped = flare(env, "api-stop")
    assert "stopped the predictor" in stopped.stdout
    assert "predictor" not in (json.loads((state / "runtime.json").read_text()).get("services") or {})
    assert not infra.process_alive(record["pid"], "services.predictor")
    assert "not running" in flare(env, "api-stop").stdout
