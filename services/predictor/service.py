"""The predictor's state and operations, shared by its stream readers and its REST API.

One object owns the database pool, the loaded models and the stream's feature state; the readers in
`worker.py` (the observations' consumer and the lifecycle's faust agent) and the FastAPI routes in `api.py`
call it, in the same event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import asyncpg
from prometheus_client import Counter

from services.predictor import ccmc, store
from services.predictor.access import ApiKeyGuard
from services.predictor.cache import ForecastCache
from services.predictor.forecasts import ForecastUnavailable, PointForecast
from services.predictor.models import ModelSlots, registered_roles
from services.predictor.offload import ForecastProcesses
from services.predictor.stream import StreamForecaster
from shared import messages as m
from shared.db import DATABASE_OUTAGES, create_pool, outlasting_outages_on
from shared.features import FeatureParams
from shared.logging import get_logger
from shared.settings import Settings

log = get_logger(__name__)
Publish = Callable[[Sequence[m.ForecastIssued]], Awaitable[None]]
LAG_WARNING = 10_000  # flux records behind the topic's end before /health says so
REST_CACHE_ENTRIES = 1024  # about 18 kB each (measured): a month of hourly instants fits in under 20 MB
T = TypeVar("T")
FORECASTS_ISSUED = Counter("flare_forecasts_issued", "Forecasts published, by model version, status and shadow",
                           ["model_version", "status", "shadow"])


@dataclass
class Counters:
    forecasts_published: int = 0
    forecasts_logged: int = 0
    flux_seen: int = 0
    flares_seen: int = 0
    rest_forecasts_computed: int = 0
    rest_forecasts_from_cache: int = 0


@dataclass
class Predictor:
    settings: Settings
    database_url: str
    bootstrap_servers: str
    slots: ModelSlots = field(default_factory=ModelSlots)
    counters: Counters = field(default_factory=Counters)
    flux_lag: Callable[[], int | None] = lambda: None  # flux records waiting to be read, for /health

    def __post_init__(self) -> None:
        self.params = FeatureParams.from_settings(self.settings.features)
        self.guard = ApiKeyGuard([key.get_secret_value() for key in self.settings.api_keys],
                                 self.settings.predictor.rate_limit_per_minute)
        self.timeout_seconds = self.settings.thresholds.api_timeout_seconds
        self.stream = StreamForecaster(self.params, timedelta(minutes=self.settings.predictor.cadence_minutes),
                                       self.slots, self._stream_history, self._logged)
        self.cache = ForecastCache(REST_CACHE_ENTRIES)
        self.offload = ForecastProcesses(self.settings.predictor.rest_processes)
        self.pool: asyncpg.Pool | None = None
        self.ready = asyncio.Event()

    # ---- life -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.pool = await create_pool(self.database_url, min_size=1, max_size=4)
        await self.reload_models("start")
        self.ready.set()
        log.info("predictor.ready", models=self.slots.versions())

    async def stop(self) -> None:
        self.offload.close()
        if self.pool is not None:
            await self.pool.close()

    async def _waiting_out_outages(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` on a pooled connection; while the database restarts, wait and retry instead of dropping
        the batch in hand (the stream holds still meanwhile, and nothing is skipped)."""
        return await outlasting_outages_on(self.pool, work)

    async def reload_models(self, because: str) -> dict[str, str | None]:
        wanted = await self._waiting_out_outages(registered_roles)
        changed = await self.slots.reconcile(wanted)
        self.offload.serve(self.slots.champion)
        log.info("models.reconciled", because=because, models=self.slots.versions(), changed=changed)
        return changed

    # ---- stream -----------------------------------------------------------------------------------------

    async def _stream_history(self, until: datetime) -> store.History:
        return await self._waiting_out_outages(
            lambda conn: store.history_before(conn, until, self.params, flares_after_too=True))

    async def _logged(self, forecast_ids: list[str]) -> set[str]:
        return await self._waiting_out_outages(lambda conn: store.logged_ids(conn, forecast_ids))

    async def on_flux(self, readings: Sequence[m.FluxObserved], publish: Publish) -> list[m.ForecastIssued]:
        """Take a batch of readings in order; publish, then log, the forecasts they make due."""
        issued: dict[str, m.ForecastIssued] = {}
        for forecast in await self.stream.on_readings(readings):
            # a replay starting inside this batch may issue again what the batch issued before being logged
            issued.setdefault(forecast.message_id, forecast)
        new = list(issued.values())
        self.counters.flux_seen += len(readings)
        if not new:
            return []
        # published (and acknowledged) before logged: a crash in between publishes again, never loses one
        await publish(new)
        self.counters.forecasts_published += len(new)
        self.counters.forecasts_logged += await self._waiting_out_outages(lambda conn: store.log_forecasts(conn, new))
        for forecast in new:
            FORECASTS_ISSUED.labels(forecast.model_version, forecast.status, str(forecast.shadow).lower()).inc()
            log.info("forecast.issued", issued_at=forecast.event_time.isoformat(), model_version=forecast.model_version,
                     shadow=forecast.shadow, status=forecast.status, reason=forecast.reason,
                     correlation_id=forecast.correlation_id)
        return new

    def on_flare(self, flare: m.FlareObserved) -> None:
        self.counters.flares_seen += 1
        self.stream.on_flare(flare)

    # ---- REST -------------------------------------------------------------------------------------------

    async def forecast_at(self, timestamp: datetime) -> PointForecast:
        """The champion's forecast at `timestamp` from the data stored before it."""
        model = self.slots.champion
        if model is None:
            raise ForecastUnavailable(503, "no champion model is loaded; promote a model in the registry first")
        try:
            async with self.pool.acquire() as conn:
                key = (model.version, timestamp, await store.history_fingerprint(conn, timestamp, model.feature_params))
                cached = self.cache.get(key)
                if cached is not None:
                    self.counters.rest_forecasts_from_cache += 1
                    return cached
                history = await store.forecast_history(conn, timestamp, model.feature_params)
                # asked only for the no-data answer: with flares known, the forecast is a degraded one
                nothing_to_forecast_from = history.flux is None and not history.flare_rows
                earlier = nothing_to_forecast_from and await store.has_flux_before(conn, timestamp)
        except DATABASE_OUTAGES as exc:
            raise ForecastUnavailable(503, f"the database is not reachable: {exc}") from exc
        if nothing_to_forecast_from:
            raise ForecastUnavailable(422, (
                f"no flux observations are stored in the {model.feature_params.flux_lookback_hours} h before "
                f"{timestamp.isoformat()}" + ("" if earlier else "; no flux is stored before that time at all")
            ))
        point = await self.offload.point(model, history.flux, history.flares, timestamp)
        if point.forecast.status != "ok":
            raise ForecastUnavailable(422, f"insufficient data at {timestamp.isoformat()}: {point.forecast.reason}")
        self.counters.rest_forecasts_computed += 1
        self.cache.put(key, point)
        return point

    async def latest_logged_forecast(self) -> asyncpg.Record | None:
        """The champion's newest logged forecast with probabilities (what GET /forecasts/latest serves)."""
        try:
            async with self.pool.acquire() as conn:
                return await ccmc.latest_forecast(conn)
        except DATABASE_OUTAGES as exc:
            raise ForecastUnavailable(503, f"the database is not reachable: {exc}") from exc

    def current_models(self) -> dict[str, Any]:
        def describe(model) -> dict[str, Any] | None:
            if model is None:
                return None
            return {"version": model.version, "targets": model.targets, "horizon_hours": model.horizon_hours,
                    "bucket_edges_hours": model.edges, "has_classifier": model.classifier is not None}

        return {"champion": describe(self.slots.champion), "challenger": describe(self.slots.challenger),
                "problems": dict(self.slots.problems)}

    async def health(self) -> dict[str, Any]:
        reasons: list[str] = []
        database_ok, status = await self._database_status()
        broker_ok = await broker_reachable(self.bootstrap_servers)
        if self.slots.champion is None:
            reasons.append("no champion model is loaded")
        reasons += list(self.slots.problems.values())
        if not database_ok:
            reasons.append("the database is not reachable")
        if not broker_ok:
            reasons.append("the broker is not reachable")
        latest = self.stream.latest
        if latest is not None and latest.status != "ok":
            reasons.append(f"the latest stream forecast ({latest.event_time.isoformat()}) has insufficient data: "
                           f"{latest.reason}")
        lag = self.flux_lag()
        if lag is not None and lag > LAG_WARNING:
            reasons.append(f"the flux consumer is {lag} records behind")
        return {
            "status": "degraded" if reasons else "healthy",
            "reasons": reasons,
            "models": self.slots.versions(),
            "database_reachable": database_ok,
            "broker_reachable": broker_ok,
            "last_ingestion_finished": _iso(status.last_ingestion_finished if status else None),
            "last_ingested_event_time": _iso(status.last_ingested_event_time if status else None),
            "last_flux_time": _iso(self.stream.newest_flux),
            "latest_forecast": None if latest is None else {
                "issued_at": latest.event_time.isoformat(), "status": latest.status, "reason": latest.reason,
                "model_version": latest.model_version},
            "consumer_lag": lag,
            "rest_processes": {"processes": self.offload.processes, "ready": self.offload.ready},
            "forecasts_logged": status.forecasts_logged if status else None,
            "since_start": {**vars(self.counters), "forecasts_already_logged": self.stream.already_logged,
                            "forecasts_skipped_without_model": self.stream.skipped_without_model},
        }

    async def _database_status(self) -> tuple[bool, store.StoreStatus | None]:
        try:
            async with asyncio.timeout(2.0):
                async with self.pool.acquire() as conn:
                    return True, await store.store_status(conn)
        except (*DATABASE_OUTAGES, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("health.database_unreachable", error=str(exc))
            return False, None


async def broker_reachable(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """True if any bootstrap server accepts a connection."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
            writer.close()
            return True
        except (OSError, TimeoutError, ValueError):
            continue
    return False


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None
