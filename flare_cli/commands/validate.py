"""`flare validate`: the deployment plan's six checks of a running system, each logged with its reason.

The run is logged in `flare_system_validation_log` by the gatekeeper, the table's only writer: the command posts
it to the gatekeeper's POST /validation-runs with the operator token (as `flare promote` does)."""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Awaitable, Callable


from flare_cli import context
from flare_cli.checks import Check, print_checks
from flare_cli.commands import models

if TYPE_CHECKING:
    from shared.settings import Settings

CHECKS = ("database", "ingestion", "model loading", "predictions", "api endpoint", "full pipeline")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "validate", help="check the running system: database, ingestion, model, predictions, API, pipeline")
    parser.add_argument("--api-url", help="predictor API base URL (default: from settings)")
    parser.add_argument("--gatekeeper-url", help="where the run is logged (default: the gatekeeper from settings)")
    parser.set_defaults(handler=cmd_validate)


class Validation:
    """The six checks, run in order against one database connection; later checks use what earlier ones found."""

    def __init__(self, settings: Settings, conn, api_url: str):
        self.settings = settings
        self.conn = conn
        self.api_url = api_url
        self.latest_flux = None
        self.champion: dict[str, Any] | None = None

    async def database(self) -> str:
        applied = await self.conn.fetchval("SELECT count(*) FROM schema_migrations")
        from shared.db import migrations

        shipped = len(migrations())
        if applied != shipped:
            raise AssertionError(f"{applied} of {shipped} migrations applied")
        return f"connected, {applied} migrations applied"

    async def ingestion(self) -> str:
        row = await self.conn.fetchrow(
            "SELECT count(*) AS n, max(time_tag) AS latest FROM flux_observations WHERE xrsb_flux IS NOT NULL")
        if not row["n"]:
            raise AssertionError("no flux stored: run `flare ingest PATH` or `flare ingest --source live`")
        self.latest_flux = row["latest"]
        last_run = await self.conn.fetchrow(
            "SELECT source, status, error FROM flare_ingestion_log ORDER BY started_at DESC LIMIT 1")
        if last_run and last_run["status"] == "failed":
            raise AssertionError(f"last ingestion run of {last_run['source']} failed: {last_run['error']}")
        return f"{row['n']} flux readings up to {self.latest_flux:%Y-%m-%d %H:%M}Z"

    async def model_loading(self) -> str:
        import asyncio


        from shared import registry  # loads pandas and joblib: only this check needs them

        self.champion = await registry.champion(self.conn)
        if self.champion is None:
            raise AssertionError("no champion in the registry: train one (`flare train --save-model`) and promote it")
        model = await asyncio.to_thread(registry.load_model, self.champion)
        return f"champion {model.version} loaded, digests verified"

    async def predictions(self) -> str:
        if self.latest_flux is None:
            raise AssertionError("skipped: no flux to forecast from")
        import httpx

        async with httpx.AsyncClient(
                base_url=self.api_url, timeout=self.settings.thresholds.api_timeout_seconds) as http:
            key = context.api_key(self.settings)
            response = await http.post("/predict/all", json={"timestamp": self.latest_flux.isoformat()},
                                       headers={"X-API-Key": key} if key else {})
        if response.status_code != 200:
            raise AssertionError(f"POST /predict/all answered {response.status_code}: {response.text[:300]}")
        return describe_prediction(response.json())

    async def api_endpoint(self) -> str:
        import httpx

        limit = self.settings.thresholds.api_timeout_seconds
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.api_url, timeout=limit) as http:
            response = await http.get("/health")
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise AssertionError(f"GET /health answered {response.status_code}")
        health = response.json()
        if elapsed > limit:
            raise AssertionError(f"answered in {elapsed:.1f} s, more than {limit:g} s")
        reasons = "; ".join(health.get("reasons") or [])
        return (f"{self.api_url} {health.get('status')} in {elapsed * 1000:.0f} ms"
                + (f" ({reasons})" if reasons else ""))

    async def full_pipeline(self) -> str:
        """A flux reading in led to a forecast out, and forecasts are being scored."""
        if self.latest_flux is None:
            raise AssertionError("skipped: no flux stored")
        cadence = timedelta(minutes=self.settings.predictor.cadence_minutes)
        latest_forecast = await self.conn.fetchval(
            "SELECT max(prediction_timestamp) FROM flare_prediction_log WHERE NOT shadow")
        if latest_forecast is None:
            raise AssertionError("no forecast logged: is the predictor running with a champion?")
        if latest_forecast < self.latest_flux - 2 * cadence:
            raise AssertionError(
                f"latest forecast {latest_forecast:%Y-%m-%d %H:%M}Z lags the latest flux "
                f"{self.latest_flux:%Y-%m-%d %H:%M}Z by more than two cadence steps")
        scored = await self.conn.fetchval(
            "SELECT count(*) FROM flare_prediction_log WHERE resolved_at IS NOT NULL")
        if not scored:
            raise AssertionError("forecasts are issued but none is scored yet: is the evaluator running?")
        return (f"latest forecast {latest_forecast:%Y-%m-%d %H:%M}Z for flux up to "
                f"{self.latest_flux:%Y-%m-%d %H:%M}Z; {scored} forecasts scored")


