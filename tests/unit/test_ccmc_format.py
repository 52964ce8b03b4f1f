"""A logged forecast becomes a CCMC Flare Scoreboard submission that validates against the format's schema."""

from __future__ import annotations

from datetime import datetime, timezone

import jsonschema_rs
import pytest

from services.predictor import ccmc

ROW = {"prediction_timestamp": datetime(2015, 7, 1, 13, 0, tzinfo=timezone.utc), "model_version": "20150701-a1b2",
       "p_ge_c_24h": 0.812345, "p_ge_m_24h": 0.15, "p_ge_x_24h": 0.0123456}


def validator():
    return jsonschema_rs.Draft202012Validator(ccmc.schema())


def test_a_logged_forecast_is_a_valid_full_disk_submission():
    document = ccmc.submission(ROW)
    validator().validate(document)
    body = document["forecast_submission"]
    assert body["model"] == {"short_name": "FlarePlus",
                             "spase_id": "spase://CCMC/SimulationModel/FlarePlus/20150701-a1b2"}
    assert body["issue_time"] == "2015-07-01T13:00Z" and body["mode"] == "forecast"
    (full_disk,) = body["full_disk_forecasts"]
    assert full_disk["prediction_window"] == {"start_time": "2015-07-01T13:00Z", "end_time": "2015-07-02T13:00Z"}
    assert full_disk["flare_probabilities"] == [{"class": "C", "probability": 0.8123},
                                                {"class": "M", "probability": 0.15},
                                                {"class": "X", "probability": 0.0123}]
    assert ccmc.file_name(document) == "FlarePlus.20150701T1300Z.20150701T1300Z.json"


def test_a_class_without_a_probability_is_left_out_and_a_zone_less_time_is_utc():
    row = {**ROW, "prediction_timestamp": datetime(2015, 7, 1, 13, 0), "p_ge_x_24h": None}
    document = ccmc.submission(row, mode="historical")
    validator().validate(document)
    probabilities = document["forecast_submission"]["full_disk_forecasts"][0]["flare_probabilities"]
    assert [p["class"] for p in probabilities] == ["C", "M"]
    assert document["forecast_submission"]["issue_time"] == "2015-07-01T13:00Z"
    with pytest.raises(ValueError, match="mode must be one of"):
        ccmc.submission(ROW, mode="replay")


def test_a_degraded_forecast_is_submitted_as_the_flare_history_model():
    document = ccmc.submission({**ROW, "degraded": True})
    validator().validate(document)
    assert document["forecast_submission"]["model"] == {
        "short_name": "FlarePlusHist", "spase_id": "spase://CCMC/SimulationModel/FlarePlusHist/20150701-a1b2"}
    assert ccmc.file_name(document) == "FlarePlusHist.20150701T1300Z.20150701T1300Z.json"


@pytest.mark.parametrize("spoil", [
    lambda body: body.pop("issue_time"),
    lambda body: body.update(issue_time="2015-07-01T13:00:00+00:00"),
    lambda body: body["full_disk_forecasts"][0]["flare_probabilities"][0].update(probability=1.5),
    lambda body: body["full_disk_forecasts"][0]["flare_probabilities"][0].update({"class": "B"}),
    lambda body: body.update(mode="replay"),
    lambda body: body["model"].update(short_name="a model name longer than sixteen"),
])
def test_the_schema_refuses_what_the_scoreboard_would_not_parse(spoil):
    document = ccmc.submission(ROW)
    spoil(document["forecast_submission"])
    assert not validator().is_valid(document)
