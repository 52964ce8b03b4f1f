"""Uncached REST forecasts computed in worker processes, so that concurrent clients use every core.

A forecast is tens of milliseconds of pandas and numpy work that holds the GIL: computed in the service's
threads, concurrent requests queue behind each other on one core while the stream waits for the same lock.
Each worker process holds the champion (sent once, when the processes start); a request sends the history it
read (the flux as the columns PostgreSQL returned, made a frame there, or a frame) and gets the features and the
forecast back, computed by the same `compute_points` as in the service, so the numbers are the same.

The processes start on the first uncached request, not with the service (they cost seconds of CPU that
a predictor which is never asked would waste), and again after each change of champion. Until they answer,
and if they break (a worker killed), forecasts are computed in a thread as before: a request is never refused
because the processes are not there.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
import pandas as pd

from services.predictor.forecasts import PointForecast
from services.predictor.store import FluxColumns, observations_from_flux_columns
from services.predictor.stream import compute_points
from shared.features import FeatureVector
from shared.forecast_model import Forecast, ForecastModel
from shared.logging import get_logger

log = get_logger(__name__)

_served: dict[str, ForecastModel] = {}  # in a worker process: the model it computes for, by version


def _hold(model: ForecastModel) -> None:
    _served[model.version] = model
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="exit-with-the-service", daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    # a service that is killed cannot shut its workers down, and they would wait for work forever holding the model
    parent.join()
    os._exit(0)


def _ready() -> bool:
    return bool(_served)


Observations = pd.DataFrame | FluxColumns | None  # a frame, or the flux as `store.forecast_history` read it


def _point(model: ForecastModel, observations: Observations, flares: pd.DataFrame,
           issued_at: datetime) -> PointForecast:
    frame = observations if isinstance(observations, pd.DataFrame) else observations_from_flux_columns(observations)
    [point] = compute_points([model], frame, flares, issued_at)
    return point


def _compute(version: str, observations: Observations, flares: pd.DataFrame,
             issued_at: datetime) -> tuple[FeatureVector, Forecast]:
    # the model stays here: it is the biggest part of a PointForecast and the caller holds it already
    point = _point(_served[version], observations, flares, issued_at)
    return point.features, point.forecast


class ForecastProcesses:
    """`processes` worker processes computing the champion's forecasts (none: every forecast in a thread)."""

    def __init__(self, processes: int):
        self.processes = processes
        self._model: ForecastModel | None = None
        self._executor: ProcessPoolExecutor | None = None
        self._starting: asyncio.Future | None = None
        self._closed = False

    def serve(self, model: ForecastModel | None) -> None:
        """The champion changed: the processes holding the old one finish what they have and go."""
        if model is self._model:
            return
        self._model = model
        self._retire()

    async def point(self, model: ForecastModel, observations: Observations, flares: pd.DataFrame,
                    issued_at: datetime) -> PointForecast:
        executor = self._ready_for(model)
        if executor is not None:
            try:
                features, forecast = await asyncio.get_running_loop().run_in_executor(
                    executor, _compute, model.version, observations, flares, issued_at)
                return PointForecast(model, features, forecast)
            except BrokenProcessPool:
                log.warning("rest_processes.broken", version=model.version)
                if executor is self._executor:
                    self._retire()
        return await asyncio.to_thread(_point, model, observations, flares, issued_at)

    @property
    def ready(self) -> bool:
        """Are the processes started and holding the champion (what /health reports)?"""
        return self._executor is not None

    def close(self) -> None:
        self._closed = True
        self._retire()

    def _ready_for(self, model: ForecastModel) -> ProcessPoolExecutor | None:
        """The processes, when they hold `model` and have answered; starts them when they are not there."""
        if self.processes < 1 or model is not self._model:
            return None
        if self._executor is None and self._starting is None:
            # aside from the event loop: starting a process blocks until it has imported the service's modules
            # and read the model (seconds), and the stream and the other requests must not wait for that
            self._starting = asyncio.get_running_loop().run_in_executor(None, self._started, model)
            self._starting.add_done_callback(lambda done: self._take(model, done))
            log.info("rest_processes.starting", processes=self.processes, version=model.version)
        return self._executor

    def _take(self, model: ForecastModel, done: asyncio.Future) -> None:
        self._starting = None
        try:
            executor = done.result()
        except Exception as exc:  # the next uncached request tries again; until then, threads
            log.error("rest_processes.failed", version=model.version, error=repr(exc))
            return
        if executor is None:
            return
        if model is not self._model or self._closed:  # the champion changed, or the service stopped, meanwhile
            executor.shutdown(wait=False)
            return
        self._executor = executor
        log.info("rest_processes.ready", processes=self.processes, version=model.version)

    def _retire(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._executor = None


    def _started(self, model: ForecastModel) -> ProcessPoolExecutor | None:
        """Started processes holding `model` (spawned, not forked: the service's threads, the broker client's and
        the event loop's, do not survive a fork); None when the service stopped meanwhile, whose event loop may
        be gone and would never take them."""
        executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_hold, initargs=(model,))
        # one call per process, so that every process is started (and holds the model) before it is used
        for call in [executor.submit(_ready) for _ in range(self.processes)]:
            call.result()
        if self._closed:
            executor.shutdown(wait=False)
            return None
        return executor
