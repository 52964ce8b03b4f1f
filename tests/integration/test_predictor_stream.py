"""The predictor on the real broker and database: a month of GOES-15 flux ingested through the ingestor gives
one forecast per hour on the topic and in the log, each stamped with the model version; replaying the month
adds nothing; the REST API gives the same numbers at the same instants; a promotion mid-stream changes the
version of later forecasts without losing any, and a challenger is forecast in shadow until then."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from services.ingestor.readers import read_path
from shared import messages as m
from shared.kafka import Publisher
from tests.support.predictor_models import JULY_2015, register_model, set_status
from tests.support.predictor_service import ingest, predictor_running, read_forecasts

HOUR = timedelta(hours=1)
JULY = [datetime(2015, 7, 1, tzinfo=timezone.utc) + i * HOUR for i in range(31 * 24)]


async def logged(pool) -> list:
    async with pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM flare_prediction_log ORDER BY shadow, prediction_timestamp")


async def test_a_month_of_flux_gives_one_logged_and_published_forecast_per_hour_and_a_replay_adds_nothing(
        settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        champion = await register_model(conn, tmp_path / "models", status="champion")
    readings = sum(1 for r in read_path(JULY_2015).flux if r.usable)

    # the month is on the topics before the predictor starts: the ingest publishes the flares it detects when the
    # file is done, and a predictor already running could forecast the first days before it knows of them (what
    # the REST answers at the end are compared with assumes it knew)
    await ingest(settings, clean_db, JULY_2015)
    async with predictor_running(settings, tmp_path / "predictor.log") as predictor:
        assert (await predictor.health())["models"] == {"champion": champion, "challenger": None}
        rows = await predictor.until(lambda: _rows_once(clean_db, len(JULY)), "a forecast for every hour of July")

        assert [r["prediction_timestamp"] for r in rows] == JULY
        assert {r["model_version"] for r in rows} == {champion} and not any(r["shadow"] for r in rows)
        assert rows[0]["status"] == "insufficient_data"  # nothing before July 1 is stored
        assert not rows[0]["degraded"] and rows[0]["reason"].startswith("no XRS-B flux")  # the log says why
        # until half a day of flux is stored the forecasts are degraded (flare history alone), and logged so;
        # the month has no gap of hours after that
        degraded = [r for r in rows if r["degraded"]]
        assert degraded and all(r["prediction_timestamp"] < JULY[24] and "less than 50%" in r["reason"]
                                for r in degraded)
        assert all(r["reason"] is None for r in rows if r["status"] == "ok" and not r["degraded"])
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) > 0.9 * len(rows)
        assert all(abs(sum(r["class_probabilities"].values()) - 1) < 1e-9 for r in ok)
        assert all(abs(sum(r["probability_distribution"]["M"].values()) - 1) < 1e-9 for r in ok)
        published = await read_forecasts(settings, len(JULY))
        assert sorted(f.event_time for f in published) == JULY
        assert {f.message_id for f in published} == {r["forecast_id"] for r in rows}

        # the same month again: every reading goes through the predictor, and nothing new comes out; meanwhile
        # the REST API answers within the deployment plan's 10 s, and bad requests get a 4xx
        replay = asyncio.create_task(ingest(settings, clean_db, JULY_2015))
        busy, seen_meanwhile = [], []
        for t in JULY[100::60]:
            busy.append(await _timed_post(predictor, {"timestamp": t.isoformat(), "target_class": "M"}))
            seen_meanwhile.append((await predictor.health())["since_start"]["flux_seen"])
        await replay
        assert all(status == 200 and seconds < 10 for status, seconds in busy), busy
        assert any(readings < seen < 2 * readings for seen in seen_meanwhile), f"not busy meanwhile: {seen_meanwhile}"
        assert (await predictor.post("/predict/survival", json={"timestamp": "soon"})).status_code == 422
        await predictor.until(lambda: _seen(predictor, 2 * readings), "the replayed month to pass the predictor")
        assert [r["forecast_id"] for r in await logged(clean_db)] == [r["forecast_id"] for r in rows]
        assert len(await read_forecasts(settings, len(JULY))) == len(JULY)
        health = await predictor.health()
        assert health["since_start"]["forecasts_already_logged"] >= len(JULY) - 1
        assert health["forecasts_logged"] == len(JULY)

        # the REST API computes from the stored data at the instant; the stream computed from its state then
        by_time = {f.event_time: f for f in published}
        for issued_at in JULY[30::97]:
            stream = by_time[issued_at]
            answer = (await predictor.post("/predict/all", json={"timestamp": issued_at.isoformat()})).json()
            for target, survival in stream.survival.items():
                assert (answer["survival"][target]["survival_function"]["probabilities"]
                        == survival.survival_probabilities)
                assert answer["survival"][target]["probability_distribution"] == survival.probability_distribution
                assert answer["survival"][target]["model_version"] == stream.model_version
            assert answer["classification"]["class_probabilities"] == stream.class_probabilities


async def _timed_post(predictor, body: dict) -> tuple[int, float]:
    started = asyncio.get_running_loop().time()
    answer = await predictor.post("/predict/survival", json=body)
    return answer.status_code, asyncio.get_running_loop().time() - started


async def _rows_once(pool, expected: int) -> list | None:
    rows = await logged(pool)
    return rows if len(rows) >= expected else None


async def _seen(predictor, readings: int) -> bool:
    health = await predictor.health()
    return bool(health) and health["since_start"]["flux_seen"] >= readings


def july_days(first: int, last: int) -> list[m.FluxObserved]:
    """The July 2015 readings of days `first` to `last`, as the ingestor publishes them."""
    return [
        m.FluxObserved(message_id=m.stable_id(r.satellite, r.time_tag), event_time=r.time_tag, satellite=r.satellite,
                       cadence_seconds=r.cadence_seconds, scaling_era=r.scaling_era, xrsa_flux=r.xrsa_flux,
                       xrsb_flux=r.xrsb_flux, source="test", correlation_id=f"july-{r.time_tag.day}")
        for r in read_path(JULY_2015).flux if r.usable and first <= r.time_tag.day <= last
    ]


async def test_a_challenger_shadows_the_champion_until_promoted_mid_stream_and_no_hour_is_lost(
        settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        old = await register_model(conn, tmp_path / "models", status="champion")
        new = await register_model(conn, tmp_path / "models", coxph_alpha=1.0)
    hours = [datetime(2015, 7, 1, tzinfo=timezone.utc) + i * HOUR for i in range(4 * 24)]

    async with predictor_running(settings, tmp_path / "predictor.log") as predictor, \
            Publisher(settings.kafka_bootstrap_servers) as publisher:
        pid = predictor.process.pid
        # the gatekeeper names a challenger: it is loaded without a restart and forecast in shadow
        async with clean_db.acquire() as conn:
            await set_status(conn, new, "challenger")
        await publisher.publish(settings.topics.lifecycle, m.ChallengerChanged(
            message_id=m.stable_id("challenger", new), event_time=hours[0], version=new, actor="test",
            reason="shadow it"))
        await predictor.until(lambda: _models_are(predictor, old, new), "the challenger to load")
        await publisher.publish_many(settings.topics.flux, july_days(1, 2))
        await predictor.until(lambda: _rows_once(clean_db, 2 * 24), "the first day of forecasts")

        # then promotes it while the stream may still be busy with the second day, and more flux comes once the
        # promotion is in (the flux is read in bulk, and could otherwise overtake the lifecycle topic's one message)
        async with clean_db.acquire() as conn:
            await set_status(conn, new, "champion")
        await publisher.publish(settings.topics.lifecycle, m.ModelPromoted(
            message_id=m.stable_id("promote", new), event_time=hours[30], version=new, previous_version=old,
            actor="test", reason="it scored better in shadow"))
        await predictor.until(lambda: _models_are(predictor, new, None), "the promotion to load")
        await publisher.publish_many(settings.topics.flux, july_days(3, 4))
        await predictor.until(lambda: _live_rows(clean_db, len(hours)), "a forecast for every hour")
        assert predictor.process.pid == pid and predictor.process.poll() is None  # no restart

    rows = await logged(clean_db)
    live = [r for r in rows if not r["shadow"]]
    shadow = [r for r in rows if r["shadow"]]
    assert [r["prediction_timestamp"] for r in live] == hours
    versions = [r["model_version"] for r in live]
    switch = versions.index(new)
    assert 24 <= switch <= 48 and versions == [old] * switch + [new] * (len(hours) - switch)
    # in shadow exactly while it was challenger, beside the champion's forecasts, with its own numbers
    assert [r["prediction_timestamp"] for r in shadow] == hours[:switch]
    assert {r["model_version"] for r in shadow} == {new}
    # (degraded forecasts of the first hours, before the flux covers its lookback, come from the flare history
    # alone, which is the same for both versions here: only forecasts from the flux tell the models apart)
    scored = [(a, b) for a, b in zip(live, shadow) if a["status"] == "ok" and not a["degraded"]]
    probabilities = ("p_ge_c_24h", "p_ge_m_24h", "p_ge_x_24h")
    assert scored and all([a[p] for p in probabilities] != [b[p] for p in probabilities] for a, b in scored)
    published = await read_forecasts(settings, len(rows))
    assert sorted((f.event_time, f.model_version, f.shadow) for f in published) == sorted(
        (r["prediction_timestamp"], r["model_version"], r["shadow"]) for r in rows)
    assert all(f.correlation_id == f"july-{(f.event_time - timedelta(minutes=1)).day}"
               for f in published if f.event_time > hours[0])


async def _models_are(predictor, champion: str, challenger: str | None) -> bool:
    health = await predictor.health()
    return bool(health) and health["models"] == {"champion": champion, "challenger": challenger}


async def _live_rows(pool, expected: int) -> bool:
    return sum(not r["shadow"] for r in await logged(pool)) >= expected
