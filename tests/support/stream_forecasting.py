"""The predictor's StreamForecaster without a database: nothing stored before the stream, nothing logged yet,
and the computations run inline (no thread), for the tests that feed it readings directly."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.predictor.models import ModelSlots
from services.predictor.store import History
from services.predictor.stream import LoggedFilter, StreamForecaster
from shared.features import FeatureParams
from shared.settings import load_settings


async def nothing_stored(until: datetime) -> History:
    return History([], [])


async def nothing_logged(forecast_ids: list[str]) -> set[str]:
    return set()


async def inline(function, *args):
    return function(*args)


def forecaster(slots: ModelSlots, params: FeatureParams | None = None,
               logged: LoggedFilter = nothing_logged) -> StreamForecaster:
    """An hourly stream forecaster of `slots`, on `params` (default: the configured feature parameters)."""
    params = params or FeatureParams.from_settings(load_settings().features)
    return StreamForecaster(params, timedelta(hours=1), slots, nothing_stored, logged, run=inline)
