"""Who may ask for predictions, and how often: API keys and a token bucket per key.

With no keys configured (`API_KEYS` empty) the prediction routes are open, as on a single operator's machine;
with keys, each request needs `X-API-Key` and each key gets `rate_limit_per_minute` requests a minute (bursts
up to that many), after which it gets 429 with the seconds to wait.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Callable


class KeyRejected(Exception):
    """Missing or unknown API key: HTTP 401."""


class RateLimited(Exception):
    """The key spent its budget: HTTP 429."""

    def __init__(self, retry_after_seconds: float):
        super().__init__(f"rate limit exceeded; retry in {retry_after_seconds:.1f} s")
        self.retry_after_seconds = retry_after_seconds


def key_holder(key: str) -> str:
    """How logs name a key without revealing it."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class ApiKeyGuard:
    keys: list[str]
    per_minute: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def admit(self, presented: str | None) -> str | None:
        """The holder of `presented` if it may make one more request now; raise otherwise. None when open."""
        if not self.enabled:
            return None
        if not presented:
            raise KeyRejected("an API key is required in the X-API-Key header")
        # every key is compared, in constant time, so timing does not tell how close a guess was
        matched = [known for known in self.keys if hmac.compare_digest(presented.encode(), known.encode())]
        if not matched:
            raise KeyRejected("unknown API key")
        self._spend(matched[0])
        return key_holder(matched[0])

    def _spend(self, key: str) -> None:
        now = self.clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.setdefault(key, _Bucket(float(self.per_minute), now))
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise RateLimited((1.0 - bucket.tokens) / rate)
        bucket.tokens -= 1.0
