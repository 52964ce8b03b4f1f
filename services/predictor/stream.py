"""From the flux and flare streams to forecasts on the cadence, in event time.

For each flux reading: the readings and flares known before it are in the feature state; if the reading makes
issue times due, the forecasts for them are computed from that state (for the champion, and the challenger
in shadow) before the reading itself is added. The features come from the one feature function on the
state's buffer, which holds the same readings the database holds for that instant, so a forecast from the
stream equals the REST forecast for the same instant.

Readings come in batches: one at a time live, thousands when the stream is behind (a replay, a backlog after
an outage). The issue times a batch makes due are computed together, as the trainer's backtest does: one
feature table and one model call per model for all of them, from the state after the batch. That equals
computing each when it became due, because features at `t` read only readings before `t` and flares that
peaked by `t`, and the state is kept from the earliest pending issue time on; whatever the batch brings that
a pending forecast would read (a late reading, a flare known after its peak, a rewind) makes the pending ones
computed first, from the state as it was.

Live, the forecast of the next issue time is computed ahead, from the reading before it: when a reading is the
last of its cadence before an issue time, the forecast at that time is computed (in a thread) while the stream
waits for the next reading, and issued when that reading makes it due, if nothing it reads has changed
meanwhile (no reading tagged before it, no flare, the same models serving); otherwise it is computed again.
Features at `t` read only readings before `t`, so the reading that makes `t` due changes nothing: a forecast
computed ahead is the one computed when due, and a live forecast waits only for the broker and the log.

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
from typing import Awaitable, Callable, Sequence

import pandas as pd

from services.predictor.cadence import CadenceClock
from services.predictor.forecasts import PointForecast, forecast_id, forecast_point
from services.predictor.models import ModelSlots
from services.predictor.store import History
from shared import messages as m
from shared.features import FeatureParams, FeatureState, FeatureVector, feature_table
from shared.forecast_model import Forecast, ForecastModel, forecast_message
from shared.logging import get_logger

log = get_logger(__name__)
HistoryLoader = Callable[[datetime], Awaitable[History]]
LoggedFilter = Callable[[list[str]], Awaitable[set[str]]]  # which of these forecast ids are logged already


def compute_points(models: list, observations: pd.DataFrame, flares: pd.DataFrame,
                   issued_at: datetime) -> list[PointForecast]:
    """The forecast of each model at `issued_at`; features are computed once per distinct feature parameters."""
    features: dict[FeatureParams, FeatureVector] = {}
    points = []
    for model in models:
        params = model.feature_params
        if params not in features:
            features[params] = FeatureVector.from_table(feature_table(observations, flares, [issued_at], params))
        points.append(forecast_point(model, features[params]))
    return points


def forecast_batch(models: Sequence[ForecastModel], observations: pd.DataFrame, flares: pd.DataFrame,
                   issue_times: Sequence[datetime]) -> list[list[Forecast]]:
    """Each model's forecasts at every issue time: one feature table per distinct feature parameters and one
    `forecast_table` call per model (the backtest's path; `forecast` is the same call with one row)."""
    tables: dict[FeatureParams, pd.DataFrame] = {}
    forecasts = []
    for model in models:
        params = model.feature_params
        if params not in tables:
            tables[params] = feature_table(observations, flares, list(issue_times), params)
        table = model.forecast_table(tables[params])
        forecasts.append([model.forecast_at(table, row) for row in range(len(issue_times))])
    return forecasts


class _Pending:
    """Issue times a batch has made due and not yet computed (ascending), with the correlation id of each."""

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.correlation_ids: list[str | None] = []

    def add(self, times: list[datetime], correlation_id: str | None) -> None:
        self.times += times
        self.correlation_ids += [correlation_id] * len(times)

    def read_reading(self, time: datetime) -> bool:
        """Would a pending forecast read a reading at `time` (one before its issue time)?"""
        return bool(self.times) and time < self.times[-1]

    def read_flare(self, peak_time: datetime) -> bool:
        """Would a pending forecast read a flare peaking at `peak_time` (by its issue time)?"""
        return bool(self.times) and peak_time <= self.times[-1]

    def take(self) -> tuple[list[datetime], list[str | None]]:
        taken = self.times, self.correlation_ids
        self.times, self.correlation_ids = [], []
        return taken


class _Ahead:
    """A forecast computed before it is due: at `issued_at`, by `serving`, from `state` as it was when it began."""

    def __init__(self, issued_at: datetime, state: FeatureState, serving: list[tuple[ForecastModel, bool]],
                 result: asyncio.Future):
        self.issued_at = issued_at
        self.state = state
        self.serving = serving
        self.result = result
        # one discarded mid-way must not log its error as never retrieved: the forecast is computed again
        result.add_done_callback(lambda done: done.cancelled() or done.exception())

    def serves(self, times: list[datetime], state: FeatureState, serving: list[tuple[ForecastModel, bool]]) -> bool:
        """Is this what the forecasts at `times` by `serving` from `state` would be?"""
        return (times == [self.issued_at] and state is self.state and not state.changed_since_watch
                and len(serving) == len(self.serving)
                and all(a is b and a_shadow == b_shadow for (a, a_shadow), (b, b_shadow) in zip(serving, self.serving)))


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
        self._ahead: _Ahead | None = None
        self.computed_ahead = 0  # forecasts issued as computed ahead (live)

    @property
    def newest_flux(self) -> datetime | None:
        return self.clock.newest

    async def on_flux(self, reading: m.FluxObserved) -> list[m.ForecastIssued]:
        """The forecasts this reading makes due (usually none; one per cadence step; several after a gap)."""
        return await self.on_readings([reading])

    async def on_readings(self, readings: Sequence[m.FluxObserved]) -> list[m.ForecastIssued]:
        """The forecasts these readings (in order) make due, computed together where they can be."""
        pending = _Pending()
        issued: list[m.ForecastIssued] = []
        for reading in readings:
            time = reading.event_time
            if self.clock.needs_position(time):
                issued += await self._forecast(pending)
                await self._reposition(time)
            for flare in self._flares_known_by(time):
                if pending.read_flare(flare.peak_time) or self.state.knows_flare(flare.message_id):
                    issued += await self._forecast(pending)
                self.state.update_flare(flare)
            if pending.read_reading(time):  # a late reading, in an hour a pending forecast reads
                issued += await self._forecast(pending)
            due = self.clock.advance(time)
            if due and not pending.times:
                self.state.keep_from(due[0])
            pending.add(due, self._correlation_id or reading.correlation_id)
            self.state.update_flux(reading)
            self._correlation_id = reading.correlation_id or self._correlation_id
        issued += await self._forecast(pending)
        if len(readings) == 1:  # live; behind, the next batch makes several issue times due at once
            self._compute_ahead(readings[0])
        return issued

    def _compute_ahead(self, reading: m.FluxObserved) -> None:
        """When `reading` is the last of its cadence before the next issue time, start that forecast."""
        issue = self.clock.next_issue
        serving = self.slots.serving()
        if (issue is None or not serving or self.clock.newest is None or reading.event_time < self.clock.newest
                or reading.event_time + timedelta(seconds=reading.cadence_seconds) < issue):
            return
        self.state.watch_before(issue)
        result = asyncio.ensure_future(self._run(forecast_batch, [model for model, _ in serving],
                                                 self.state.observations(), self.state.flares(), [issue]))
        self._ahead = _Ahead(issue, self.state, serving, result)

    def on_flare(self, flare: m.FlareObserved) -> None:
        newest = self.clock.newest
        if newest is not None and flare.known_at <= newest:
            self.state.update_flare(flare)
        else:
            if flare.message_id not in self._held_flares:
                heapq.heappush(self._held_order, (flare.known_at, flare.message_id))
            self._held_flares[flare.message_id] = flare

    def _flares_known_by(self, until: datetime) -> list[m.FlareObserved]:
        """The held flares known by `until`, no longer held."""
        known = []
        while self._held_order and self._held_order[0][0] <= until:
            _, message_id = heapq.heappop(self._held_order)
            known.append(self._held_flares.pop(message_id))
        return known

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

    async def _forecast(self, pending: _Pending) -> list[m.ForecastIssued]:
        """The forecasts of the pending issue times by the models serving now, but those the log holds."""
        times, correlation_ids = pending.take()
        self.state.keep_from(None)
        if not times:
            return []
        serving = self.slots.serving()
        if not serving:
            self.skipped_without_model += len(times)
            log.warning("forecast.skipped", issued_at=[t.isoformat() for t in times],
                        reason="no champion model is loaded")
            return []
        ahead, self._ahead = self._ahead, None
        if ahead is None or not ahead.serves(times, self.state, serving):
            ahead = None
            # the frames are taken before anything awaits: the flare agent changes the state meanwhile
            observations, flares = self.state.observations(), self.state.flares()
        ids = [[forecast_id(model.version, shadow, t) for model, shadow in serving] for t in times]
        logged = await self._logged([id_ for row in ids for id_ in row])
        self.already_logged += sum(id_ in logged for row in ids for id_ in row)
        wanted = [i for i, row in enumerate(ids) if not logged.issuperset(row)]
        if not wanted:
            return []
        if ahead is not None:
            forecasts = await ahead.result
            self.computed_ahead += 1
        else:
            forecasts = await self._run(forecast_batch, [model for model, _ in serving], observations, flares,
                                        [times[i] for i in wanted])
        messages = []
        for row, i in enumerate(wanted):
            at_time = [
                forecast_message(forecasts[column][row], model.version, horizon_hours=model.horizon_hours,
                                 shadow=shadow, correlation_id=correlation_ids[i])
                for column, (model, shadow) in enumerate(serving) if ids[i][column] not in logged
            ]
            self.latest = at_time[0]
            messages += at_time
        return messages
