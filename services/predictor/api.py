"""The predictor's REST API: forecasts at a requested instant from the data stored by then, and health.

Served by uvicorn inside the worker's event loop, so it answers with the same loaded models as the stream.
Every failure a caller can cause is a 4xx with a message saying what is wrong; the computation runs in a
thread with a deadline (`thresholds.api_timeout_seconds`), so a busy stream never makes a request wait long.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal, Protocol

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.predictor import ccmc
from services.predictor.access import ApiKeyGuard, KeyRejected, RateLimited
from services.predictor.forecasts import (
    ForecastUnavailable, PointForecast, class_probabilities_within, most_likely_class, survival_buckets,
)
from shared import messages as m
from shared.http import send_hardening_headers, serve_metrics
from shared.logging import get_logger

log = get_logger(__name__)


# ---- schemas ----------------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: m.RequestTime = Field(
        description="the instant to forecast from (ISO 8601, e.g. 2024-11-04T12:00:00; without a zone it is UTC, as "
                    "NOAA's time tags are), from 1970 to a day from now; only the data observed before it is used",
        examples=["2024-11-04T12:00:00"])


class _Buckets(BaseModel):
    time_buckets: list[int] | None = Field(
        None, description="hour edges of the time-to-flare buckets, from 0, increasing, within the model's horizon "
                          "(168 h), e.g. [0, 6, 24]; the model's own buckets when omitted")

    @field_validator("time_buckets")
    @classmethod
    def _edges_increase_from_zero(cls, edges: list[int] | None) -> list[int] | None:
        if edges is not None and (len(edges) < 2 or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:]))):
            raise ValueError("time_buckets must start at 0 and strictly increase, e.g. [0, 6, 12, 24]")
        return edges


# the deployment plan's own request (Pre-Deployment Validation step 5), the body every endpoint documents first
PLAN_REQUEST = {"timestamp": "2024-11-04T12:00:00"}


class SurvivalRequest(_Request, _Buckets):
    model_config = ConfigDict(json_schema_extra={"examples": [
        PLAN_REQUEST, {"timestamp": "2015-07-20T12:00:00Z", "target_class": "M", "time_buckets": [0, 6, 24]}]})

    # the plan's production model is the C-class survival model
    target_class: m.TargetClass = Field("C", description="flares of at least this class: C (the default), M or X")


class ClassificationRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [PLAN_REQUEST, {"timestamp": "2015-07-20T12:00:00Z",
                                                                             "window": 48}]})

    window: Literal[24, 48] = Field(24, description="hours after the timestamp the class is about: 24 or 48")


class AllRequest(ClassificationRequest, _Buckets):
    pass


class SurvivalFunction(BaseModel):
    time_points: list[float] = Field(description="hours after issue, 0 .. 168")
    probabilities: list[float] = Field(description="probability of no flare of the class by each time point")


class SurvivalResponse(BaseModel):
    target_class: m.TargetClass
    probability_distribution: dict[str, float] = Field(
        description="time-to-first-flare bucket -> probability; the last bucket is 'none within the horizon'")
    survival_function: SurvivalFunction
    hazard_score: float
    probability_within_24h: float
    model_version: str
    issued_at: datetime
    inputs_until: datetime | None
    degraded: bool = Field(False, description="no usable flux: from the flare history alone (`reason` says why)")
    reason: str | None = None


class ClassificationResponse(BaseModel):
    window_hours: int
    predicted_class: m.OutcomeClass
    class_probabilities: dict[str, float] = Field(description="largest flare class in the window: none, C, M, X")
    model_version: str
    issued_at: datetime
    inputs_until: datetime | None
    degraded: bool = Field(False, description="no usable flux: from the flare history alone (`reason` says why)")
    reason: str | None = None


class AllResponse(BaseModel):
    survival: dict[str, SurvivalResponse]
    classification: ClassificationResponse


class Problem(BaseModel):
    error: str
    detail: Any = None


NO_FORECAST_HERE = (
    "a field is invalid (each one named in `detail`), or no forecast can be made at the timestamp: no flux is "
    "stored in the model's lookback (72 h) before it, as for the deployment plan's 2024-11-04 request on a "
    "database holding only the 2015 replay, or too little for the features")


# ---- what the API needs from the service ------------------------------------------------------------------


class PredictorService(Protocol):
    guard: ApiKeyGuard
    timeout_seconds: float

    async def forecast_at(self, timestamp: datetime) -> PointForecast: ...

    async def health(self) -> dict[str, Any]: ...

    def current_models(self) -> dict[str, Any]: ...

    async def latest_logged_forecast(self) -> Any: ...


def survival_response(point: PointForecast, target: str, edges: list[int] | None) -> SurvivalResponse:
    survival = point.forecast.survival.get(target)
    if survival is None:
        raise ForecastUnavailable(503, f"model {point.model.version} has no survival model for class {target}")
    if edges is not None and edges[-1] > point.model.horizon_hours:
        raise ForecastUnavailable(422, f"time_buckets cannot go past the model's {point.model.horizon_hours} h horizon")
    distribution = survival.probability_distribution if edges is None else survival_buckets(point, target, edges)
    return SurvivalResponse(
        target_class=target,
        probability_distribution=distribution,
        survival_function=SurvivalFunction(time_points=survival.time_points_hours,
                                           probabilities=survival.survival_probabilities),
        hazard_score=survival.hazard_score,
        probability_within_24h=survival.probability_within_24h,
        model_version=point.model.version,
        issued_at=point.forecast.issued_at,
        inputs_until=point.forecast.inputs_until,
        degraded=point.forecast.degraded,
        reason=point.forecast.reason,
    )


def classification_response(point: PointForecast, window: int) -> ClassificationResponse:
    probabilities = class_probabilities_within(point, window)
    return ClassificationResponse(
        window_hours=window, predicted_class=most_likely_class(probabilities), class_probabilities=probabilities,
        model_version=point.model.version, issued_at=point.forecast.issued_at,
        inputs_until=point.forecast.inputs_until, degraded=point.forecast.degraded, reason=point.forecast.reason,
    )


# ---- the application --------------------------------------------------------------------------------------


def _problem(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(Problem(error=error, detail=detail).model_dump(), status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        reason = next(err for err in errors if err.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return 400, f"the request body is not valid JSON: {reason}".rstrip(": "), []
    problems = [
        {"field": ".".join(str(p) for p in err["loc"] if p != "body") or "<body>", "problem": err["msg"]}
        for err in errors
    ]
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return 422, f"invalid request: {summary}", problems


def build_api(service: PredictorService) -> FastAPI:
    api = FastAPI(
        title="Flare+ predictor",
        version="1.0",
        description="Solar-flare forecasts from the GOES X-ray flux: time-to-flare distributions (survival) per "
                    "class and the largest flare class in the next 24 or 48 hours. Computed from the data stored "
                    "before the requested timestamp, with the champion model.",
    )
    send_hardening_headers(api)

    serve_metrics(api)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, error, detail = _describe_validation(exc)
        return _problem(status, error, detail)

    @api.exception_handler(KeyRejected)
    async def _key(request: Request, exc: KeyRejected) -> JSONResponse:
        return _problem(401, str(exc))

    @api.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited) -> JSONResponse:
        return _problem(429, str(exc), headers={"Retry-After": str(max(1, round(exc.retry_after_seconds)))})

    @api.exception_handler(ForecastUnavailable)
    async def _unavailable(request: Request, exc: ForecastUnavailable) -> JSONResponse:
        return _problem(exc.status, str(exc))

    async def admitted(
        x_api_key: str | None = Header(None, description="required when API keys are configured"),
    ) -> str | None:
        holder = service.guard.admit(x_api_key)
        if holder:
            log.debug("api.admitted", holder=holder)
        return holder

    async def forecast(timestamp: datetime) -> PointForecast:
        try:
            return await asyncio.wait_for(service.forecast_at(timestamp), service.timeout_seconds)
        except TimeoutError:
            raise ForecastUnavailable(504, f"the forecast took longer than {service.timeout_seconds:.0f} s") from None

    errors = {
        400: {"model": Problem, "description": "the body is not valid JSON"},
        401: {"model": Problem, "description": "API keys are configured and X-API-Key is missing or unknown"},
        422: {"model": Problem, "description": NO_FORECAST_HERE, "content": {"application/json": {"examples": {
            "invalid field": {"value": {"error": "invalid request: target_class: Input should be 'C', 'M' or 'X'",
                                        "detail": [{"field": "target_class",
                                                    "problem": "Input should be 'C', 'M' or 'X'"}]}},
            "no flux stored": {"value": {"error": "no flux observations are stored in the 72 h before "
                                                  "2024-11-04T12:00:00+00:00", "detail": None}},
        }}}},
        429: {"model": Problem, "description": "this API key's rate limit is spent; Retry-After says for how long"},
        503: {"model": Problem, "description": "no champion model is loaded, or the database is unreachable"},
    }

    @api.post("/predict/survival", response_model=SurvivalResponse, responses=errors, tags=["predict"],
              summary="time-to-first-flare distribution and survival curve for one class")
    async def predict_survival(body: SurvivalRequest, _: str | None = Depends(admitted)) -> SurvivalResponse:
        return survival_response(await forecast(body.timestamp), body.target_class, body.time_buckets)

    @api.post("/predict/classification", response_model=ClassificationResponse, responses=errors,
              tags=["predict"], summary="probabilities of the largest flare class (none/C/M/X) in the window")
    async def predict_classification(body: ClassificationRequest,
                                     _: str | None = Depends(admitted)) -> ClassificationResponse:
        return classification_response(await forecast(body.timestamp), body.window)

    @api.post("/predict/all", response_model=AllResponse, responses=errors, tags=["predict"],
              summary="survival for C, M and X and the classification, from one computation")
    async def predict_all(body: AllRequest, _: str | None = Depends(admitted)) -> AllResponse:
        point = await forecast(body.timestamp)
        return AllResponse(
            survival={target: survival_response(point, target, body.time_buckets) for target in point.model.targets},
            classification=classification_response(point, body.window),
        )

    @api.get("/forecasts/latest", tags=["forecasts"], responses={
                 401: errors[401], 429: errors[429],
                 404: {"model": Problem, "description": "no forecast with probabilities has been logged yet"},
                 422: {"model": Problem, "description": "`format` is not one the predictor serves (ccmc)"},
                 503: {"model": Problem, "description": "the database is unreachable"}},
             summary="the newest logged forecast of the champion, in the CCMC Flare Scoreboard JSON format")
    async def latest_forecast(
        format: Literal["ccmc"] = Query("ccmc", description="ccmc: CCMC Flare Scoreboard JSON submission "
                                                            "(docs/ccmc/README.md)"),
        _: str | None = Depends(admitted),
    ) -> dict[str, Any]:
        row = await service.latest_logged_forecast()
        if row is None:
            raise ForecastUnavailable(404, "no forecast with probabilities has been logged yet")
        return ccmc.submission(row)

    @api.get("/health", tags=["operations"], summary="healthy or degraded, with the reasons; never needs a key")
    async def health() -> JSONResponse:
        report = await service.health()
        return JSONResponse(report, status_code=200)

    @api.get("/models/current", tags=["operations"], summary="the model versions serving forecasts")
    async def models_current() -> dict[str, Any]:
        return service.current_models()

    return api
