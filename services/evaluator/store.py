"""The evaluator's PostgreSQL side: the outcome of each forecast (`forecast_outcomes`), metrics, drift episodes,
and what the registry says to score a model against. Every write is an upsert keyed by a stable id."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import asyncpg

from shared import messages as m
from shared.features import TARGET_CLASSES
from services.evaluator.drift import Breach, DriftEpisode
from services.evaluator.metrics import Reference
from services.evaluator.resolution import PendingForecast, Resolution, from_ns, to_ns

# the forecast as the evaluator keeps it while it waits for the outcome, and stores it with the outcome
FORECAST_COLUMNS = (
    "forecast_id", "prediction_timestamp", "model_version", "shadow", "status", "p_ge_c_24h", "p_ge_m_24h",
    "p_ge_x_24h", "correlation_id", "degraded",
)
OUTCOME_COLUMNS = ("actual_flare_class", "outcome_scorable", "hours_to_first", "resolved_at")


def forecast_from_row(row: asyncpg.Record) -> PendingForecast:
    return PendingForecast(
        row["forecast_id"], to_ns(row["prediction_timestamp"]), row["model_version"], row["shadow"], row["status"],
        {"C": row["p_ge_c_24h"], "M": row["p_ge_m_24h"], "X": row["p_ge_x_24h"]}, row["correlation_id"],
        row["degraded"],
    )


def resolution_from_row(row: asyncpg.Record) -> Resolution:
    return Resolution(
        forecast_from_row(row), to_ns(row["resolved_at"]), row["outcome_scorable"], row["actual_flare_class"],
        dict(row["hours_to_first"] or {}),
    )


async def resolved_forecasts(conn: asyncpg.Connection) -> list[Resolution]:
    """Every resolved forecast, in issue-time order: the evaluator's memory of what it has scored."""
    rows = await conn.fetch(
        f"SELECT {', '.join(FORECAST_COLUMNS + OUTCOME_COLUMNS)} FROM forecast_outcomes"
        " ORDER BY prediction_timestamp, forecast_id"
    )
    return [resolution_from_row(row) for row in rows]


async def prediction_log(
    conn: asyncpg.Connection, *, unresolved_only: bool,
) -> list[tuple[PendingForecast, tuple | None]]:
    """The forecasts logged or resolved, in issue-time order, each with its recorded outcome (or None): the
    plan's view of the predictor's log and the outcomes stored here."""
    rows = await conn.fetch(
        f"SELECT {', '.join(FORECAST_COLUMNS + OUTCOME_COLUMNS)} FROM flare_prediction_log"
        f"{' WHERE resolved_at IS NULL' if unresolved_only else ''} ORDER BY prediction_timestamp, forecast_id"
    )
    return [(forecast_from_row(row), outcome_of(resolution_from_row(row)) if row["resolved_at"] else None)
            for row in rows]


def outcome_of(resolution: Resolution) -> tuple:
    """The outcome columns one can compare: what happened, not when it was found out."""
    return resolution.scorable, resolution.actual_class, tuple(sorted(resolution.hours_to_first.items()))


def _outcome_row(resolution: Resolution) -> tuple:
    f = resolution.forecast
    return (
        f.forecast_id, from_ns(f.issued_ns), f.model_version, f.shadow, f.status, f.p_24h.get("C"), f.p_24h.get("M"),
        f.p_24h.get("X"), f.correlation_id, f.degraded, resolution.actual_class, resolution.scorable,
        resolution.hours_to_first, from_ns(resolution.resolved_ns),
    )


async def record_outcomes(conn: asyncpg.Connection, resolutions: Sequence[Resolution]) -> None:
    """Store each forecast's outcome, with the forecast as it was resolved. Writing the same outcome again
    changes nothing."""
    if not resolutions:
        return
    columns = FORECAST_COLUMNS + OUTCOME_COLUMNS
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    # resolved_at keeps the first resolution's time; a re-run of the batch command only corrects the outcome
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in OUTCOME_COLUMNS[:-1])
    await conn.executemany(
        f"INSERT INTO forecast_outcomes ({', '.join(columns)}) VALUES ({placeholders})"
        f" ON CONFLICT (forecast_id) DO UPDATE SET {updates}",
        [_outcome_row(r) for r in resolutions],
    )


