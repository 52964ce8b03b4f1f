"""An operator hands the logged forecasts to the CCMC Flare Scoreboard: `flare export --format ccmc` reads the
predictor's prediction log (read only) and the predictor serves its newest forecast in the same format."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import httpx
import jsonschema_rs

from services.predictor import ccmc
from services.predictor.api import build_api
from services.predictor.service import Predictor
from tests.conftest import PROJECT_ROOT, service_env

JULY_1 = datetime(2015, 7, 1, tzinfo=timezone.utc)


async def log_forecasts(pool) -> None:
    """What the predictor logs: three champion forecasts, a shadow one, an insufficient-data one, a degraded one
    (no flux: from the flare history) and a next-day one."""
    rows = [
        ("f0", JULY_1, "v1", False, "ok", False, 0.61, 0.11, 0.011),
        ("f1", JULY_1 + timedelta(hours=1), "v1", False, "ok", False, 0.62, 0.12, 0.012),
        ("f1-shadow", JULY_1 + timedelta(hours=1), "v2", True, "ok", False, 0.9, 0.5, 0.2),
        ("f2", JULY_1 + timedelta(hours=2), "v1", False, "ok", False, 0.63, 0.13, 0.013),
        ("f3", JULY_1 + timedelta(hours=3), "v1", False, "insufficient_data", False, None, None, None),
        ("f4", JULY_1 + timedelta(hours=4), "v1", False, "ok", True, 0.4, 0.05, 0.005),
        ("f24", JULY_1 + timedelta(days=1), "v1", False, "ok", False, 0.7, 0.2, 0.02),
    ]
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO forecast_log (forecast_id, prediction_timestamp, model_version, shadow, status,"
            " degraded, p_ge_c_24h, p_ge_m_24h, p_ge_x_24h) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", rows)


def flare(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flare_cli.main", *args], cwd=PROJECT_ROOT, env=service_env(settings),
                          capture_output=True, text=True, timeout=120)


async def test_export_writes_one_valid_submission_per_champion_forecast_of_the_period(settings, clean_db, tmp_path):
    await log_forecasts(clean_db)
    out = tmp_path / "ccmc"
    done = flare(settings, "export", "--format", "ccmc", "--from", "2015-07-01", "--to", "2015-07-01",
                 "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "4 forecast(s) written" in done.stderr
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"FlarePlus.20150701T0{h}00Z.20150701T0{h}00Z.json" for h in range(3)] + [
        "FlarePlusHist.20150701T0400Z.20150701T0400Z.json"]
    validator = jsonschema_rs.Draft202012Validator(ccmc.schema())
    documents = [json.loads(f.read_text()) for f in files]
    for document in documents:
        validator.validate(document)
    # the champion's numbers, not the shadow's; the insufficient-data hour has none to submit
    second = documents[1]["forecast_submission"]
    assert second["model"]["spase_id"].endswith("/v1")
    assert second["full_disk_forecasts"][0]["flare_probabilities"] == [
        {"class": "C", "probability": 0.62}, {"class": "M", "probability": 0.12}, {"class": "X", "probability": 0.012}]

    lines = flare(settings, "export", "--format", "ccmc", "--from", "2015-07-01")
    assert lines.returncode == 0, lines.stderr
    issued = [json.loads(line)["forecast_submission"]["issue_time"] for line in lines.stdout.splitlines()]
    assert issued == ["2015-07-01T00:00Z", "2015-07-01T01:00Z", "2015-07-01T02:00Z", "2015-07-01T04:00Z",
                      "2015-07-02T00:00Z"]
    with_flux = flare(settings, "export", "--format", "ccmc", "--from", "2015-07-01", "--without-degraded")
    models = {json.loads(line)["forecast_submission"]["issue_time"]: json.loads(line)["forecast_submission"]["model"]
              for line in with_flux.stdout.splitlines()}
    assert sorted(models) == [t for t in issued if t != "2015-07-01T04:00Z"]
    assert {model["short_name"] for model in models.values()} == {"FlarePlus"}
    async with clean_db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM flare_prediction_log") == 7  # read only


async def test_the_predictor_serves_its_newest_forecast_in_the_ccmc_format(settings, clean_db):
    predictor = Predictor(settings, settings.database_dsn, settings.kafka_bootstrap_servers)
    await predictor.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_api(predictor)),
                                     base_url="http://predictor") as client:
            empty = await client.get("/forecasts/latest", params={"format": "ccmc"})
            await log_forecasts(clean_db)
            latest = await client.get("/forecasts/latest", params={"format": "ccmc"})
            unknown = await client.get("/forecasts/latest", params={"format": "xml"})
    finally:
        await predictor.stop()
    assert empty.status_code == 404 and "no forecast" in empty.json()["error"]
    assert latest.status_code == 200, latest.text
    jsonschema_rs.Draft202012Validator(ccmc.schema()).validate(latest.json())
    assert latest.json()["forecast_submission"]["issue_time"] == "2015-07-02T00:00Z"
    assert unknown.status_code == 422 and "format" in unknown.json()["error"]
