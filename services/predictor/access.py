"""Who may ask for predictions, and how often: API keys and a token bucket per key.

With no keys configured (`API_KEYS` empty) the prediction routes are open, as on a single operator's machine;
with keys, each request needs `X-API-Key` and each key gets `rate_limit_per_minute` requests a minute (bursts
up to that many), after which it gets 429 with the seconds to wait. Keys have the form of `shared.credentials`
(`[name:]secret[@expiry]`): a key past its expiry is refused (401, "expired").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from shared import credentials


class KeyRejected(Exception):
    """Missing, unknown or expired API key: HTTP 401."""


class RateLimited(Exception):
    """The key spent its budget: HTTP 429."""

    def __init__(self, retry_after_seconds: float):
        super().__init__(f"rate limit exceeded; retry in {retry_after_seconds:.1f} s")
        self.retry_after_seconds = retry_after_seconds


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class ApiKeyGuard:
    keys: list[str]    # as configured: `[name:]secret[@expiry]`
    per_minute: int
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._credentials = [credentials.parse(key) for key in self.keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def admit(self, presented: str | None) -> str | None:
        """The holder of `presented` if it may make one more request now; raise otherwise. None when open."""
        if not self.enabled:
            return None
        if not presented:
            raise KeyRejected("an API key is required in the X-API-Key header")
        try:
            key = credentials.matching(presented, self._credentials, self.wall_clock(), "API key")[0]
        except credentials.CredentialRejected as exc:
            raise KeyRejected(str(exc)) from None
        self._spend(key.presented)
        return key.holder("key")

    def _spend(self, key: str) -> None:
        now = self.clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.setdefault(key, _Bucket(float(self.per_minute), now))
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise RateLimited((1.0 - bucket.tokens) / rate)
        bucket.tokens -= 1.0
