"""A new user clones the project and runs the main command: in the clone, with nothing beside it, the
whole system comes up on embedded infrastructure, replays the bundled data, trains,
forecasts, scores, retrains and promotes by itself; `flare validate` passes on it and names the database check
once the database is stopped."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import infra
from shared.db import connect
from tests.conftest import PROJECT_ROOT
from tests.support.ports import free_test_port

FLARE = [sys.executable, "-m", "flare_cli.main"]
# Whatever would point the clone at this working tree's folders, or at a running system
NOT_INHERITED = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "DB_HOST", "STATE_DIR", "MODEL_PATH", "DATA_DIR",
                 "REFERENCE_DATA_DIR", "FLARE_DATA_HOME", "FLARE_HOME", "FLARE_CONFIG", "FLARE_ENV_FILE", "PYTHONPATH")


@pytest.fixture
def clone(tmp_path) -> Path:
    """The committed HEAD of the project, cloned into an empty folder: nothing beside it, no var/, no .env."""
    folder = tmp_path / "flare-plus"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(folder)], check=True, capture_output=True,
                   timeout=300)
    assert not (tmp_path / "shared").exists() and not (folder / ".env").exists()
    return folder.resolve()


@pytest.fixture
def new_user_env(clone):
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    ports = {name: str(free_test_port()) for name in ("API_PORT", "EVALUATOR_PORT", "GATEKEEPER_PORT", "UI_PORT",
                                                       "TRAINER_METRICS_PORT", "INGESTOR_METRICS_PORT")}
    # the venv's `flare` is an editable install of this working tree: the clone's own code comes first
    env.update(ports, PYTHONPATH=str(clone))
    yield env
    subprocess.run(FLARE + ["down"], env=env, capture_output=True, timeout=120, cwd=clone)


def run_flare(clone, env, *args, timeout=900):
    return subprocess.run(FLARE + list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=clone)


async def fetch(dsn: str, sql: str):
    conn = await connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def test_a_fresh_clone_runs_the_short_demo_through_the_whole_loop_and_validates(clone, new_user_env):
    code = subprocess.run([sys.executable, "-c", "import flare_cli, services, shared; "
                           "print(flare_cli.__file__, services.__file__, shared.__file__)"],
                          env=new_user_env, cwd=clone, capture_output=True, text=True, check=True)
    assert all(Path(path).resolve().is_relative_to(clone) for path in code.stdout.split()), code.stdout

    demo = run_flare(clone, new_user_env, "demo", "--short", "--exit-after-summary", "--timeout", "300")
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "==== Flare+ demo summary ====" in demo.stdout
    assert (clone / ".env").exists(), "the demo sets up .env from the template"
    assert any((clone / "models").glob("*.joblib")), "models are kept in the clone"

    runtime = json.loads((clone / "var" / "runtime.json").read_text())
    dsn = runtime["postgres"]["dsn"]
    forecasts = asyncio.run(fetch(dsn, "SELECT model_version, resolved_at, status FROM flare_prediction_log"
                                       " WHERE NOT shadow"))
    assert len(forecasts) >= 48, "hourly forecasts over the replayed days"
    assert all(row["model_version"].startswith("v") for row in forecasts)
    assert any(row["resolved_at"] is not None for row in forecasts), "forecasts are scored"
    history = [row["action"] for row in asyncio.run(fetch(dsn, "SELECT action FROM model_history ORDER BY id"))]
    assert "retrain_requested" in history and "promoted" in history[history.index("retrain_requested"):], history
    assert history.count("gate_verdict") == history.count("registered"), "every trained candidate is judged"
    promoted = {row["version"]
                for row in asyncio.run(fetch(dsn, "SELECT version FROM model_history WHERE action = 'promoted'"))}
    assert {row["model_version"] for row in forecasts} <= promoted, "forecasts come from promoted champions only"

    validate = run_flare(clone, new_user_env, "validate", timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "6 passed, 0 failed" in validate.stdout
    logged = asyncio.run(fetch(dsn, "SELECT count(*) AS n FROM flare_system_validation_log WHERE passed"))
    assert logged[0]["n"] >= 6

    pgdata = runtime["postgres"]["pgdata"]
    subprocess.run([infra._pg_bin("pg_ctl"), "-D", pgdata, "-w", "-m", "fast", "stop"], check=True,
                   capture_output=True, **infra._pg_run_as())
    broken = run_flare(clone, new_user_env, "validate", timeout=120)
    assert broken.returncode == 1
    assert "FAIL  database" in broken.stdout
