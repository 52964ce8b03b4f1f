"""One settings model for every service, read from the environment, `.env` and `config.yaml`.

Precedence (highest first): environment variables, `.env`, `config.yaml`, defaults. A wrong value is
reported as a `ConfigError` naming the file, the field and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from shared import credentials
from shared.paths import project_root


class ConfigError(Exception):
    """A configuration file or variable holds a value the settings cannot accept."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestionSettings(_Section):
    swpc_base_url: str = "https://services.swpc.noaa.gov/json/goes/"
    # SWPC's primary and secondary satellites (GOES-19 and GOES-18 now): every satellite is kept, the features
    # read the primary of each hour and bridge its gaps with the other
    swpc_feeds: list[str] = ["primary/xrays-6-hour.json", "secondary/xrays-6-hour.json"]
    poll_interval_seconds: float = Field(60.0, gt=0)
    http_timeout_seconds: float = Field(10.0, gt=0)
    http_retries: int = Field(4, ge=0)
    retry_backoff_seconds: float = Field(2.0, ge=0)
    cache_expiry_seconds: float = Field(3600.0, gt=0)
    max_flux_w_m2: float = Field(1e-2, gt=0, description="flux above this is physically absurd for XRS and rejected")


class ArchiveSettings(_Section):
    """Where `flare data fetch` downloads NOAA's archives from; tests point these at a local server."""
    ncei_avg_base_url: str = "https://www.ncei.noaa.gov/data/goes-space-environment-monitor/access/avg/"
    goes_r_base_url: str = "https://data.ngdc.noaa.gov/platforms/solar-space-observing-satellites/goes/"
    ngdc_reports_base_url: str = (
        "https://www.ngdc.noaa.gov/stp/space-weather/solar-data/solar-features/solar-flares/x-rays/goes/xrs/")
    # NCEI and NGDC publish no checksum files for these products; a mirror that publishes NAME.md5 or
    # NAME.sha256 beside each file can have every download verified against them
    checksum_sidecar: Literal["none", "md5", "sha256"] = "none"
    http_timeout_seconds: float = Field(60.0, gt=0)
    http_retries: int = Field(4, ge=0)
    retry_backoff_seconds: float = Field(2.0, ge=0)


class FeatureSettings(_Section):
    flux_windows_hours: list[int] = [1, 6, 24, 72]
    flare_count_days: list[int] = [1, 3, 7, 27, 81]  # 81 d: three rotations, the cycle's level (see config.yaml)
    max_staleness_minutes: int = Field(180, gt=0, description="no forecast from flux older than this")
    min_coverage: float = Field(0.5, gt=0, le=1, description="fraction of the last 24 h that must hold flux")
    hours_since_cap_days: int = Field(90, gt=0, description="'hours since the last flare' saturates here")
    satellite_preference: list[str] = Field(
        [], description="satellites in order of preference (primary first) when several cover an hour equally;"
                        " the others follow by name. Every satellite ingested is kept; see shared/features.py")


class ModelSettings(_Section):
    horizon_hours: int = Field(168, gt=0)
    time_bucket_edges_hours: list[int] = [0, 6, 12, 24, 48, 72, 96, 120, 168]
    # several: the one with the lowest integrated Brier score on the validation period serves (see config.yaml)
    survival_estimators: list[Literal["coxph", "rsf", "gbsa"]] = Field(["rsf"], min_length=1)
    rsf_n_estimators: int = Field(100, gt=0)
    rsf_min_samples_leaf: int = Field(50, gt=0)
    rsf_max_depth: int = Field(8, gt=0)
    rsf_max_samples: float = Field(0.5, gt=0, le=1, description="fraction of rows each tree sees")
    gbsa_n_estimators: int = Field(150, gt=0)
    gbsa_learning_rate: float = Field(0.1, gt=0)
    coxph_alpha: float = Field(0.1, ge=0)
    min_history_days: int = Field(182, gt=0, description="refuse to train on less than this much history")
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    censor_gap_hours: int = Field(3, gt=0, description="a flux gap this long censors the time to the next flare")
    survival_subsample_hours: int = Field(6, gt=0, description="fit survival models on every n-th hourly issue time")
    classifier_max_iter: int = Field(200, gt=0)
    classifier_learning_rate: float = Field(0.05, gt=0)
    recalibration: Literal["none", "recent_hazard"] = Field(
        "none", description="recent_hazard: rescale each survival model's hazard to the validation period's "
                            "24 h outcomes at every retrain (shared.forecast_model.fit_hazard_recalibration)")
    training_window_days: int | None = Field(
        None, gt=0, description="train on the last this many days before the cut-off only (None: the whole history)")
    flare_history_models: bool = Field(
        True, description="fit, with each version, Cox models on the flare-history columns alone: the degraded "
                          "forecasts where no flux can be used (shared.forecast_model.FLARE_HISTORY_SURVIVAL_KIND)")
    random_state: int = 0

    @field_validator("time_bucket_edges_hours")
    @classmethod
    def _edges_increase_from_zero(cls, edges: list[int]) -> list[int]:
        if len(edges) < 2 or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("must start at 0 and strictly increase, e.g. [0, 6, 12, 24]")
        return edges


