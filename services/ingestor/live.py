"""The SWPC JSON feed client: timeouts, retries with backoff, conditional requests and an on-disk cache.

Every good response is written to the cache. When SWPC cannot be reached (after the retries) or answers with
something that is not a JSON array, the last cached copy is used if it is younger than the cache expiry,
and the snapshot says so; with no usable copy the fetch fails with `FeedUnavailable`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from shared.logging import get_logger
from shared.settings import IngestionSettings

log = get_logger(__name__)


class FeedUnavailable(RuntimeError):
    """Neither SWPC nor a fresh enough cached copy could give the feed."""


@dataclass(frozen=True)
class FeedSnapshot:
    feed: str
    body: bytes
    fetched_at: datetime
    from_cache: bool
    reason: str | None = None  # why the cache was used

    @property
    def source(self) -> str:
        return f"swpc:{self.feed}"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


class SwpcFeedClient:
    def __init__(self, settings: IngestionSettings, cache_dir: Path, *,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        self._cache_dir = cache_dir
        self._client = httpx.AsyncClient(
            base_url=settings.swpc_base_url.rstrip("/") + "/", timeout=settings.http_timeout_seconds,
            transport=transport, headers={"User-Agent": "flare-plus-ingestor"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> "SwpcFeedClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- cache --

    def _paths(self, feed: str) -> tuple[Path, Path]:
        # a feed may name SWPC's folder (primary/..., secondary/...): one flat cache file per feed
        name = feed.replace("/", "__")
        return self._cache_dir / name, self._cache_dir / f"{name}.meta.json"

    def _read_cache(self, feed: str) -> tuple[bytes, dict] | None:
        body_path, meta_path = self._paths(feed)
        try:
            return body_path.read_bytes(), json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _write_cache(self, feed: str, body: bytes, response: httpx.Response, fetched_at: datetime) -> None:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        body_path, meta_path = self._paths(feed)
        meta = {"fetched_at": fetched_at.isoformat(), "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified")}
        for path, content in ((body_path, body), (meta_path, json.dumps(meta).encode())):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)

    # -- fetching --

    async def _get(self, feed: str, cached_meta: dict | None) -> httpx.Response:
        headers = {}
        if cached_meta and cached_meta.get("etag"):
            headers["If-None-Match"] = cached_meta["etag"]
        if cached_meta and cached_meta.get("last_modified"):
            headers["If-Modified-Since"] = cached_meta["last_modified"]
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self._settings.http_retries + 1),
            wait=wait_exponential(multiplier=self._settings.retry_backoff_seconds, max=60),
            reraise=True,
        ):
            with attempt:
                number = attempt.retry_state.attempt_number
                if number > 1:
                    log.info("swpc.retry", feed=feed, attempt=number)
                response = await self._client.get(feed, headers=headers)
                if response.status_code != 304:
                    response.raise_for_status()
        return response

    async def fetch(self, feed: str) -> FeedSnapshot:
        """The feed as SWPC serves it now, or the cached copy (marked) when SWPC cannot give it."""
        cached = self._read_cache(feed)
        now = datetime.now(timezone.utc)
        try:
            response = await self._get(feed, cached[1] if cached else None)
            if response.status_code == 304 and cached is not None:
                # Unchanged since the cached copy: it is current, not a fallback.
                self._write_cache(feed, cached[0], response, now)
                return FeedSnapshot(feed, cached[0], now, from_cache=False)
            body = response.content
            payload = json.loads(body)
            if not isinstance(payload, list):
                raise ValueError(f"expected a JSON array, got {type(payload).__name__}")
        except (httpx.HTTPError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()
            return self._fallback(feed, cached, now, reason)
        self._write_cache(feed, body, response, now)
        return FeedSnapshot(feed, body, now, from_cache=False)

    def _fallback(self, feed: str, cached: tuple[bytes, dict] | None, now: datetime, reason: str) -> FeedSnapshot:
        if cached is None:
            log.error("swpc.unavailable", feed=feed, reason=reason, cache="none")
            raise FeedUnavailable(f"{feed}: SWPC unreachable ({reason}) and no cached copy")
        fetched_at = datetime.fromisoformat(cached[1]["fetched_at"])
        age = (now - fetched_at).total_seconds()
        if age > self._settings.cache_expiry_seconds:
            log.error("swpc.unavailable", feed=feed, reason=reason, cache_age_seconds=round(age))
            raise FeedUnavailable(
                f"{feed}: SWPC unreachable ({reason}) and the cached copy is {age:.0f}s old,"
                f" past the {self._settings.cache_expiry_seconds:.0f}s expiry"
            )
        log.warning("swpc.fallback_to_cache", feed=feed, reason=reason, cache_age_seconds=round(age))
        return FeedSnapshot(feed, cached[0], fetched_at, from_cache=True,
                            reason=f"{reason}; used cache from {fetched_at.isoformat()}")
