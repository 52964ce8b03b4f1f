"""From the flux and flare streams to forecasts on the cadence, in event time.

For each flux reading: the readings and flares known before it are in the feature state; if the reading makes
issue times due, the forecasts for them are computed from that state (for the champion, and the challenger
in shadow) before the reading itself is added. The features come from the one feature function on the
state's buffer, which holds the same readings the database holds for that instant, so a forecast from the
stream equals the REST forecast for the same instant.

At the first reading after a start, and when the stream is rewound for a replay, the state is rebuilt from
the database (the lookback before that reading), so nothing needs replaying from the topic. A forecast the
prediction log already holds (a replay, a redelivery after a crash) is not computed or issued again.

Flares can arrive ahead of the flux (a catalogue ingested in one go, or the flares of the database when the
state is rebuilt). A flare is added to the state only once the flux has reached the time it is known
(`FlareObserved.known_at`: a catalogue flare's peak, a detected flare's end, when the detector reports it);
until then it is held back, so the state never knows more than the live stream knew at that instant.
"""

from __future__ import annotations

import asyncio
import heapq
from datetime import datetime, timedelta
from typing import Awaitable, Callable

import pandas as pd

from services.predictor.cadence import CadenceClock
from services.predictor.forecasts import PointForecast, forecast_id, forecast_point
from services.predictor.models import ModelSlots
from services.predictor.store import History
from shared import messages as m
from shared.features import FeatureParams, FeatureState, FeatureVector, feature_table
from shared.logging import get_logger

log = get_logger(__name__)
HistoryLoader = Callable[[datetime], Awaitable[History]]
LoggedFilter = Callable[[list[str]], Awaitable[set[str]]]  # which of these forecast ids are logged already


def compute_points(models: list, observations: pd.DataFrame, flares: pd.DataFrame, issued_at: datetime) -> list[PointForecast]:
    """The forecast of each model at `issued_at`; features are computed once per distinct feature parameters."""
    features: dict[FeatureParams, FeatureVector] = {}
    points = []
    for model in models:
        params = model.feature_params
        if params not in features:
            features[params] = FeatureVector.from_table(feature_table(observations, flares, [issued_at], params))
        points.append(forecast_point(model, features[params]))
    return points


class StreamForecaster:
    def __init__(self, params: FeatureParams, cadence: timedelta, slots: ModelSlots, history: HistoryLoader,
                 logged: LoggedFilter, run: Callable[..., Awaitable] = asyncio.to_thread):
        self.params = params
        self.slots = slots
        self._history = history
        self._logged = logged
        self._run = run
        self.state = FeatureState(params)
        self.clock = CadenceClock(cadence, rewind_after=timedelta(hours=params.flux_lookback_hours))
        # Flares whose peak the flux has not reached yet: a heap of (peak, id), one entry per flare id (a
        # redelivered or replayed flare replaces the held one).
        self._held_order: list[tuple[datetime, str]] = []
        self._held_flares: dict[str, m.FlareObserved] = {}
        self._correlation_id: str | None = None
        self.latest: m.ForecastIssued | None = None
        self.skipped_without_model = 0
        self.already_logged = 0

    @property
    def newest_flux(self) -> datetime | None:
        return self.clock.newest

    async def on_flux(self, reading: m.FluxObserved) -> list[m.ForecastIssued]:
        """The forecasts this reading makes due (usually none; one per cadence step; several after a gap)."""
        time = reading.event_time
        if self.clock.needs_position(time):
            await self._reposition(time)
        self._release_flares(time)
        issued: list[m.ForecastIssued] = []
        for issue_time in self.clock.advance(time):
            issued += await self._forecast(issue_time, self._correlation_id or reading.correlation_id)
        self.state.update_flux(reading)
        self._correlation_id = reading.correlation_id or self._correlation_id
        return issued

    def on_flare(self, flare: m.FlareObserved) -> None:
        newest = self.clock.newest
        if newest is not None and flare.known_at <= newest:
            self.state.update_flare(flare)
        else:
            if flare.message_id not in self._held_flares:
                heapq.heappush(self._held_order, (flare.known_at, flare.message_id))
            self._held_flares[flare.message_id] = flare

    def _release_flares(self, until: datetime) -> None:
        while self._held_order and self._held_order[0][0] <= until:
            _, message_id = heapq.heappop(self._held_order)
            self.state.update_flare(self._held_flares.pop(message_id))

    async def _reposition(self, time: datetime) -> None:
        rewound = self.clock.newest is not None
        history = await self._history(time)
        self.state = FeatureState(self.params)
        for reading in history.flux_messages():
            self.state.update_flux(reading)
        self.clock.position(time, history.latest_reading)
        for flare in history.flare_messages():
            self.on_flare(flare)
        log.info("stream.positioned", at=time.isoformat(), rewound=rewound, readings=len(history.flux_rows),
                 flares=len(history.flare_rows), next_issue=self.clock.next_issue.isoformat())

    async def _forecast(self, issued_at: datetime, correlation_id: str | None) -> list[m.ForecastIssued]:
        serving = self.slots.serving()
        if not serving:
            self.skipped_without_model += 1
            log.warning("forecast.skipped", issued_at=issued_at.isoformat(), reason="no champion model is loaded")
            return []
        ids = [forecast_id(model.version, shadow, issued_at) for model, shadow in serving]
        logged = await self._logged(ids)
        due = [(model, shadow) for (model, shadow), id_ in zip(serving, ids) if id_ not in logged]
        self.already_logged += len(serving) - len(due)
        if not due:
            return []
        # the frames are taken on the event loop (the flare agent changes the state there); the work runs aside
        observations, flares = self.state.observations(), self.state.flares()
        points = await self._run(compute_points, [model for model, _ in due], observations, flares, issued_at)
        messages = [point.message(shadow=shadow, correlation_id=correlation_id) for point, (_, shadow) in zip(points, due)]
        self.latest = messages[0]
        return messages
