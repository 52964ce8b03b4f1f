"""API keys and per-key rate limits on the prediction routes."""

from __future__ import annotations

import pytest

from services.predictor.access import ApiKeyGuard, KeyRejected, RateLimited


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_configured_keys_everyone_may_ask():
    guard = ApiKeyGuard([], per_minute=1)
    assert [guard.admit(None) for _ in range(5)] == [None] * 5


def test_with_keys_a_request_needs_a_known_one():
    guard = ApiKeyGuard(["alpha-secret"], per_minute=10)
    with pytest.raises(KeyRejected, match="X-API-Key"):
        guard.admit(None)
    with pytest.raises(KeyRejected, match="unknown"):
        guard.admit("guess")
    holder = guard.admit("alpha-secret")
    assert holder.startswith("key-") and "alpha" not in holder


def test_each_key_has_its_own_budget_which_refills_with_time():
    clock = FakeClock()
    guard = ApiKeyGuard(["a", "b"], per_minute=3, clock=clock)
    for _ in range(3):
        guard.admit("a")
    with pytest.raises(RateLimited) as limited:
        guard.admit("a")
    assert 0 < limited.value.retry_after_seconds <= 20
    guard.admit("b")  # another key is not held back by the first one's use
    clock.now += 20   # a third of a minute gives one request back
    guard.admit("a")
    with pytest.raises(RateLimited):
        guard.admit("a")