class ThresholdSettings(_Section):
    drift_brier_rise: float = Field(0.10, gt=0, description="retrain when Brier rises more than this fraction")
    min_precision: float = Field(0.5, ge=0, le=1)
    min_recall: float = Field(0.5, ge=0, le=1)
    min_scored_before_alert: int = Field(50, ge=1)
    backtest_min_f1: float = Field(0.4, ge=0, le=1)
    backtest_min_precision: float = Field(0.3, ge=0, le=1)
    backtest_max_brier: float = Field(0.3, ge=0, le=1)
    backtest_targets: list[Literal["C", "M", "X"]] = Field(
        ["C", "M"], min_length=1, description="the 24 h forecasts the backtest thresholds (and so the gates) judge")
    min_c_index: float = Field(0.5, ge=0, le=1)
    api_timeout_seconds: float = Field(10.0, gt=0)
    min_free_disk_gb: float = Field(1.0, ge=0)


class TopicSettings(_Section):
    flux: str = "xrs.flux"
    flares: str = "flares"
    forecasts: str = "forecasts"
    outcomes: str = "forecast.outcomes"
    metrics: str = "metrics"
    alerts: str = "alerts"
    retrain_requests: str = "model.retrain-requests"
    lifecycle: str = "model.lifecycle"
    dead_letters: str = "dead-letters"


class PredictorSettings(_Section):
    cadence_minutes: int = Field(60, gt=0)
    rate_limit_per_minute: int = Field(120, gt=0, description="prediction requests per API key per minute")
    app_name: str = Field("predictor",
                          description="consumer group and state namespace; a second predictor needs its own")
    rest_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=0,
        description="worker processes computing uncached REST forecasts (0: in the service's threads)")


class GatekeeperSettings(_Section):
    promotion_policy: Literal["auto", "approval"] = "auto"
    retrain_cooldown_hours: float = Field(24.0, ge=0)
    monitoring_window_hours: float = Field(48.0, gt=0)
    rollback_margin: float = Field(0.05, ge=0)
    keep_models: int = Field(3, ge=1)
    archive_retention_days: int = Field(90, ge=1)
    retrain_timeout_hours: float = Field(
        6.0, gt=0, description="a retrain request unanswered this long (wall clock) no longer blocks new ones")
    rollback_min_scored: int = Field(
        12, ge=1, description="scored forecasts a new champion needs before its live metrics can roll it back")
    retention_interval_hours: float = Field(24.0, gt=0, description="how often the registry's retention runs")
    consumer_group: str = Field("flare-gatekeeper",
                                description="Kafka consumer group; a second gatekeeper needs its own")


