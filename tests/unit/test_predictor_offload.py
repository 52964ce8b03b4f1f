"""Uncached REST forecasts in worker processes: the same numbers as in the service, the champion of the moment,
and an answer even when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pandas as pd
import psutil
import pytest

import services.predictor.offload as offload
from services.predictor.offload import ForecastProcesses
from services.predictor.stream import compute_points
from shared.forecast_model import ForecastModel
from tests.conftest import PROJECT_ROOT
from tests.unit.test_predictor_stream import july_readings, model, observations_before

INSTANTS = [datetime(2015, 7, day, hour, minute, tzinfo=timezone.utc) for day, hour, minute in
            ((5, 0, 0), (9, 13, 37), (17, 6, 1))]
NO_FLARES = pd.DataFrame(columns=["peak_time", "peak_flux", "scaling_era", "source"])


def history_before(at: datetime) -> pd.DataFrame:
    return observations_before(july_readings(), at, since=at - timedelta(hours=72))


def in_the_service(served: ForecastModel, at: datetime):
    [point] = compute_points([served], history_before(at), NO_FLARES, at)
    return point.message()


async def until_ready(processes: ForecastProcesses) -> None:
    async with asyncio.timeout(120):
        while not processes.ready:
            await asyncio.sleep(0.1)


def worker_processes() -> list[psutil.Process]:
    return [child for child in psutil.Process().children()
            if "--multiprocessing-fork" in " ".join(child.cmdline()) and "resource_tracker" not in child.cmdline()[-1]]


@pytest.fixture
def processes():
    started = ForecastProcesses(2)
    yield started
    started.close()


async def test_forecasts_from_the_processes_are_those_of_the_service_and_follow_the_champion(processes, monkeypatch):
    first, second = model("v-first"), model("v-second", coxph_alpha=1.0)
    expected = {(m.version, at): in_the_service(m, at) for m in (first, second) for at in INSTANTS}
    processes.serve(first)
    # the first request is answered in a thread while the processes start
    answered = await processes.point(first, history_before(INSTANTS[0]), NO_FLARES, INSTANTS[0])
    assert answered.message() == expected[first.version, INSTANTS[0]]
    await until_ready(processes)

    # from now on nothing is computed in this process
    def not_here(*args):
        raise AssertionError("computed in the service's process")

    monkeypatch.setattr(offload, "compute_points", not_here)
    for at in INSTANTS:
        point = await processes.point(first, history_before(at), NO_FLARES, at)
        assert point.model is first and point.message() == expected[first.version, at]

    processes.serve(second)
    assert not processes.ready
    monkeypatch.undo()
    await processes.point(second, history_before(INSTANTS[0]), NO_FLARES, INSTANTS[0])
    await until_ready(processes)
    monkeypatch.setattr(offload, "compute_points", not_here)
    answers = await asyncio.gather(*(processes.point(second, history_before(at), NO_FLARES, at) for at in INSTANTS))
    assert [a.message() for a in answers] == [expected[second.version, at] for at in INSTANTS]


async def test_a_killed_worker_costs_no_answer_and_the_processes_start_again(processes):
    champion = model("v-champion")
    processes.serve(champion)
    others = {w.pid for w in worker_processes()}  # of processes other tests started in this one
    await processes.point(champion, history_before(INSTANTS[0]), NO_FLARES, INSTANTS[0])
    await until_ready(processes)
    workers = [w for w in worker_processes() if w.pid not in others]
    assert len(workers) == 2, workers
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    psutil.wait_procs(workers, timeout=10)

    point = await processes.point(champion, history_before(INSTANTS[1]), NO_FLARES, INSTANTS[1])
    assert point.message() == in_the_service(champion, INSTANTS[1])
    await processes.point(champion, history_before(INSTANTS[2]), NO_FLARES, INSTANTS[2])
    await until_ready(processes)
    assert {w.pid for w in worker_processes()} - others and {w.pid for w in worker_processes()}.isdisjoint(
        w.pid for w in workers)


async def test_the_event_loop_goes_on_while_the_processes_start(processes):
    """Starting a process blocks until it has imported the service's modules and read the model: that happens
    aside, and the stream and the other requests sharing the loop do not wait for it."""
    champion = model("v-loop")
    processes.serve(champion)
    clock = asyncio.get_running_loop().time
    pauses: list[float] = []

    async def tick() -> None:
        while True:
            last = clock()
            await asyncio.sleep(0.01)
            pauses.append(clock() - last)

    observations = history_before(INSTANTS[0])  # read before the clock runs: the file is parsed on first use
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    start = clock()
    await processes.point(champion, observations, NO_FLARES, INSTANTS[0])
    await until_ready(processes)
    starting = clock() - start
    ticker.cancel()
    assert max(pauses) < starting / 4, f"the loop stood still {max(pauses):.2f} s of the {starting:.2f} s start"


async def test_a_service_stopped_while_its_processes_start_leaves_none_behind():
    stopping = ForecastProcesses(2)
    champion = model("v-stopped")
    stopping.serve(champion)
    others = {w.pid for w in worker_processes()}
    await stopping.point(champion, history_before(INSTANTS[0]), NO_FLARES, INSTANTS[0])
    stopping.close()  # while they start
    async with asyncio.timeout(120):
        while stopping._starting is not None:
            await asyncio.sleep(0.1)
    started = [w for w in worker_processes() if w.pid not in others]
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive and not stopping.ready


def test_no_processes_means_every_forecast_in_a_thread():
    threads_only = ForecastProcesses(0)
    champion = model("v-threads")
    threads_only.serve(champion)
    point = asyncio.run(threads_only.point(champion, history_before(INSTANTS[1]), NO_FLARES, INSTANTS[1]))
    assert point.message() == in_the_service(champion, INSTANTS[1]) and not threads_only.ready


SERVICE_THEN_KILLED = """
import asyncio
from services.predictor.offload import ForecastProcesses
from tests.unit.test_predictor_offload import INSTANTS, NO_FLARES, history_before, until_ready, worker_processes
from tests.unit.test_predictor_stream import model

async def serve():
    processes, champion = ForecastProcesses(2), model("v-killed")
    processes.serve(champion)
    await processes.point(champion, history_before(INSTANTS[0]), NO_FLARES, INSTANTS[0])
    await until_ready(processes)
    print("workers:", *(worker.pid for worker in worker_processes()), flush=True)
    await asyncio.sleep(600)

asyncio.run(serve())
"""


def test_the_workers_of_a_killed_service_go_with_it():
    service = subprocess.Popen([sys.executable, "-c", SERVICE_THEN_KILLED], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = next(line for line in service.stdout if line.startswith("workers:"))  # past the log lines
        pids = [int(pid) for pid in line.split()[1:]]
        assert len(pids) == 2, pids
        workers = [psutil.Process(pid) for pid in pids]
    finally:
        service.kill()  # SIGKILL: nothing of the service runs to shut its workers down
        service.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers outlived the killed service: {alive}"