def describe_prediction(body: dict[str, Any]) -> str:
    """Refuse NaN, class probabilities that do not sum to 1 and survival curves that rise or leave [0, 1]."""
    classification = body["classification"]
    probabilities = list(classification["class_probabilities"].values())
    if any(not math.isfinite(p) for p in probabilities) or abs(sum(probabilities) - 1) > 1e-6:
        raise AssertionError(f"class probabilities {classification['class_probabilities']} do not sum to 1")
    for target, survival in body["survival"].items():
        curve = survival["survival_function"]["probabilities"]
        if any(not math.isfinite(p) or p < 0 or p > 1 for p in curve):
            raise AssertionError(f"survival curve for {target} leaves [0, 1]")
        if any(later > earlier + 1e-9 for earlier, later in zip(curve, curve[1:])):
            raise AssertionError(f"survival curve for {target} rises")
        buckets = survival["probability_distribution"].values()
        if abs(sum(buckets) - 1) > 1e-6:
            raise AssertionError(f"bucket probabilities for {target} sum to {sum(buckets):.4f}")
    return (f"{body.get('model_version', classification.get('model_version'))}: predicted "
            f"{classification['predicted_class']}, class probabilities sum to 1, survival curves non-increasing")


async def run_validation(settings: Settings, dsn: str, api_url: str) -> list[Check]:
    from shared.db import connect

    try:
        conn = await connect(dsn, timeout_seconds=5)
    except Exception as exc:  # the failure to connect is the finding
        return [Check("database", False, f"cannot connect: {type(exc).__name__}: {exc}")] + [
            Check(name, False, "skipped: no database") for name in CHECKS[1:]]
    checks = []
    try:
        validation = Validation(settings, conn, api_url)
        steps: list[Callable[[], Awaitable[str]]] = [
            validation.database, validation.ingestion, validation.model_loading, validation.predictions,
            validation.api_endpoint, validation.full_pipeline,
        ]
        for name, step in zip(CHECKS, steps):
            try:
                checks.append(Check(name, True, await step()))
            except AssertionError as exc:
                checks.append(Check(name, False, str(exc)))
            except Exception as exc:  # any other failure is reported as this check's finding
                checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    finally:
        await conn.close()
    return checks


def cmd_validate(args: argparse.Namespace) -> int:
    import asyncio

    settings = context.settings()
    endpoints = context.endpoints(start=False)
    api_url = args.api_url or f"http://{settings.bind_host}:{settings.api_port}"
    checks = asyncio.run(run_validation(settings, endpoints.database_url, api_url))
    code = print_checks(checks)
    try:
        log_run(settings, args.gatekeeper_url or models.default_url(settings), checks)
    except models.ApiError as exc:
        print(f"the run is not logged in flare_system_validation_log: {exc}", file=sys.stderr)
        return code or 1
    return code


def log_run(settings: Settings, gatekeeper_url: str, checks: list[Check]) -> None:
    """Have the gatekeeper log the run under the caller's name; ApiError when it cannot."""
    client = models.GatekeeperClient(gatekeeper_url, context.operator_token(settings),
                                     settings.thresholds.api_timeout_seconds)
    run = [{"name": check.name, "passed": check.passed, "detail": check.detail} for check in checks]
    client.post("/validation-runs", {"run_id": uuid.uuid4().hex, "checks": run})