class EvaluatorSettings(_Section):
    app_name: str = Field("evaluator",
                          description="consumer group and state namespace; a second evaluator needs its own")
    resolution_grace_minutes: int = Field(
        120, ge=0, description="event time to wait after a forecast's window ends for late flare reports")
    metric_windows_days: list[int] = [7, 30]
    reliability_bins: int = Field(10, ge=2)
    drift_window_days: int = Field(30, gt=0, description="the rolling window drift is judged on")
    drift_targets: list[Literal["C", "M", "X"]] = ["C"]
    drift_clear_brier_rise: float = Field(0.05, ge=0, description="a drift episode ends when Brier is back within this")
    drift_clear_margin: float = Field(0.05, ge=0,
                                      description="... and precision and recall are this far above the floor")

    @model_validator(mode="after")
    def _drift_window_is_a_metric_window(self) -> "EvaluatorSettings":
        if self.drift_window_days not in self.metric_windows_days:
            raise ValueError(f"drift_window_days ({self.drift_window_days}) must be one of metric_windows_days")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=None,
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    kafka_bootstrap_servers: str | None = None
    database_url: SecretStr | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "flare"
    db_user: str = "flare"
    db_password: SecretStr | None = None

    state_dir: Path = Path("var")
    model_path: Path = Path("models")
    # the bundled sample (data/sample, with its MANIFEST.json): all the demo and `make test` read
    data_dir: Path = Path("data/sample")
    # a larger reference data set, optional and never assumed to exist: only benchmarks read it, and skip without it
    reference_data_dir: Path | None = None
    # where `flare data fetch` keeps the NOAA archives it downloads, with their index.json (FLARE_DATA_HOME)
    data_home: Path = Field(Path("var/data"), validation_alias=AliasChoices("flare_data_home", "data_home"))
    bind_host: str = "127.0.0.1"
    api_port: int = Field(5001, ge=1, le=65535)
    evaluator_port: int = Field(5002, ge=1, le=65535)
    gatekeeper_port: int = Field(5003, ge=1, le=65535)
    ui_port: int = Field(7860, ge=1, le=65535)
    # the trainer and the live ingestor have no REST API: they serve Prometheus' /metrics on these
    trainer_metrics_port: int = Field(5004, ge=1, le=65535)
    ingestor_metrics_port: int = Field(5005, ge=1, le=65535)
    api_keys: list[SecretStr] = []
    operator_tokens: list[SecretStr] = []
    viewer_tokens: list[SecretStr] = []
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    ingestion: IngestionSettings = IngestionSettings()
    archive: ArchiveSettings = ArchiveSettings()
    features: FeatureSettings = FeatureSettings()
    model: ModelSettings = ModelSettings()
    thresholds: ThresholdSettings = ThresholdSettings()
    topics: TopicSettings = TopicSettings()
    predictor: PredictorSettings = PredictorSettings()
    gatekeeper: GatekeeperSettings = GatekeeperSettings()
    evaluator: EvaluatorSettings = EvaluatorSettings()

    @field_validator("api_keys", "operator_tokens", "viewer_tokens")
    @classmethod
    def _credentials_well_formed(cls, values: list[SecretStr]) -> list[SecretStr]:
        """`[name:]secret[@expiry]` (see shared.credentials); a bad expiry is named here, at start-up."""
        for position, value in enumerate(values, start=1):
            try:
                credentials.parse(value.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"item {position}: {exc}") from None
        return values

    @model_validator(mode="after")
    def _anchor_relative_paths(self) -> "Settings":
        root = project_root()
        for name in ("state_dir", "model_path", "data_dir", "reference_data_dir", "data_home"):
            value: Path | None = getattr(self, name)
            if value is not None and not value.is_absolute():
                object.__setattr__(self, name, (root / value).resolve())
        return self

    @property
    def database_dsn(self) -> str | None:
        """The configured PostgreSQL URL, from DATABASE_URL or the DB_* variables; None means embedded."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.db_host:
            password = self.db_password.get_secret_value() if self.db_password else ""
            return f"postgresql://{self.db_user}:{password}@{self.db_host}:{self.db_port}/{self.db_name}"
        return None


def config_paths() -> tuple[Path, Path]:
    root = project_root()
    config = Path(os.environ.get("FLARE_CONFIG", root / "config.yaml"))
    env = Path(os.environ.get("FLARE_ENV_FILE", root / ".env"))
    return config, env


def read_config_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used instead
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_holds_secret(arg) for arg in get_args(annotation))


def _describe(error: Mapping[str, Any], yaml_data: dict[str, Any], config: Path, env: Path) -> str:
    location = ".".join(str(part) for part in error["loc"])
    top = str(error["loc"][0]) if error["loc"] else ""
    env_name = "__".join(str(part) for part in error["loc"]).upper()
    if top in yaml_data and env_name not in os.environ:
        origin = config.name
    else:
        origin = f"{env.name} or environment variable {env_name}"
    got = error.get("input")
    field = Settings.model_fields.get(top)
    secret = field is not None and _holds_secret(field.annotation)  # a wrong secret is not repeated in a message
    got_text = "" if isinstance(got, dict) or secret else f" (got {got!r})"
    return f"{origin}: field '{location}': {error['msg']}{got_text}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise ConfigError naming the file and field of each wrong value."""
    config, env = config_paths()
    yaml_data = read_config_yaml(config)

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                       file_secret_settings):
            return (init_settings, env_settings, dotenv_settings, _YamlSource(settings_cls, yaml_data))

    try:
        settings = _FileSettings(_env_file=env if env.exists() else None, **overrides)
    except ValidationError as exc:
        details = "\n".join(_describe(err, yaml_data, config, env) for err in exc.errors())
        # `from None`: pydantic's own error repeats every input, secrets included, in a traceback
        raise ConfigError(f"invalid configuration:\n{details}") from None
    except SettingsError as exc:  # says which field without repeating its value, which may be a secret
        raise ConfigError(f"invalid configuration: {exc}; a list is written as JSON, e.g. [\"a\", \"b\"]") from None
    return Settings.model_construct(**{name: getattr(settings, name) for name in Settings.model_fields})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
