"""An operator brings the system up, looks at it from another shell, takes it down and up again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

FLARE = str(Path(sys.executable).parent / "flare")


@pytest.fixture
def operator_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "DB_HOST")}
    env.update(STATE_DIR=str(tmp_path / "var"), MODEL_PATH=str(tmp_path / "models"),
               FLARE_ENV_FILE=str(tmp_path / ".env"))
    yield env
    subprocess.run([FLARE, "down"], env=env, capture_output=True, timeout=120)


def flare(env, *args, check=True):
    result = subprocess.run([FLARE, *args], env=env, capture_output=True, text=True, timeout=180, cwd=PROJECT_ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"flare {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def test_up_status_down_up_keeps_the_data(operator_env, tmp_path):
    first = flare(operator_env, "up", "--infra-only")
    assert "(embedded)" in first.stdout and "0001_initial.sql" in first.stdout
    runtime = json.loads((tmp_path / "var" / "runtime.json").read_text())

    again = flare(operator_env, "up", "--infra-only")
    assert "none (up to date)" in again.stdout and "none (all exist)" in again.stdout
    assert json.loads((tmp_path / "var" / "runtime.json").read_text()) == runtime, "a second up reuses what runs"

    status = flare(operator_env, "status")
    assert status.stdout.count("running") == 2

    flare(operator_env, "db-shell", "-c",
          "INSERT INTO flare_ingestion_log (run_id, source, started_at, status) VALUES ('run-1', 'test', now(), 'ok')")
    flare(operator_env, "down")
    stopped = flare(operator_env, "status", check=False)
    assert stopped.returncode == 1 and stopped.stdout.count("stopped") == 2

    flare(operator_env, "up", "--infra-only")
    count = flare(operator_env, "db-shell", "-tAc", "select count(*) from flare_ingestion_log where run_id = 'run-1'")
    assert count.stdout.strip() == "1"


def test_check_config_names_the_broken_field(operator_env, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("thresholds:\n  min_precision: high\n")
    operator_env["FLARE_CONFIG"] = str(config)
    result = flare(operator_env, "check-config", check=False)
    assert result.returncode == 1
    assert "FAIL  config.yaml" in result.stdout and "thresholds.min_precision" in result.stdout
    assert "FAIL  .env" in result.stdout, "no .env in this fresh folder"


def test_check_config_passes_on_a_running_system(operator_env, tmp_path):
    (tmp_path / ".env").write_text((PROJECT_ROOT / "deploy" / "env.example").read_text())
    flare(operator_env, "up", "--infra-only")
    result = flare(operator_env, "check-config", check=False)
    assert result.returncode == 0, result.stdout
    assert "PASS  database" in result.stdout and "PASS  disk" in result.stdout
