"""The dashboard's web side: the page, the view as JSON, and server-sent events to every open page.

A page that connects to `/events` first gets the whole view (`event: snapshot`), then what changed
(`event: delta`), at most every `push_interval` seconds so a fast replay does not flood the browsers. A page
that falls too far behind is disconnected; its EventSource reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from services.dashboard.view import DashboardView
from shared import messages as m
from shared.http import send_hardening_headers, serve_metrics
from shared.kafka import Received

STATIC_DIR = Path(__file__).parent / "static"
PUSH_INTERVAL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
SUBSCRIBER_BACKLOG = 64
RECONNECT_MS = 2000


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(payload: Any) -> str:
    """JSON the browser can parse: NaN and infinity (which JSON lacks) become null."""
    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(payload), allow_nan=False, separators=(",", ":"))


def sse_event(name: str, payload: Any) -> str:
    return f"event: {name}\ndata: {to_json(payload)}\n\n"


class Subscriber:
    """One open page: its queue of encoded events; None in the queue ends its stream."""

    def __init__(self, backlog: int):
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=backlog)

    def offer(self, event: str) -> bool:
        """Queue the event; False (and the stream is ended) when the page has fallen too far behind."""
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class Hub:
    """The view and the pages watching it."""

    def __init__(self, view: DashboardView, *, push_interval: float = PUSH_INTERVAL_SECONDS,
                 backlog: int = SUBSCRIBER_BACKLOG):
        self.view = view
        self.push_interval = push_interval
        self.backlog = backlog
        self.subscribers: set[Subscriber] = set()
        self.consumed = 0
        self.rejected = 0  # records the consumer dead-lettered
        self._last_push = float("-inf")

    def apply(self, messages: list[Received | m.Message]) -> None:
        """Fold in messages as consumed (with the time each was recorded) or bare (without it)."""
        for item in messages:
            if isinstance(item, Received):
                self.view.apply(item.message, item.recorded_ms)
            else:
                self.view.apply(item)
        self.consumed += len(messages)

    def push_changes(self, *, force: bool = False) -> bool:
        """Send what changed to every page if the push interval has passed (or `force`); True if sent."""
        now = time.monotonic()
        if not force and now - self._last_push < self.push_interval:
            return False
        delta = self.view.drain_delta()
        self._last_push = now
        if delta is None:
            return False
        event = sse_event("delta", delta)
        for subscriber in list(self.subscribers):
            if not subscriber.offer(event):
                self.subscribers.discard(subscriber)
        return True

    def subscribe(self) -> tuple[str, Subscriber]:
        """The snapshot to send first and the queue of what follows it (no await between: nothing is missed)."""
        subscriber = Subscriber(self.backlog)
        self.subscribers.add(subscriber)
        return sse_event("snapshot", self.view.snapshot()), subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)


async def event_stream(hub: Hub, keepalive_seconds: float = KEEPALIVE_SECONDS) -> AsyncIterator[str]:
    snapshot, subscriber = hub.subscribe()
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        yield snapshot
        while True:
            try:
                event = await asyncio.wait_for(subscriber.queue.get(), keepalive_seconds)
            except TimeoutError:
                yield ": keepalive\n\n"  # a comment line: keeps proxies from closing an idle stream
                continue
            if event is None:
                return
            yield event
    finally:
        hub.unsubscribe(subscriber)


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="Flare+ dashboard", docs_url=None, redoc_url=None)
    send_hardening_headers(app, pages=("/",))
    serve_metrics(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/api/snapshot")
    async def snapshot() -> Response:
        return Response(to_json(hub.view.snapshot()), media_type="application/json")

    @app.get("/events")
    async def events() -> StreamingResponse:
        return StreamingResponse(
            event_stream(hub), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/health")
    async def health_check() -> dict[str, Any]:
        return {"status": "ok", "consumed": hub.consumed, "rejected": hub.rejected, "pages": len(hub.subscribers)}

    return app
