"""REST forecasts already computed, so the same question on the same stored data is answered once.

A forecast at `t` depends only on the model and on the history stored before `t` (the flux and flare windows
`store.history_before` reads). The key holds the model's version, `t` and a fingerprint of that history (its
row counts and latest write, one small query), so a reading or flare stored, corrected or removed later gives
a new key: a cached answer is always the one a fresh computation would give now.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Hashable

from services.predictor.forecasts import PointForecast

CacheKey = tuple[str, datetime, Hashable]


class ForecastCache:
    """The `capacity` most recently used forecasts; the least recently used one is dropped first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[CacheKey, PointForecast] = OrderedDict()

    def get(self, key: CacheKey) -> PointForecast | None:
        point = self._entries.get(key)
        if point is not None:
            self._entries.move_to_end(key)
        return point

    def put(self, key: CacheKey, point: PointForecast) -> None:
        self._entries[key] = point
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
