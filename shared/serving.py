"""What every service's entry point does the same way: stop on SIGTERM and SIGINT, serve its REST API with a
uvicorn that leaves those signals to the service (in a faust worker, faust's own ASGI serving), and start a
faust worker from code."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any, Callable, Iterator, Sequence

import uvicorn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: Callable[[], object]) -> None:
    """Call `stop` on SIGTERM or SIGINT, in the running event loop."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop)


class ApiServer(uvicorn.Server):
    """uvicorn serving a service's API beside its consumers, without signal handlers of its own: the service
    (or the faust worker) owns SIGTERM and SIGINT and tells the server when to exit, so a stop has one path.
    uvicorn's own would begin a second shutdown on the same signal and, on a second Ctrl-C, force its exit
    while the consumers are still closing."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# uvicorn as every API runs it: the service logs (structlog), not uvicorn, and no API has a lifespan of its own
UVICORN_OPTIONS: dict[str, Any] = {"log_level": "warning", "log_config": None, "access_log": False, "lifespan": "off"}


def api_server(api: Any, host: str, port: int, **options: Any) -> ApiServer:
    return ApiServer(uvicorn.Config(api, host=host, port=port, **UVICORN_OPTIONS, **options))


def serve_in_worker(app: Any, api: Any, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
    """Serve `api` from the faust worker of `app`, with faust's own ASGI serving (`faust.contrib.asgi`): on the
    worker's loop, started once the app is up and stopped with it, with signals left to the worker.

    faust starts the server beside the app's tasks, not after them; with `ready`, every request is answered
    503 until it is set, so that a 200 from /health still means the service has done what it does at start."""
    from faust.contrib.asgi import serve_asgi

    app.conf.web_enabled = True
    serve_asgi(app, api if ready is None else ServedWhenReady(api, ready), host=host, port=port, **UVICORN_OPTIONS)


class ServedWhenReady:
    """An ASGI app that answers 503 until `ready` is set, then is `api`."""

    def __init__(self, api: Any, ready: asyncio.Event):
        self.api = api
        self.ready = ready

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.ready.is_set() or scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        body = b'{"detail":"starting: not ready to answer yet"}'
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def supervise(tasks: Sequence[asyncio.Task], stop: asyncio.Event, *, api: ApiServer | None = None) -> None:
    """Run a service's tasks (and its API) until `stop` is set or one of them ends; what ended one is raised.
    On the way out the API finishes the requests it holds, and the other tasks are cancelled and awaited."""
    stopper = asyncio.create_task(stop.wait(), name="stop")
    serving = [asyncio.create_task(api.serve(), name="api")] if api else []
    try:
        done, _ = await asyncio.wait([*tasks, *serving, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        if api:
            api.should_exit = True
        for task in (*tasks, stopper):
            task.cancel()
        await asyncio.gather(*tasks, *serving, stopper, return_exceptions=True)


def run_faust_worker(app: Any) -> None:
    """Run a faust app's worker in this process. faust reads the worker's options from the command line, so it
    is given the ones every service runs with. Its web server is the app's API (`serve_in_worker`), or none."""
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()
