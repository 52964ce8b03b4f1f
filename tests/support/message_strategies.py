"""Hypothesis strategies for the Kafka messages: valid ones derived from the pydantic models' fields and their
constraints, and malformed records of every kind a producer could send by mistake."""

from __future__ import annotations

import types
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel

from services.predictor.forecasts import forecast_id
from shared import messages as m

# text as the wire accepts it: no NUL (PostgreSQL cannot store it; `shared.kafka.decode` refuses it)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59),
                        ).map(lambda delta: timezone(timedelta(minutes=delta // timedelta(minutes=1))))
AWARE_DATETIMES = st.datetimes(timezones=OFFSETS)
# what messages accept as an instant (m.EventTime): 1970 to a day from now (taken at import: a test run is shorter
# than a day)
EVENT_TIMES = st.datetimes(min_value=m.EARLIEST_EVENT_TIME.replace(tzinfo=None) + timedelta(days=1),
                           max_value=datetime.now(), timezones=st.just(timezone.utc))
IMPLAUSIBLE_EVENT_TIMES = st.datetimes(max_value=datetime(1969, 12, 30), timezones=OFFSETS) | st.datetimes(
    min_value=datetime.now() + 2 * m.EVENT_TIME_CLOCK_SKEW, timezones=OFFSETS)


def _bounded_number(kind: type, metadata: list[Any]) -> st.SearchStrategy:
    bounds: dict[str, Any] = {}
    for constraint in metadata:
        if isinstance(constraint, annotated_types.Gt):
            bounds.update(min_value=constraint.gt, exclude_min=True)
        elif isinstance(constraint, annotated_types.Ge):
            bounds.update(min_value=constraint.ge)
        elif isinstance(constraint, annotated_types.Lt):
            bounds.update(max_value=constraint.lt, exclude_max=True)
        elif isinstance(constraint, annotated_types.Le):
            bounds.update(max_value=constraint.le)
    if kind is int:
        if bounds.pop("exclude_min", False):
            bounds["min_value"] += 1
        if bounds.pop("exclude_max", False):
            bounds["max_value"] -= 1
        return st.integers(**bounds)
    return st.floats(allow_nan=False, allow_infinity=False, **bounds)


def for_annotation(annotation: Any, metadata: list[Any] = ()) -> st.SearchStrategy:
    """Values that the annotation (with its field constraints) accepts."""
    origin = get_origin(annotation)
    if origin is Annotated:  # inside a union (`EventTime | None`) the constraints stay on the type
        base, *constraints = get_args(annotation)
        return for_annotation(base, [*metadata, *constraints])
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin in (Union, types.UnionType):
        return st.one_of([for_annotation(arg, metadata) for arg in get_args(annotation)])
    if origin is dict:
        key, value = get_args(annotation)
        return st.dictionaries(for_annotation(key), for_annotation(value), max_size=4)
    if origin is list:
        return st.lists(for_annotation(get_args(annotation)[0]), max_size=4)
    if annotation is type(None):
        return st.none()
    if annotation is AwareDatetime:
        bounded = any(getattr(c, "func", None) is m.plausible_event_time for c in metadata)
        return EVENT_TIMES if bounded else AWARE_DATETIMES
    if annotation is Any:
        return JSON_VALUES
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return valid(annotation)
    if annotation is bool:
        return st.booleans()
    if annotation in (int, float):
        return _bounded_number(annotation, metadata)
    if annotation is str:
        pattern = next((c.pattern for c in metadata if getattr(c, "pattern", None)), None)
        return st.from_regex(pattern, fullmatch=True) if pattern else TEXT
    raise TypeError(f"no strategy for {annotation!r}")


def valid(model: type[BaseModel]) -> st.SearchStrategy:
    """Instances of `model`: every required field, and each optional one either left out or generated."""
    required = {name: for_annotation(f.annotation, f.metadata) for name, f in model.model_fields.items()
                if f.is_required()}
    optional = {name: for_annotation(f.annotation, f.metadata) for name, f in model.model_fields.items()
                if not f.is_required() and name not in ("type", "schema_version")}
    built = st.fixed_dictionaries(required, optional=optional).map(lambda fields: model(**fields))
    if model is m.ForecastIssued:
        # a forecast's id is its model version, shadow flag and instant (what the predictor gives it): two
        # forecasts for one slot are the same forecast delivered twice, never two different ids
        return built.map(lambda f: f.model_copy(
            update={"message_id": forecast_id(f.model_version, f.shadow, f.event_time)}))
    return built
