"""The predictor's REST API on the real database: forecasts at a requested instant from what is stored before
it, the shapes the deployment plan promises, 4xx with a reason for every bad request, keys and rate limits,
and a health report that says what is wrong."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import httpx
import pandas as pd
import pytest
from pydantic import SecretStr

from services.predictor import store
from services.predictor.api import build_api
from services.predictor.service import Predictor
from shared.features import FeatureParams
from tests.support.predictor_models import JULY_2015, register_model
from tests.support.predictor_service import ingest

MIDDAY = "2015-07-15T12:00:00Z"


@pytest.fixture
async def july_stored(settings, clean_db):
    await ingest(settings, clean_db, JULY_2015)
    return clean_db


@asynccontextmanager
async def api(settings, **overrides):
    predictor = Predictor(settings.model_copy(update=overrides), settings.database_dsn,
                          settings.kafka_bootstrap_servers)
    await predictor.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_api(predictor)),
                                     base_url="http://predictor") as client:
            yield client
    finally:
        await predictor.stop()


async def test_a_survival_forecast_has_a_distribution_summing_to_one_and_a_non_increasing_curve_to_168_hours(
        settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        champion = await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        answer = await client.post("/predict/survival", json={"timestamp": MIDDAY, "target_class": "M"})
        custom = await client.post("/predict/survival",
                                   json={"timestamp": MIDDAY, "target_class": "M", "time_buckets": [0, 6, 24]})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == champion and body["target_class"] == "M"
    assert body["issued_at"] == "2015-07-15T12:00:00Z"
    assert sum(body["probability_distribution"].values()) == pytest.approx(1.0)
    curve = body["survival_function"]
    assert curve["time_points"][0] == 0 and curve["time_points"][-1] == 168
    assert curve["probabilities"][0] == 1.0
    assert all(b <= a for a, b in zip(curve["probabilities"], curve["probabilities"][1:]))
    assert body["probability_within_24h"] == pytest.approx(1 - curve["probabilities"][curve["time_points"].index(24)])
    assert body["hazard_score"] > 0

    buckets = custom.json()["probability_distribution"]
    assert list(buckets) == ["0h-6h", "6h-24h", "24h-168h", "none_within_168h"]
    assert sum(buckets.values()) == pytest.approx(1.0)
    # the same curve seen through other buckets: 0-24 h is the model's 0-6, 6-12 and 12-24 h together
    model_buckets = body["probability_distribution"]
    assert buckets["0h-6h"] + buckets["6h-24h"] == pytest.approx(
        model_buckets["0h-6h"] + model_buckets["6h-12h"] + model_buckets["12h-24h"])


async def test_classification_gives_the_argmax_of_four_classes_for_24_and_48_hours_and_all_gives_both(
        settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        day = (await client.post("/predict/classification", json={"timestamp": MIDDAY})).json()
        two_days = (await client.post("/predict/classification", json={"timestamp": MIDDAY, "window": 48})).json()
        both = (await client.post("/predict/all", json={"timestamp": MIDDAY, "window": 48})).json()

    for answer in (day, two_days):
        probabilities = answer["class_probabilities"]
        assert list(probabilities) == ["none", "C", "M", "X"]
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert answer["predicted_class"] == max(probabilities, key=probabilities.get)
    assert day["window_hours"] == 24 and two_days["window_hours"] == 48
    # 24 h is the classification pipeline's answer; 48 h comes from the survival curves: "at least X" within
    # 48 h is 1 - S_X(48), and each class is the step between "at least" it and "at least" the next
    assert set(both["survival"]) == {"C", "M", "X"}
    assert both["classification"] == two_days
    at_least = {c: 1 - dict(zip(both["survival"][c]["survival_function"]["time_points"],
                                both["survival"][c]["survival_function"]["probabilities"]))[48] for c in "CMX"}
    assert two_days["class_probabilities"]["none"] == pytest.approx(1 - at_least["C"])
    assert two_days["class_probabilities"]["X"] == pytest.approx(min(at_least.values()))


# Pre-Deployment Validation step 5 of the deployment plan, the body byte for byte
PLAN_STEP_5_BODY = '{"timestamp": "2024-11-04T12:00:00"}'
JSON = {"Content-Type": "application/json"}


async def test_the_plans_step_5_request_as_written_forecasts_c_flares_where_flux_is_stored_and_says_where_none_is(
        settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        champion = await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        in_july = await client.post("/predict/survival", content=PLAN_STEP_5_BODY.replace("2024-11-04", "2015-07-20"),
                                    headers=JSON)
        in_2024 = await client.post("/predict/survival", content=PLAN_STEP_5_BODY, headers=JSON)

    assert in_july.status_code == 200, in_july.text
    forecast = in_july.json()
    assert forecast["target_class"] == "C" and forecast["model_version"] == champion
    assert sum(forecast["probability_distribution"].values()) == pytest.approx(1.0)
    assert forecast["issued_at"] == "2015-07-20T12:00:00Z"  # the instant, with the zone it was taken in
    # the test database holds July 2015 only: 2024 has no flux to forecast from, and the answer says so
    assert in_2024.status_code == 422
    assert in_2024.json()["error"] == "no flux observations are stored in the 72 h before 2024-11-04T12:00:00+00:00"


async def test_a_timestamp_without_a_zone_is_utc_in_every_endpoint(settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        for path, extra in [("/predict/survival", {"target_class": "C"}), ("/predict/classification", {}),
                            ("/predict/all", {})]:
            answers = [(await client.post(path, json={"timestamp": instant, **extra})).json()
                       for instant in ("2015-07-20T12:00:00", "2015-07-20T12:00:00Z", "2015-07-20T14:00:00+02:00")]
            assert answers[0] == answers[1] == answers[2], path
    assert answers[0]["classification"]["issued_at"] == "2015-07-20T12:00:00Z"


BAD_SURVIVAL_REQUESTS = [
    ({"timestamp": MIDDAY, "target_class": "Q"}, "target_class"),
    ({"timestamp": MIDDAY, "target_class": "m"}, "target_class"),
    ({"target_class": "M"}, "timestamp: Field required"),
    ({"timestamp": "yesterday", "target_class": "M"}, "timestamp"),
    ({"timestamp": "2015-07-15T12:00:00", "target_class": "c"}, "target_class: Input should be 'C', 'M' or 'X'"),
    ({"timestamp": "0001-01-01T00:05:01Z", "target_class": "M"}, "not a plausible event time (1970 to a day from now)"),
    ({"timestamp": MIDDAY, "target_class": "M", "time_buckets": [6, 12]}, "start at 0"),
    ({"timestamp": MIDDAY, "target_class": "M", "time_buckets": [0, 24, 12]}, "strictly increase"),
    ({"timestamp": MIDDAY, "target_class": "M", "time_buckets": [0, 200]}, "168 h horizon"),
    ({"timestamp": MIDDAY, "target_class": "M", "colour": "red"}, "colour"),
    ({"timestamp": "2015-06-01T00:00:00Z", "target_class": "M"}, "no flux is stored before that time"),
]


async def test_stale_or_absent_flux_with_known_flares_gets_a_degraded_forecast_that_says_why(
        settings, july_stored, tmp_path):
    # July 2015's flux and the flares detected in it are stored: after the month the flux goes stale, then is
    # gone from the lookback, while the flare history still covers it
    async with july_stored.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        stale = await client.post("/predict/survival", json={"timestamp": "2015-08-01T04:00:00Z", "target_class": "M"})
        absent = await client.post("/predict/survival", json={"timestamp": "2015-08-10T00:00:00Z", "target_class": "M"})
        classes = await client.post("/predict/classification", json={"timestamp": "2015-08-10T00:00:00Z"})
    assert (stale.status_code, absent.status_code, classes.status_code) == (200, 200, 200), absent.text
    assert stale.json()["degraded"] and "latest flux is older than 180 minutes" in stale.json()["reason"]
    assert absent.json()["degraded"] and "no XRS-B flux in the last 72 h" in absent.json()["reason"]
    assert sum(absent.json()["probability_distribution"].values()) == pytest.approx(1.0)
    assert classes.json()["degraded"] and sum(classes.json()["class_probabilities"].values()) == pytest.approx(1.0)


async def test_a_bad_survival_request_gets_a_422_that_says_what_is_wrong(settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        for body, says in BAD_SURVIVAL_REQUESTS:
            answer = await client.post("/predict/survival", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert says in answer.json()["error"], (body, answer.text)


async def test_malformed_json_and_an_unknown_window_are_4xx_too(settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    async with api(settings) as client:
        broken = await client.post("/predict/classification", content=b'{"timestamp": ',
                                   headers={"content-type": "application/json"})
        window = await client.post("/predict/classification", json={"timestamp": MIDDAY, "window": 36})
        not_an_object = await client.post("/predict/all", json=[MIDDAY])
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    assert window.status_code == 422 and "window: Input should be 24 or 48" in window.json()["error"]
    assert not_an_object.status_code == 422


async def test_without_a_champion_predictions_are_unavailable_and_health_says_why(settings, july_stored):
    async with api(settings) as client:
        answer = await client.post("/predict/survival", json={"timestamp": MIDDAY, "target_class": "C"})
        health = (await client.get("/health")).json()
        models = (await client.get("/models/current")).json()
    assert answer.status_code == 503 and "no champion model" in answer.json()["error"]
    assert health["status"] == "degraded" and "no champion model is loaded" in health["reasons"]
    assert health["database_reachable"] and health["broker_reachable"]
    assert health["last_ingested_event_time"] == "2015-07-31T23:59:00+00:00"
    assert models == {"champion": None, "challenger": None, "problems": {}}


async def test_a_model_file_changed_after_registration_is_refused_and_reported(settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        version = await register_model(conn, tmp_path / "models", status="champion")
        artifacts = await conn.fetchval("SELECT artifacts FROM model_registry WHERE version = $1", version)
    with open(artifacts["survival_M"], "ab") as model_file:
        model_file.write(b"tampered")
    async with api(settings) as client:
        health = (await client.get("/health")).json()
    assert health["models"]["champion"] is None
    assert any(version in reason and "does not match the registered" in reason for reason in health["reasons"])


async def test_with_api_keys_prediction_needs_one_and_each_key_is_rate_limited_but_health_never_is(
        settings, july_stored, tmp_path):
    async with july_stored.acquire() as conn:
        await register_model(conn, tmp_path / "models", status="champion")
    limited = settings.predictor.model_copy(update={"rate_limit_per_minute": 3})
    async with api(settings, api_keys=[SecretStr("k-alpha"), SecretStr("k-beta")], predictor=limited) as client:
        request = {"timestamp": MIDDAY, "target_class": "C"}
        missing = await client.post("/predict/survival", json=request)
        wrong = await client.post("/predict/survival", json=request, headers={"X-API-Key": "k-gamma"})
        alpha = [await client.post("/predict/survival", json=request, headers={"X-API-Key": "k-alpha"})
                 for _ in range(4)]
        beta = await client.post("/predict/survival", json=request, headers={"X-API-Key": "k-beta"})
        health = await client.get("/health")

    assert missing.status_code == 401 and "X-API-Key" in missing.json()["error"]
    assert wrong.status_code == 401 and "unknown API key" in wrong.json()["error"]
    assert [a.status_code for a in alpha] == [200, 200, 200, 429]
    assert int(alpha[-1].headers["Retry-After"]) >= 1
    assert beta.status_code == 200
    assert health.status_code == 200


async def test_the_api_is_documented_in_openapi(settings, clean_db):
    async with api(settings) as client:
        schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {"/predict/survival", "/predict/classification", "/predict/all", "/health", "/models/current"} <= set(paths)
    survival = paths["/predict/survival"]["post"]
    time_buckets = schema["components"]["schemas"]["SurvivalRequest"]["properties"]["time_buckets"]
    assert "time-to-flare" in time_buckets["description"]
    assert {"200", "401", "422", "429"} <= set(survival["responses"])
    components = schema["components"]["schemas"]
    assert components["SurvivalRequest"]["examples"][0] == json.loads(PLAN_STEP_5_BODY)
    assert components["ClassificationRequest"]["examples"][0] == json.loads(PLAN_STEP_5_BODY)
    no_flux = survival["responses"]["422"]["content"]["application/json"]["examples"]["no flux stored"]["value"]
    assert no_flux["error"].startswith("no flux observations are stored")
    assert "no flux is stored" in survival["responses"]["422"]["description"]


async def test_the_flux_a_rest_forecast_reads_as_columns_is_the_frame_read_row_by_row(settings, july_stored):
    # a reading without its XRS-A value (stored NULL) must come back missing, not as 0
    async with july_stored.acquire() as conn:
        await conn.execute("UPDATE flux_observations SET xrsa_flux = NULL WHERE time_tag = $1",
                           datetime(2015, 7, 15, 11, 30, tzinfo=timezone.utc))
        params = FeatureParams.from_settings(settings.features)
        for instant in ("2015-07-01T00:30:00+00:00", MIDDAY, "2015-07-31T23:59:00+00:00", "2015-09-01T00:00:00Z"):
            at = datetime.fromisoformat(instant)
            rows = await store.history_before(conn, at, params)
            columns = await store.forecast_history(conn, at, params)
            pd.testing.assert_frame_equal(store.observations_from_flux_columns(columns.flux), rows.observations)
            pd.testing.assert_frame_equal(columns.flares, rows.flares)
    assert rows.flux_rows == [] and columns.flux is None  # September: nothing stored, an empty frame
