"""The deployment plan's Daily Checks, as an operator runs them: its three queries verbatim (deploy/daily_checks.sql)
through `flare db-shell`, on a prediction log the predictor and the evaluator wrote with their own store functions.

`prediction_timestamp` is a forecast's issue time in event time: these checks see a live system's last days, and
nothing of a replay of 2015."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.evaluator import store as evaluator_store
from services.evaluator.resolution import PendingForecast, Resolution, to_ns
from services.predictor import store as predictor_store
from shared import messages as m
from tests.conftest import PROJECT_ROOT, service_env
from tests.support.daily_checks import DAILY_CHECKS, daily_check_queries

FLARE = str(PROJECT_ROOT / ".venv" / "bin" / "flare")
PROBABILITIES = {"none": 0.7, "C": 0.2, "M": 0.08, "X": 0.02}


def forecast(name: str, issued: datetime, version: str = "v1", *, ok: bool = True,
             shadow: bool = False) -> m.ForecastIssued:
    if not ok:  # what the predictor issues when the flux before the hour is too thin to forecast from
        return m.ForecastIssued(message_id=m.stable_id("daily-checks", name), event_time=issued, model_version=version,
                                status="insufficient_data", reason="no flux in the last 3 h", shadow=shadow)
    return m.ForecastIssued(message_id=m.stable_id("daily-checks", name), event_time=issued, model_version=version,
                            class_probabilities=PROBABILITIES, predicted_class="none", shadow=shadow)


def resolved(issued: m.ForecastIssued, actual_class: str) -> Resolution:
    first = {"C": 5.0 if actual_class != "none" else None, "M": 5.0 if actual_class in "MX" else None, "X": None}
    return Resolution(PendingForecast.from_message(issued), to_ns(issued.event_time + timedelta(hours=24)), True,
                      actual_class, first)


def db_shell(settings, *args: str, stdin: str | None = None) -> str:
    answer = subprocess.run([FLARE, "db-shell", *args], input=stdin, env=service_env(settings), capture_output=True,
                            text=True, timeout=120, cwd=PROJECT_ROOT)
    assert answer.returncode == 0 and not answer.stderr, answer.stderr
    return answer.stdout


@pytest.fixture
async def a_week_of_forecasts(clean_db):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    log = {
        "recent": forecast("recent", now - timedelta(hours=2)),
        "recent shadow": forecast("recent shadow", now - timedelta(hours=2), "v2", shadow=True),
        "thin flux": forecast("thin flux", now - timedelta(hours=3), ok=False),
        "thin flux 2 days ago": forecast("thin flux 2 days ago", now - timedelta(days=2), ok=False),
        "M flare 3 days ago": forecast("M flare 3 days ago", now - timedelta(days=3)),
        "quiet 5 days ago": forecast("quiet 5 days ago", now - timedelta(days=5)),
        "X flare 10 days ago": forecast("X flare 10 days ago", now - timedelta(days=10)),
    }
    async with clean_db.acquire() as conn:
        assert await predictor_store.log_forecasts(conn, list(log.values())) == len(log)
        await evaluator_store.record_outcomes(conn, [
            resolved(log["M flare 3 days ago"], "M"), resolved(log["quiet 5 days ago"], "none"),
            resolved(log["X flare 10 days ago"], "X")])
        zone = ZoneInfo(await conn.fetchval("SELECT current_setting('TimeZone')"))
    return log, zone


async def test_the_plans_daily_checks_run_verbatim_in_db_shell_and_show_what_each_describes(
        settings, a_week_of_forecasts):
    log, zone = a_week_of_forecasts
    volume, errors, reviewed = (list(csv.DictReader(io.StringIO(db_shell(settings, "--csv", "-c", query))))
                                for query in daily_check_queries())

    within_week = [f for name, f in log.items() if name != "X flare 10 days ago"]
    by_day: dict = {}
    for f in within_week:
        by_day.setdefault(f.event_time.astimezone(zone).date(), []).append(f.model_version)
    assert volume == [{"date": day.isoformat(), "predictions": str(len(versions)),
                       "model_versions": str(len(set(versions)))}
                      for day, versions in sorted(by_day.items(), reverse=True)]
    assert any(row["model_versions"] == "2" for row in volume)  # the shadow's version beside the champion's

    # within 24 hours, the one forecast without a class: every column of its row
    assert [row["forecast_id"] for row in errors] == [log["thin flux"].message_id]
    assert errors[0]["status"] == "insufficient_data" and errors[0]["predicted_class"] == ""

    assert [(row["predicted_class"], row["actual_flare_class"]) for row in reviewed] == [
        ("none", "M"), ("none", "none")]
    assert all(row["class_probabilities"] for row in reviewed)


async def test_the_file_as_a_whole_runs_from_stdin_and_with_f(settings, a_week_of_forecasts):
    from_stdin = db_shell(settings, stdin=DAILY_CHECKS.read_text())
    from_file = db_shell(settings, "-f", str(DAILY_CHECKS))

    assert from_stdin == from_file
    headers = [line.split("|") for line in from_stdin.splitlines() if "prediction_timestamp" in line or "date" in line]
    assert [h[0].strip() for h in headers] == ["date", "forecast_id", "prediction_timestamp"]
    log, zone = a_week_of_forecasts
    days = {f.event_time.astimezone(zone).date() for name, f in log.items() if name != "X flare 10 days ago"}
    # what psql prints under each result: the volume per day, one error, two resolved forecasts
    assert [line for line in from_stdin.splitlines() if line.endswith(("row)", "rows)"))] == [
        f"({len(days)} rows)" if len(days) > 1 else "(1 row)", "(1 row)", "(2 rows)"]
