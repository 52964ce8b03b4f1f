"""Log lines as the services and the CLI write them: JSON lines naming the service and the record's correlation
id, secrets masked; a CLI that logs nothing never loads structlog, and one that logs gets its configuration."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

SERVICE_LOGS = """
from shared.logging import bind_correlation, configure_logging, get_logger
configure_logging("predictor")
log = get_logger("services.predictor.worker")
with bind_correlation("run-7"):
    with bind_correlation("record-8"):
        log.info("flux.received")
    log.info("forecast.issued", api_key="k-123", hours=3)
log.info("stream.idle")
log.debug("hidden at the info level")
"""

CLI_LOGS = """
import sys
from shared.logging import configure_logging, get_logger
log = get_logger("flare_cli")
configure_logging("cli", json_lines=True, level="warning", on_first_use=True)
print("structlog" in sys.modules, flush=True)
log.warning("nothing.running", state="empty")
log.info("below the cli's level")
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60, check=True)


def test_a_service_writes_one_json_object_per_line_with_its_name_and_the_correlation_id():
    inner, issued, idle = (json.loads(line) for line in run(SERVICE_LOGS).stderr.splitlines())
    assert {k: issued[k] for k in ("event", "service", "correlation_id", "level", "hours", "api_key")} == {
        "event": "forecast.issued", "service": "predictor", "correlation_id": "run-7", "level": "info", "hours": 3,
        "api_key": "***"}
    # a record handled inside another's handling has its own id; once both are done, lines carry none
    assert (inner["event"], inner["correlation_id"]) == ("flux.received", "record-8")
    assert idle["event"] == "stream.idle" and "correlation_id" not in idle


def test_the_cli_configures_structlog_when_it_first_logs_and_not_before():
    done = run(CLI_LOGS)
    assert done.stdout.strip() == "False"
    [line] = done.stderr.splitlines()
    record = json.loads(line)
    assert (record["event"], record["service"], record["level"], record["state"]) == (
        "nothing.running", "cli", "warning", "empty")
