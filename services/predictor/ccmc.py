"""Forecasts in the CCMC Flare Scoreboard's JSON submission format, from the predictor's prediction log.

One submission per issued forecast: the full-disk probabilities of a flare of at least C1, M1 and X1 within
24 h of the issue time (`p_ge_c_24h` ... in `forecast_log`), the issue time, the prediction window and
the model. Which version of the format this follows, and where it is documented, is in docs/ccmc/README.md;
the JSON Schema the tests validate exports against is docs/ccmc/flare_scoreboard_submission.schema.json.
Only the champion's forecasts (not shadow) with status ok are exported: an insufficient-data forecast has no
probabilities to submit. A degraded forecast (no flux: the flare-history model's) is submitted as another
model's, `FlarePlusHist`: the scoreboard scores each model on its own, and these come from a different one.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping


from shared.paths import project_root

if TYPE_CHECKING:
    import asyncpg

SCHEMA_PATH = Path("docs") / "ccmc" / "flare_scoreboard_submission.schema.json"
MODEL_SHORT_NAME = "FlarePlus"
DEGRADED_SHORT_NAME = "FlarePlusHist"  # the flare-history model of a degraded forecast
# the scoreboard's SPASE id pattern; Flare+ is not registered with CCMC, so the id names the version only
SPASE_ID = "spase://CCMC/SimulationModel/{model}/{version}"
PREDICTION_WINDOW = timedelta(hours=24)
CLASS_COLUMNS = {"C": "p_ge_c_24h", "M": "p_ge_m_24h", "X": "p_ge_x_24h"}
MODES = ("forecast", "historical", "nowcast", "simulated_realtime_forecast")

# one forecast per issue time: where a promotion left two champions' forecasts of one hour, the later logged
LOGGED_FORECASTS = """
    SELECT DISTINCT ON (prediction_timestamp) prediction_timestamp, model_version, degraded,
           p_ge_c_24h, p_ge_m_24h, p_ge_x_24h
    FROM forecast_log
    WHERE status = 'ok' AND NOT shadow
      AND ($1::timestamptz IS NULL OR prediction_timestamp >= $1)
      AND ($2::timestamptz IS NULL OR prediction_timestamp < $2)
      AND ($3 OR NOT degraded)
    ORDER BY prediction_timestamp, logged_at DESC
"""
LATEST_FORECAST = """
    SELECT prediction_timestamp, model_version, degraded, p_ge_c_24h, p_ge_m_24h, p_ge_x_24h
    FROM forecast_log
    WHERE status = 'ok' AND NOT shadow
    ORDER BY prediction_timestamp DESC, logged_at DESC
    LIMIT 1
"""


def ccmc_time(moment: datetime) -> str:
    """The scoreboard's time stamps: UTC to the minute, `YYYY-MM-DDTHH:MMZ`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def submission(row: Mapping[str, Any], *, mode: str = "forecast") -> dict[str, Any]:
    """One logged forecast as a Flare Scoreboard submission."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    issued: datetime = row["prediction_timestamp"]
    probabilities = [{"class": label, "probability": round(float(row[column]), 4)}
                     for label, column in CLASS_COLUMNS.items() if row[column] is not None]
    model = DEGRADED_SHORT_NAME if row.get("degraded") else MODEL_SHORT_NAME
    return {"forecast_submission": {
        "model": {"short_name": model, "spase_id": SPASE_ID.format(model=model, version=row["model_version"])},
        "issue_time": ccmc_time(issued),
        "mode": mode,
        "full_disk_forecasts": [{
            "prediction_window": {"start_time": ccmc_time(issued), "end_time": ccmc_time(issued + PREDICTION_WINDOW)},
            "flare_probabilities": probabilities,
        }],
    }}


def file_name(document: Mapping[str, Any]) -> str:
    """`<model>.<window start>.<issue time>.json`, the scoreboards' suggested naming."""
    body = document["forecast_submission"]
    start = body["full_disk_forecasts"][0]["prediction_window"]["start_time"]
    stamp = lambda text: text.replace("-", "").replace(":", "")  # noqa: E731
    return f"{body['model']['short_name']}.{stamp(start)}.{stamp(body['issue_time'])}.json"


def schema() -> dict[str, Any]:
    return json.loads((project_root() / SCHEMA_PATH).read_text())


async def logged_forecasts(
    conn: asyncpg.Connection, start: datetime | None, end: datetime | None, *, degraded: bool = True,
) -> list[asyncpg.Record]:
    """The champion's ok forecasts issued in [start, end), oldest first, degraded ones only if asked (read only)."""
    return await conn.fetch(LOGGED_FORECASTS, start, end, degraded)


async def latest_forecast(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(LATEST_FORECAST)


def write_files(documents: Iterable[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for document in documents:
        path = out_dir / file_name(document)
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written
