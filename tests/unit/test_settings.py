"""Settings come from config.yaml, .env and the environment; a wrong value names its file and field."""

from __future__ import annotations

import pytest

from shared.settings import ConfigError, load_settings


@pytest.fixture
def config_files(tmp_path, monkeypatch):
    config, env = tmp_path / "config.yaml", tmp_path / ".env"
    monkeypatch.setenv("FLARE_CONFIG", str(config))
    monkeypatch.setenv("FLARE_ENV_FILE", str(env))
    for name in ("API_PORT", "UI_PORT", "MODEL_PATH", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "DB_HOST"):
        monkeypatch.delenv(name, raising=False)
    return config, env


def test_defaults_match_the_deployment_plan(config_files):
    settings = load_settings()
    assert (settings.api_port, settings.ui_port, settings.evaluator_port, settings.gatekeeper_port) == (
        5001, 7860, 5002, 5003)
    assert settings.thresholds.drift_brier_rise == 0.10
    assert settings.model.time_bucket_edges_hours[-1] == 168


def test_config_yaml_values_are_read_and_env_wins(config_files):
    config, env = config_files
    config.write_text("predictor:\n  cadence_minutes: 30\napi_port: 6001\n")
    env.write_text("API_PORT=7001\n")
    settings = load_settings()
    assert settings.predictor.cadence_minutes == 30
    assert settings.api_port == 7001


def test_a_wrong_value_in_config_yaml_names_the_file_and_field(config_files):
    config, _ = config_files
    config.write_text("model:\n  horizon_hours: soon\n")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "config.yaml" in message and "model.horizon_hours" in message and "'soon'" in message


def test_an_unknown_field_in_a_section_is_refused(config_files):
    config, _ = config_files
    config.write_text("thresholds:\n  min_precison: 0.5\n")
    with pytest.raises(ConfigError, match="thresholds.min_precison"):
        load_settings()


def test_a_wrong_value_in_env_names_the_variable(config_files):
    _, env = config_files
    env.write_text("API_PORT=eighty\n")
    with pytest.raises(ConfigError, match=r"\.env or environment variable API_PORT"):
        load_settings()


def test_broken_yaml_is_reported_as_such(config_files):
    config, _ = config_files
    config.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="config.yaml: not valid YAML"):
        load_settings()


def test_db_variables_build_the_database_url(config_files):
    _, env = config_files
    env.write_text("DB_HOST=db.internal\nDB_USER=flare\nDB_PASSWORD=s3cret\nDB_NAME=flare\n")
    assert load_settings().database_dsn == "postgresql://flare:s3cret@db.internal:5432/flare"
