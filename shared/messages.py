"""The messages that cross Kafka topics: frozen, versioned, each with a stable id.

A message is named for what happened (`FluxObserved`) or what is asked (`RetrainRequested`). Its
`message_id` is derived from what makes it unique (for example satellite and time tag), so a replay or a
redelivery of the same fact carries the same id and every sink can upsert on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from shared.classes import TargetClass

FlareClass = Literal["A", "B", "C", "M", "X"]
OutcomeClass = Literal["none", "C", "M", "X"]
# SWPC-scaled GOES-13/15 flux and true-flux GOES-16+ are never compared under one threshold silently.
ScalingEra = Literal["swpc_scaled", "true_flux"]

EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
EVENT_TIME_CLOCK_SKEW = timedelta(days=1)  # how far ahead of this host's clock a producer's clock may run
DETECTED_SOURCE = "detected"  # the source of a flare the ingestor found in the flux itself
MAX_TEXT_CHARS = 100_000  # the longest text a message holds, and what a dead letter keeps of a rejected record
_ID_NAMESPACE = uuid.UUID("6f1c2b1e-6b0a-4d0f-9a51-4a1e0f1a2e00")


def stable_id(*parts: Any) -> str:
    """A deterministic id from the parts that make a fact unique."""
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(str(p) for p in parts)))


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00; a ValueError makes it a validation error, not a crash
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


def plausible_event_time(value: datetime) -> datetime:
    """`value` in UTC, if it lies between 1970 and a day from now: an event time drives every clock (schedules,
    windows, a forecast's lookback), and one from year 9999 or year 1 would move them all or overflow them."""
    value = utc(value)
    if not EARLIEST_EVENT_TIME <= value <= datetime.now(timezone.utc) + EVENT_TIME_CLOCK_SKEW:
        raise ValueError(f"{value.isoformat()} is not a plausible event time (1970 to a day from now)")
    return value


# every instant a message holds (a flare peaking in year 1 passes for a date but no pandas timestamp holds it:
# it crashed the predictor's flux reader when the flux reached it)
EventTime = Annotated[AwareDatetime, AfterValidator(plausible_event_time)]
# an instant a REST client asks about: NOAA's time tags are UTC and so are the deployment plan's own requests
# ("2024-11-04T12:00:00"), so one without a zone is UTC. A message on the broker still needs its zone: a producer
# that drops it has a bug worth a dead letter, not a guess.
RequestTime = Annotated[datetime, AfterValidator(plausible_event_time)]


class Message(BaseModel):
    """Common envelope. `event_time` is the observation time the message speaks about, never wall-clock."""

    # Infinity and NaN (or 1e999, which JSON parsing turns into infinity) are never a measurement.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, str_max_length=MAX_TEXT_CHARS)

    type: str
    schema_version: Literal[1] = 1  # a consumer of this code cannot read another version: it is refused, not guessed
    message_id: str
    event_time: EventTime
    correlation_id: str | None = None
    # the field whose value is the record's Kafka key (and so picks its partition); published in the contract
    KEY_FIELD: ClassVar[str] = "message_id"

    @property
    def key(self) -> str:
        """Kafka key: the message id unless a subclass partitions by something else."""
        return str(getattr(self, self.KEY_FIELD))


class FluxObserved(Message):
    """One minute (or hour) of GOES XRS flux from one satellite. Missing bands are None, never fill values."""

    type: Literal["FluxObserved"] = "FluxObserved"
    satellite: str
    cadence_seconds: int = Field(gt=0)
    scaling_era: ScalingEra
    xrsa_flux: float | None = Field(None, ge=0)
    xrsb_flux: float | None = Field(None, ge=0)
    quality: str = "good"
    source: str
    is_correction: bool = False

    KEY_FIELD: ClassVar[str] = "satellite"


class FlareObserved(Message):
    """A flare, detected from the flux or read from a NOAA catalogue; `event_time` is its peak."""

    type: Literal["FlareObserved"] = "FlareObserved"
    start_time: EventTime
    peak_time: EventTime
    end_time: EventTime | None = None
    goes_class: str = Field(pattern=r"^[ABCMX]\d+(\.\d+)?$")
    class_letter: FlareClass
    peak_flux: float = Field(gt=0)
    source: str
    satellite: str | None = None
    scaling_era: ScalingEra = "swpc_scaled"
    noaa_region: str | None = None

    @property
    def known_at(self) -> datetime:
        """When the system can know the flare: the detector reports one at its end (its peak is only certain
        then), a catalogue lists it from its peak. The ingestor releases it then; the predictor counts it from then."""
        return self.end_time if self.source == DETECTED_SOURCE and self.end_time else self.peak_time


class SurvivalForecast(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    target_class: TargetClass
    probability_distribution: dict[str, float]
    time_points_hours: list[float]
    survival_probabilities: list[float]
    hazard_score: float
    probability_within_24h: float


class ForecastIssued(Message):
    """A forecast issued at `event_time` from the data available then."""

    type: Literal["ForecastIssued"] = "ForecastIssued"
    model_version: str
    status: Literal["ok", "insufficient_data"] = "ok"
    reason: str | None = None
    shadow: bool = False
    horizon_hours: int = 168
    survival: dict[str, SurvivalForecast] = {}
    class_probabilities: dict[str, float] = {}
    predicted_class: OutcomeClass | None = None
    inputs_until: EventTime | None = None
    # no usable flux: forecast from the flare history alone by the version's flare-history models (status ok,
    # `reason` says why the flux could not be used)
    degraded: bool = False


class ForecastResolved(Message):
    """What happened after a forecast: the largest flare in its 24 h window and the time to the first of each class."""

    type: Literal["ForecastResolved"] = "ForecastResolved"
    forecast_id: str
    model_version: str
    shadow: bool = False
    scorable: bool
    reason: str | None = None
    actual_class: OutcomeClass | None = None
    hours_to_first: dict[str, float | None] = {}


class MetricsUpdated(Message):
    """The skill of one model version (champion, or shadow challenger) over one window, as of `event_time`:
    `metrics` holds per target class C/M/X e.g. `M.brier`, `M.tss`, `M.precision` (null while undefined)."""

    type: Literal["MetricsUpdated"] = "MetricsUpdated"
    model_version: str
    shadow: bool = False
    window: str
    scored_count: int = Field(ge=0, le=2**31 - 1)  # stored in a PostgreSQL integer
    metrics: dict[str, float | None]
    reliability: list[dict[str, float | int | str | None]] = []  # rows of shared.scoring.reliability_table + "target"


class MetricDrift(Message):
    """A model's skill left its bounds over a window: `metric` is at `value`, beyond `threshold` (once an episode)."""

    type: Literal["MetricDrift"] = "MetricDrift"
    model_version: str
    metric: str
    value: float
    baseline: float | None = None
    threshold: float
    window: str


class XClassFlareObserved(Message):
    """An X-class flare was reported (once per flare, however many sources report it); `event_time` is its peak."""

    type: Literal["XClassFlareObserved"] = "XClassFlareObserved"
    flare_id: str
    goes_class: str
    peak_time: EventTime


class RetrainRequested(Message):
    """The gatekeeper asks the trainer for a model trained on the data until `train_until`."""

    type: Literal["RetrainRequested"] = "RetrainRequested"
    target_class: TargetClass | Literal["all"] = "all"
    reason: str
    requested_by: str
    evidence: dict[str, Any] = {}
    train_until: EventTime | None = None


class ModelTrained(Message):
    """A candidate version was trained, validated, backtested and registered; `evidence` holds its figures."""

    type: Literal["ModelTrained"] = "ModelTrained"
    version: str
    request_id: str | None = None
    artifacts: dict[str, str]
    evidence: dict[str, Any]


class TrainingFailed(Message):
    """A retrain request could not be answered with a candidate; `reason` says why."""

    type: Literal["TrainingFailed"] = "TrainingFailed"
    request_id: str | None = None
    reason: str


class ModelPromoted(Message):
    """`version` became the champion (replacing `previous_version`), by `actor`, for `reason`."""

    type: Literal["ModelPromoted"] = "ModelPromoted"
    version: str
    previous_version: str | None = None
    actor: str
    reason: str


class ModelRolledBack(Message):
    """The champion went back from `from_version` to `version`, by `actor`, for `reason`."""

    type: Literal["ModelRolledBack"] = "ModelRolledBack"
    version: str
    from_version: str
    actor: str
    reason: str


class ChallengerChanged(Message):
    """`version` now runs in shadow beside the champion (null: no challenger any more)."""

    type: Literal["ChallengerChanged"] = "ChallengerChanged"
    version: str | None
    actor: str
    reason: str


class DeadLettered(Message):
    """A message a service could not accept, with the reason and enough to find or replay the original."""

    type: Literal["DeadLettered"] = "DeadLettered"
    service: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    reason: str
    raw_value: str


Alert = Annotated[Union[MetricDrift, XClassFlareObserved], Field(discriminator="type")]
Lifecycle = Annotated[
    Union[ModelTrained, TrainingFailed, ModelPromoted, ModelRolledBack, ChallengerChanged],
    Field(discriminator="type"),
]

ALL_MESSAGE_TYPES: tuple[type[Message], ...] = (
    FluxObserved, FlareObserved, ForecastIssued, ForecastResolved, MetricsUpdated, MetricDrift,
    XClassFlareObserved, RetrainRequested, ModelTrained, TrainingFailed, ModelPromoted, ModelRolledBack,
    ChallengerChanged, DeadLettered,
)


def adapter_for(*models: type[Message]) -> TypeAdapter:
    """A validator accepting any of `models`, chosen by their `type` field."""
    if len(models) == 1:
        return TypeAdapter(models[0])
    return TypeAdapter(Annotated[Union[models], Field(discriminator="type")])  # type: ignore[valid-type, arg-type]
