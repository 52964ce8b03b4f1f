"""The predictor's event-time clock: which issue times a flux reading makes due.

Issue times are the multiples of the cadence (hourly by default, aligned to the epoch, so 00:00, 01:00, ...).
A forecast for issue time `t` is due once flux at or past `t` has arrived: by then the hour before `t` is
complete in an event-time-ordered stream. Wall-clock time plays no part, so a replay of last year and the
live feed go through the same steps.

The clock never runs backwards. A reading a little older than the newest one (a late or corrected value)
changes the feature state but makes nothing due. A reading much older than the newest one (more than
`rewind_after`) means the stream was rewound: someone is replaying history. The caller then repositions the
clock (and its feature state) at that reading, and the replay issues its forecasts again; the prediction log
decides which of them are new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def floor_to(time: datetime, step: timedelta) -> datetime:
    """The latest multiple of `step` (since the epoch) at or before `time`."""
    return time - (time - EPOCH) % step


def ceil_to(time: datetime, step: timedelta) -> datetime:
    """The earliest multiple of `step` at or after `time`."""
    floor = floor_to(time, step)
    return floor if floor == time else floor + step


@dataclass
class CadenceClock:
    cadence: timedelta
    rewind_after: timedelta
    next_issue: datetime | None = None
    newest: datetime | None = None
    _unpositioned: bool = field(default=True, repr=False)

    def needs_position(self, time: datetime) -> bool:
        """True before the first reading and when `time` rewinds the stream beyond late readings."""
        return self._unpositioned or (self.newest is not None and time < self.newest - self.rewind_after)

    def position(self, time: datetime, previous: datetime | None) -> None:
        """Place the clock for a stream that (re)starts at `time`, where `previous` is the latest reading known
        before it (from the database). Issue times after `previous` are still due, so a restart loses none;
        but at most `rewind_after` of them, so a restart after a long outage does not backfill months."""
        earliest = ceil_to(time - self.rewind_after, self.cadence)
        if previous is None:
            self.next_issue = ceil_to(time, self.cadence)
        else:
            self.next_issue = max(floor_to(previous, self.cadence) + self.cadence, earliest)
        self.newest = previous
        self._unpositioned = False

    def advance(self, time: datetime) -> list[datetime]:
        """The issue times that the reading at `time` makes due, oldest first (several after a gap)."""
        if self.needs_position(time):
            raise RuntimeError("position the clock before advancing it")
        assert self.next_issue is not None
        self.newest = time if self.newest is None else max(self.newest, time)
        if time < self.next_issue:
            return []
        # a jump ahead longer than `rewind_after` (a feed back after days, or a stray reading from another year)
        # makes due at most `rewind_after` of issue times, as a restart does: years of hourly forecasts with no
        # flux to read would hold the stream (and every record behind the reading) for hours
        self.next_issue = max(self.next_issue, ceil_to(time - self.rewind_after, self.cadence))
        due = []
        while self.next_issue <= time:
            due.append(self.next_issue)
            self.next_issue += self.cadence
        return due
