"""What every service's REST API answers alike."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import prometheus_client
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders

import shared.telemetry  # noqa: F401  (first: it configures the registry before this module's histogram)

HTTP_REQUEST_DURATION = prometheus_client.Histogram(
    "flare_http_request_duration_seconds", "REST request latency until the response starts",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def serve_metrics(app: FastAPI) -> None:
    """`GET /metrics` in Prometheus' text format, and every request's latency in
    `flare_http_request_duration_seconds` by route template (never the raw path: its parameters are unbounded)."""
    app.add_middleware(_RequestTimer)

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)


class _RequestTimer:
    """Pure ASGI, so a streamed answer (server-sent events) is timed to its first byte and passes unbuffered."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        timed = False

        def observe(status: int) -> None:
            nonlocal timed
            timed = True
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # the router names the route it took
            HTTP_REQUEST_DURATION.labels(method=scope["method"], route=route, status=str(status)).observe(
                time.perf_counter() - started)

        async def send_timed(message: dict) -> None:
            if message["type"] == "http.response.start":
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        except BaseException:
            if not timed:
                observe(500)
            raise


def refuse_unstorable_text(app: FastAPI) -> None:
    """PostgreSQL text cannot hold NUL: a request carrying one in a parameter or body is a 422 in FastAPI's own
    validation-error shape (the one each API documents), not a 500. The statement failed, so nothing changed."""

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    async def _unstorable_text(request: Request, exc: asyncpg.CharacterNotInRepertoireError) -> JSONResponse:
        return JSONResponse({"detail": [{
            "loc": ["request"], "type": "value_error",
            "msg": "text in the request cannot be stored or searched: it contains a NUL (\\u0000) character",
        }]}, status_code=422)


# An API answer is JSON that nothing should render, frame or run.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# A page of the project's own: its script, style sheet and event stream come from itself; the legend swatches
# are styled through the CSSOM, which style-src does not govern.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# FastAPI's /docs (Swagger UI) and /redoc pages load their script and styles from cdn.jsdelivr.net (Redoc its
# fonts from Google, both a favicon from fastapi.tiangolo.com) and start them with an inline script; the CSP
# allows exactly that, so the pages work wherever those hosts are reachable. Offline, /openapi.json still answers.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; "
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_FIXED_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


class _HardeningHeaders:
    """Pure ASGI, so a streamed answer (the dashboard's server-sent events) passes through unbuffered. It wraps
    the layer that turns exceptions into answers, so a 401, 404 or 422 carries the headers as a 200 does."""

    def __init__(self, app: Any, csp_by_path: dict[str, str]):
        self.app = app
        self.csp_by_path = csp_by_path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.csp_by_path.get(scope["path"], API_CSP)

        async def send_hardened(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in {**_FIXED_HEADERS, "content-security-policy": policy}.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_hardened)


def send_hardening_headers(app: FastAPI, pages: tuple[str, ...] = ()) -> None:
    """Every answer of `app` carries nosniff, DENY framing, no referrer and a Content-Security-Policy: the API's
    strict one, FastAPI's docs pages theirs, and `pages` (the app's own HTML pages) the self-only one."""
    csp_by_path = {path: DOCS_CSP for path in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
                   if path}
    csp_by_path.update({path: PAGE_CSP for path in pages})
    app.add_middleware(_HardeningHeaders, csp_by_path=csp_by_path)