async def record_metrics(conn: asyncpg.Connection, updates: Sequence[m.MetricsUpdated]) -> None:
    # Figures at an event time already recorded replace the earlier ones: they count more forecasts. Forecasts
    # that reach the evaluator after its clock passed their window's end (a predictor behind the flux, or
    # catching up after a restart) all resolve at the same clock, and keeping the first figures left the newest
    # row counting only the forecasts resolved before the first computation.
    await conn.executemany(
        "INSERT INTO model_metrics (message_id, model_version, shadow, window_name, as_of, scored_count, metrics,"
        " reliability) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (model_version, shadow, window_name, as_of) DO UPDATE SET scored_count = EXCLUDED.scored_count,"
        " metrics = EXCLUDED.metrics, reliability = EXCLUDED.reliability",
        [(u.message_id, u.model_version, u.shadow, u.window, u.event_time, u.scored_count, u.metrics, u.reliability)
         for u in updates],
    )


async def latest_metrics(
    conn: asyncpg.Connection, model_version: str | None = None, window: str | None = None,
) -> list[dict[str, Any]]:
    """The newest figures of each (model version, champion/shadow, window)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (model_version, shadow, window_name) model_version, shadow, window_name, as_of,"
        " scored_count, metrics, reliability FROM model_metrics"
        " WHERE ($1::text IS NULL OR model_version = $1) AND ($2::text IS NULL OR window_name = $2)"
        " ORDER BY model_version, shadow, window_name, as_of DESC",
        model_version, window,
    )
    return [dict(row) for row in rows]


def _episode_from_row(row: asyncpg.Record) -> DriftEpisode:
    return DriftEpisode(
        row["model_version"], row["ordinal"], to_ns(row["started_at"]),
        Breach(row["metric"], row["value"], row["baseline"], row["threshold"]), row["window_name"],
        to_ns(row["cleared_at"]) if row["cleared_at"] else None,
    )


async def drift_episodes(conn: asyncpg.Connection) -> list[DriftEpisode]:
    rows = await conn.fetch("SELECT * FROM metric_drift_episodes ORDER BY model_version, ordinal")
    return [_episode_from_row(row) for row in rows]


async def record_episode(conn: asyncpg.Connection, episode: DriftEpisode) -> None:
    b = episode.breach
    await conn.execute(
        "INSERT INTO metric_drift_episodes (model_version, ordinal, alert_id, window_name, metric, value, baseline,"
        " threshold, started_at, cleared_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (model_version, ordinal) DO UPDATE SET cleared_at = EXCLUDED.cleared_at",
        episode.model_version, episode.ordinal, episode.alert_id, episode.window, b.metric, b.value, b.baseline,
        b.threshold, from_ns(episode.started_ns), from_ns(episode.cleared_ns) if episode.cleared_ns else None,
    )


async def registry_reference(conn: asyncpg.Connection, version: str) -> Reference:
    """What the registry recorded for `version` to score it against (empty when it is not registered)."""
    row = await conn.fetchrow("SELECT validation, backtest FROM model_registry WHERE version = $1", version)
    if row is None:
        return Reference()
    return reference_from_evidence(row["validation"] or {}, row["backtest"] or {})


def reference_from_evidence(validation: dict, backtest: dict) -> Reference:
    """From the trainer's evidence: the decision threshold and the climatology (training base rate) chosen per
    target (`validation.training[target]`, the backtest's own threshold otherwise), and the backtest's Brier
    score per target as the drift baseline. What is not recorded is left out (metrics.Reference defaults)."""
    training = validation.get("training") or {}
    per_target = backtest.get("per_target") or {}
    thresholds, climatology, baseline = {}, {}, {}
    for target in TARGET_CLASSES:
        chosen, scores = training.get(target) or {}, per_target.get(target) or {}
        if (threshold := chosen.get("threshold", scores.get("threshold"))) is not None:
            thresholds[target] = float(threshold)
        if chosen.get("climatology") is not None:
            climatology[target] = float(chosen["climatology"])
        if scores.get("brier") is not None:
            baseline[target] = float(scores["brier"])
    return Reference(thresholds, climatology, baseline)


# ---- the record the batch command reads -----------------------------------------------------------------------


async def flux_hours(conn: asyncpg.Connection) -> tuple[list[int], datetime | None]:
    """The hourly bins holding XRS-B flux (hours since the epoch) and the newest reading's time."""
    rows = await conn.fetch(
        "SELECT DISTINCT floor(extract(epoch FROM time_tag) / 3600)::bigint AS hour FROM flux_observations"
        " WHERE xrsb_flux > 0"
    )
    newest = await conn.fetchval("SELECT max(time_tag) FROM flux_observations WHERE xrsb_flux > 0")
    return [row["hour"] for row in rows], newest


async def stored_flares(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT event_id, peak_time, peak_flux, scaling_era FROM flare_events ORDER BY peak_time")
