"""The evaluator's REST API: the current figures per model version and window, read from `model_metrics`."""

# no `from __future__ import annotations`: FastAPI must see the Window enum built inside create_api
from enum import Enum
from typing import Any, Awaitable, Callable

import asyncpg
from fastapi import FastAPI, HTTPException, Query

from shared.http import refuse_unstorable_text, send_hardening_headers, serve_metrics
from shared.settings import Settings
from services.evaluator import store
from services.evaluator.metrics import window_name


def create_api(settings: Settings, pool: Callable[[], Awaitable[asyncpg.Pool]]) -> FastAPI:
    api = FastAPI(title="Flare+ evaluator", description="Live skill of every model version, champion and shadow")
    windows = [window_name(days) for days in settings.evaluator.metric_windows_days] + [window_name(None)]
    # an enum, so the OpenAPI document lists the windows and an unknown one is refused like any invalid parameter
    Window = Enum("Window", {name: name for name in windows}, type=str)
    refuse_unstorable_text(api)
    serve_metrics(api)  # /metrics alone: /metrics/performance stays the skill figures
    send_hardening_headers(api)

    @api.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/metrics/performance")
    async def performance(
        model_version: str | None = Query(None, description="only this model version"),
        window: Window | None = Query(None, description="only this window"),
    ) -> dict[str, Any]:
        """Per model version (champion and shadow apart) and window: the newest metrics, with the reliability
        table of each target class."""
        async with (await pool()).acquire() as conn:
            rows = await store.latest_metrics(conn, model_version, window and window.value)
        if model_version is not None and not rows:
            raise HTTPException(404, f"no metrics for model version {model_version!r} yet")
        return {
            "windows": windows,
            "performance": [
                {"model_version": row["model_version"], "shadow": row["shadow"], "window": row["window_name"],
                 "as_of": row["as_of"].isoformat(), "scored_count": row["scored_count"], "metrics": row["metrics"],
                 "reliability": row["reliability"]}
                for row in rows
            ],
        }

    return api
