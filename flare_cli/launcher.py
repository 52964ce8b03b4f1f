"""Starting and stopping the services as separate, detached processes recorded in the runtime file."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flare_cli.context import operator_token
from shared.paths import project_root

if TYPE_CHECKING:
    from shared import infra
    from shared.settings import Settings

# Start order: the consumers of a topic before its producers' bulk traffic, the API services last.
SERVICES = ("gatekeeper", "trainer", "evaluator", "predictor", "ingestor", "dashboard")


def available_services() -> list[str]:
    root = project_root()
    return [name for name in SERVICES if (root / "services" / name / "__main__.py").exists()]


def service_environment(settings: Settings, endpoints: infra.Endpoints,
                        extra: dict[str, str] | None = None) -> dict[str, str]:
    """The service sees the same broker, database and folders as the command that started it, and accepts the
    operator token the CLI presents."""
    env = dict(os.environ)
    if not settings.operator_tokens:
        env["OPERATOR_TOKENS"] = json.dumps([operator_token(settings)])
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=endpoints.kafka_bootstrap_servers,
        DATABASE_URL=endpoints.database_url,
        STATE_DIR=str(settings.state_dir),
        MODEL_PATH=str(settings.model_path),
        DATA_DIR=str(settings.data_dir),
        FLARE_HOME=str(project_root()),
    )
    env.update(extra or {})
    return env


def _services(state_dir: Path) -> dict[str, dict]:
    from shared import infra

    return dict(infra.read_runtime(state_dir).get("services") or {})


def service_running(state_dir: Path, name: str) -> bool:
    from shared import infra

    record = _services(state_dir).get(name)
    return bool(record) and infra.process_alive(record.get("pid"), f"services.{name}")


def start_service(settings: Settings, endpoints: infra.Endpoints, name: str, args: list[str] | None = None,
                  extra_env: dict[str, str] | None = None) -> dict:
    """Start `python -m services.<name>` unless it already runs; return its record."""
    from shared import infra

    if service_running(settings.state_dir, name):
        return _services(settings.state_dir)[name]
    log_file = settings.state_dir / "logs" / f"{name}.log"
    pid = infra.spawn_detached(
        [sys.executable, "-m", f"services.{name}", *(args or [])], log_file,
        env=service_environment(settings, endpoints, extra_env), cwd=project_root(),
    )
    record = {"pid": pid, "log": str(log_file), "started_at": time.time()}
    services = _services(settings.state_dir)
    services[name] = record
    infra.update_runtime(settings.state_dir, "services", services)
    return record


def stop_service(state_dir: Path, name: str) -> bool:
    from shared import infra

    services = _services(state_dir)
    record = services.pop(name, None)
    stopped = False
    if record and infra.process_alive(record.get("pid"), f"services.{name}"):
        infra.terminate(record["pid"])
        stopped = True
    infra.update_runtime(state_dir, "services", services or None)
    return stopped


def stop_all_services(state_dir: Path) -> list[str]:
    return [name for name in reversed(SERVICES) if name in _services(state_dir) and stop_service(state_dir, name)]
