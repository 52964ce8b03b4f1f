"""compose.yaml cannot be started here (no Docker engine), so it is kept honest by reading it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from flare_cli.main import build_parser
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
APP_SERVICES = {name: spec for name, spec in COMPOSE["services"].items() if name not in ("kafka", "postgres")}


def settings_variables() -> set[str]:
    """Every environment variable the settings read: top-level fields, and nested ones as SECTION__FIELD."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            names |= {f"{name.upper()}__{nested.upper()}" for nested in annotation.model_fields}
    return names


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_every_service_command_exists_in_the_project(service):
    command = APP_SERVICES[service]["command"]
    if command[:2] == ["python", "-m"]:
        module = command[2]
        assert (ROOT / module.replace(".", "/") / "__main__.py").exists(), f"{service}: no module {module}"
    else:
        assert command[0] == "flare"
        subcommands = build_parser()._subparsers._group_actions[0].choices
        assert command[1] in subcommands, f"{service}: flare has no sub-command {command[1]!r}"


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_every_variable_a_service_sets_is_read_by_the_settings(service):
    unknown = set(APP_SERVICES[service]["environment"]) - settings_variables()
    assert not unknown, f"{service} sets variables no setting reads: {sorted(unknown)}"


def test_published_ports_agree_with_the_settings_defaults():
    defaults = Settings.model_fields
    expected = {
        "predictor": defaults["api_port"].default,
        "evaluator": defaults["evaluator_port"].default,
        "gatekeeper": defaults["gatekeeper_port"].default,
        "dashboard": defaults["ui_port"].default,
    }
    for service, port in expected.items():
        published = APP_SERVICES[service]["ports"][0]
        numbers = [int(n) for n in re.findall(r":-?(\d+)", published)] or [int(published.rsplit(":", 1)[1])]
        assert set(numbers) == {port}, f"{service} publishes {published}, settings default {port}"
        assert published.startswith("127.0.0.1:"), "loopback unless configured otherwise"


def test_kafka_is_a_single_kraft_node_with_replication_one():
    env = COMPOSE["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    factors = {k: v for k, v in env.items() if "REPLICATION_FACTOR" in k or k.endswith("MIN_ISR")}
    assert factors and set(factors.values()) == {"1"}


def test_infrastructure_has_health_checks_volumes_and_restart_policies():
    for name in ("kafka", "postgres"):
        assert "healthcheck" in COMPOSE["services"][name]
    assert "pgdata" in COMPOSE["volumes"]
    for name, spec in APP_SERVICES.items():
        assert spec["restart"] in ("unless-stopped", "no"), name
        assert spec["env_file"] == ".env"


def test_secrets_are_never_written_into_compose():
    text = (ROOT / "compose.yaml").read_text()
    assert "DB_PASSWORD: ${DB_PASSWORD:?" in text
    assert not re.search(r"(PASSWORD|TOKEN|API_KEY)S?:\s*[\"']?[A-Za-z0-9]{6,}", text)


def test_the_services_read_the_bundled_sample_unless_told_otherwise():
    """A clone has nothing beside it: the data mount defaults to the sample inside the repository."""
    for name, spec in APP_SERVICES.items():
        mounts = [volume for volume in spec["volumes"] if volume.endswith(":/data:ro")]
        assert mounts == ["${DATA_HOST_DIR:-./data/sample}:/data:ro"], name
        assert spec["environment"]["DATA_DIR"] == "/data", name
    assert (ROOT / "data" / "sample" / "MANIFEST.json").is_file()
