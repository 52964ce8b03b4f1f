"""The predictor's event-time clock: one issue time per cadence step, driven by the readings' own time tags."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.predictor.cadence import CadenceClock, ceil_to, floor_to

HOUR = timedelta(hours=1)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2015, 7, day, hour, minute, tzinfo=timezone.utc)


def clock(minutes: int = 60) -> CadenceClock:
    return CadenceClock(timedelta(minutes=minutes), rewind_after=timedelta(hours=72))


def run(c: CadenceClock, times: list[datetime]) -> list[datetime]:
    due = []
    for time in times:
        if c.needs_position(time):
            c.position(time, previous=None)
        due += c.advance(time)
    return due


def test_a_stream_of_minutes_makes_one_issue_time_per_hour_once_the_hour_is_reached():
    minutes = [at(1, 0) + timedelta(minutes=i) for i in range(3 * 60)]
    assert run(clock(), minutes) == [at(1, 0), at(1, 1), at(1, 2)]


def test_the_first_issue_time_is_the_first_boundary_at_or_after_the_first_reading():
    assert run(clock(), [at(1, 0, 30), at(1, 0, 59), at(1, 1, 0)]) == [at(1, 1)]


def test_a_gap_makes_every_boundary_inside_it_due_when_the_stream_resumes():
    c = clock()
    run(c, [at(1, 0, 0), at(1, 0, 59)])
    assert c.advance(at(1, 6, 10)) == [at(1, 1), at(1, 2), at(1, 3), at(1, 4), at(1, 5), at(1, 6)]


def test_a_jump_of_years_ahead_makes_only_the_last_lookback_due_as_a_restart_would():
    c = clock()
    run(c, [at(1, 0, 0)])
    years_later = at(1, 0, 30) + timedelta(days=3 * 365)
    due = c.advance(years_later)
    assert due == [years_later - timedelta(hours=71, minutes=30) + i * HOUR for i in range(72)]


def test_late_and_repeated_readings_make_nothing_due_again():
    c = clock()
    run(c, [at(1, 0, 0), at(1, 1, 0), at(1, 1, 30)])
    assert c.advance(at(1, 0, 45)) == []  # a late reading
    assert c.advance(at(1, 1, 0)) == []   # a redelivered one
    assert c.advance(at(1, 2, 0)) == [at(1, 2)]


def test_the_cadence_is_configurable_and_aligned_to_the_clock():
    minutes = [at(1, 0) + timedelta(minutes=i) for i in range(0, 61, 5)]
    assert run(clock(minutes=30), minutes) == [at(1, 0), at(1, 0, 30), at(1, 1)]
    assert floor_to(at(1, 7, 59), timedelta(hours=6)) == at(1, 6)
    assert ceil_to(at(1, 6, 1), timedelta(hours=6)) == at(1, 12)


def test_a_reading_far_older_than_the_newest_is_a_replay_and_asks_for_repositioning():
    c = clock()
    run(c, [at(10, 0), at(10, 1)])
    assert not c.needs_position(at(9, 12))   # within the lookback: a late reading
    assert c.needs_position(at(1, 0))        # days back: someone replays history
    with pytest.raises(RuntimeError):
        c.advance(at(1, 0))
    c.position(at(1, 0), previous=None)
    assert c.advance(at(1, 0)) == [at(1, 0)]


def test_a_restart_issues_what_was_due_after_the_last_stored_reading_but_never_months_of_backfill():
    c = clock()
    c.position(at(2, 3, 5), previous=at(2, 1, 59))
    assert c.advance(at(2, 3, 5)) == [at(2, 2), at(2, 3)]
    c = clock()
    c.position(at(20, 0, 30), previous=at(1, 0, 0))
    assert c.advance(at(20, 0, 30))[0] == at(17, 1)
