"""The ingestion decisions that need no broker: what is new, corrected or unchanged; what is published in
replay and live mode; how a replay is paced in event time; how gaps are counted."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.ingestor.pipeline import build_timeline, count_gaps, detect_in, flux_message, paced_chunks
from services.ingestor.readers import FluxRecord
from services.ingestor.store import StoredFlux, flux_message_id, plan_flux

T0 = datetime(2015, 7, 1, tzinfo=timezone.utc)


def reading(minute: int, xrsb: float | None = 3.6e-7, quality: str = "good", cadence: int = 60) -> FluxRecord:
    return FluxRecord("GOES-15", T0 + timedelta(seconds=cadence * minute), cadence, "swpc_scaled",
                      1e-9 if xrsb else None, xrsb, quality, "test")


def stored(record: FluxRecord, revision: int = 0) -> dict:
    return {(record.satellite, record.cadence_seconds, record.time_tag):
            StoredFlux(record.xrsa_flux, record.xrsb_flux, record.quality, revision)}


def test_a_reading_is_new_unchanged_or_a_correction_with_its_own_id():
    first, second, third = reading(0), reading(1), reading(2)
    before = {**stored(first), **stored(second, revision=1)}
    new_value = replace(second, xrsb_flux=4.0e-7)
    planned = plan_flux([first, new_value, third], before)
    assert [(p.change, p.revision) for p in planned] == [("unchanged", 0), ("changed", 2), ("new", 0)]
    assert planned[0].message_id == flux_message_id("GOES-15", 60, first.time_tag)
    assert planned[1].message_id != flux_message_id("GOES-15", 60, second.time_tag, 1)
    correction = flux_message(planned[1])
    assert correction.is_correction and correction.xrsb_flux == 4.0e-7 and correction.key == "GOES-15"
    assert not flux_message(planned[2]).is_correction


def test_a_missing_minute_that_gets_its_value_later_is_a_change():
    missing = reading(0, xrsb=None, quality="fill")
    planned = plan_flux([reading(0)], stored(missing))
    assert planned[0].change == "changed" and planned[0].revision == 1


def test_replay_publishes_every_usable_reading_and_live_only_what_changed():
    planned = plan_flux([reading(0), reading(1, xrsb=None, quality="fill"), reading(2)], stored(reading(0)))
    replay = build_timeline(planned, [], "replay")
    live = build_timeline(planned, [], "live")
    assert [(i.known_at.minute, i.publish) for i in replay] == [(0, True), (1, False), (2, True)]
    assert [(i.known_at.minute, i.publish) for i in live] == [(1, False), (2, True)]  # minute 1 is stored only


def test_a_backfill_stores_what_is_new_and_publishes_nothing():
    values = [4e-7] * 10 + [6e-7, 9e-7, 1.4e-6, 2.1e-6, 1.8e-6, 1.5e-6, 1.2e-6, 1.0e-6] + [4e-7] * 5
    records = [reading(i, xrsb=v) for i, v in enumerate(values)]
    (flare,) = detect_in(records)
    planned = plan_flux(records, stored(records[0]))
    timeline = build_timeline(planned, [(flare, "new")], "backfill")
    assert not any(item.publish for item in timeline)
    assert [i.flux.record.time_tag.minute for i in timeline if i.flux is not None] == list(range(1, len(values)))
    assert [i.flare for i in timeline if i.flare is not None] == [flare]
    assert not any(i.flare for i in build_timeline(planned, [(flare, "unchanged")], "backfill"))


def test_a_detected_flare_is_released_at_its_end_after_the_flux_of_that_minute():
    values = [4e-7] * 10 + [6e-7, 9e-7, 1.4e-6, 2.1e-6, 1.8e-6, 1.5e-6, 1.2e-6, 1.0e-6] + [4e-7] * 5
    records = [reading(i, xrsb=v) for i, v in enumerate(values)]
    (flare,) = detect_in(records)
    assert (flare.source, flare.satellite, flare.scaling_era, flare.goes_class) == (
        "detected", "GOES-15", "swpc_scaled", "C2.1")
    timeline = build_timeline(plan_flux(records, {}), [(flare, "new")], "replay")
    position = next(i for i, item in enumerate(timeline) if item.flare is not None)
    assert timeline[position].known_at == flare.end_time
    assert timeline[position - 1].flux.record.time_tag == flare.end_time


async def test_a_replay_at_speed_60_waits_one_second_per_event_minute_and_max_never_waits():
    items = build_timeline(plan_flux([reading(m) for m in (0, 1, 2, 5)], {}), [], "replay")
    clock = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        clock[0] += seconds

    chunks = [c async for c in paced_chunks(items, 60.0, clock=lambda: clock[0], sleep=fake_sleep)]
    assert waits == [1.0, 1.0, 3.0]
    assert [len(c) for c in chunks] == [1, 1, 1, 1]
    fast = [c async for c in paced_chunks(items, None, chunk_size=3, clock=lambda: 0.0, sleep=fake_sleep)]
    assert [len(c) for c in fast] == [3, 1] and waits == [1.0, 1.0, 3.0]


def test_gaps_count_stretches_without_a_usable_reading():
    records = [reading(m) for m in (0, 1, 2, 6, 7)] + [reading(8, xrsb=None, quality="fill"), reading(9), reading(10)]
    hourly = [reading(h, cadence=3600) for h in (0, 1, 5)]
    assert count_gaps(records) == 2  # 2 -> 6 absent, 7 -> 9 around a missing minute
    assert count_gaps(hourly) == 1
