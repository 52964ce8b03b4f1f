"""The dashboard's view: what a page gets to draw after the topics have said something."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from services.dashboard.view import DashboardView, epoch_ms
from shared import messages as m

T0 = datetime(2015, 3, 11, 0, 0, tzinfo=timezone.utc)


def flux(minutes: float, xrsb: float | None, *, xrsa: float | None = 1e-8,
         satellite: str = "GOES-15") -> m.FluxObserved:
    at = T0 + timedelta(minutes=minutes)
    return m.FluxObserved(
        message_id=m.stable_id(satellite, at), event_time=at, satellite=satellite, cadence_seconds=60,
        scaling_era="swpc_scaled", xrsa_flux=xrsa, xrsb_flux=xrsb, source="test",
    )


def flare(minutes: float, goes_class: str = "M2.1") -> m.FlareObserved:
    peak = T0 + timedelta(minutes=minutes)
    return m.FlareObserved(
        message_id=m.stable_id("flare", peak), event_time=peak, start_time=peak - timedelta(minutes=10),
        peak_time=peak, goes_class=goes_class, class_letter=goes_class[0], peak_flux=2.1e-5, source="test",
    )


def forecast(minutes: float, version: str = "v1", *, shadow: bool = False, p_c: float = 0.4) -> m.ForecastIssued:
    at = T0 + timedelta(minutes=minutes)
    survival = m.SurvivalForecast(
        target_class="C", probability_distribution={"0-6h": 0.2, "6-12h": 0.1, ">168h": 0.7},
        time_points_hours=[6, 12], survival_probabilities=[0.8, 0.7], hazard_score=1.2, probability_within_24h=0.35,
    )
    return m.ForecastIssued(
        message_id=m.stable_id("forecast", version, shadow, at), event_time=at, model_version=version, shadow=shadow,
        survival={"C": survival}, class_probabilities={"none": 1 - p_c, "C": p_c, "M": 0.0, "X": 0.0},
        predicted_class="none",
    )


def metrics(hours: float, version: str = "v1", *, window: str = "30d", brier: float = 0.2) -> m.MetricsUpdated:
    at = T0 + timedelta(hours=hours)
    return m.MetricsUpdated(
        message_id=m.stable_id("metrics", version, window, at), event_time=at, model_version=version, window=window,
        scored_count=40, metrics={"C.brier": brier, "C.precision": 0.6, "C.recall": 0.5, "C.tss": 0.3, "C.hits": 4},
        reliability=[{"target": "C", "bin_lower": 0.0, "bin_upper": 0.1, "count": 12, "mean_forecast": 0.05,
                      "observed_frequency": 0.08}],
    )


def promoted(minutes: float, version: str = "v2") -> m.ModelPromoted:
    at = T0 + timedelta(minutes=minutes)
    return m.ModelPromoted(message_id=m.stable_id("promote", version), event_time=at, version=version,
                           previous_version="v1", actor="operator", reason="beats the champion")


def test_flux_is_downsampled_to_buckets_that_keep_the_peak():
    view = DashboardView(flux_bucket=timedelta(minutes=5))
    for minute, value in enumerate([1e-7, 3e-6, 2e-7, 1e-7, 1e-7, 5e-7]):
        view.apply(flux(minute, value))

    rows = view.snapshot()["flux"]
    assert [(row[1], row[3]) for row in rows] == [(epoch_ms(T0), 3e-6), (epoch_ms(T0) + 5 * 60_000, 5e-7)]


def test_flux_and_flares_older_than_the_window_fall_out_as_event_time_advances():
    view = DashboardView(flux_window=timedelta(hours=2), flux_bucket=timedelta(minutes=1))
    view.apply(flux(0, 1e-7, satellite="GOES-13"))
    view.apply(flux(0, 1e-7, satellite="GOES-15"))
    view.apply(flare(1))
    view.apply(flux(60, 1e-7, satellite="GOES-15"))
    assert len(view.snapshot()["flux"]) == 3 and len(view.snapshot()["flares"]) == 1

    view.apply(flux(150, 1e-7, satellite="GOES-15"))

    snapshot = view.snapshot()
    assert [(row[0], row[1]) for row in snapshot["flux"]] == [
        ("GOES-15", epoch_ms(T0 + timedelta(minutes=60))), ("GOES-15", epoch_ms(T0 + timedelta(minutes=150)))]
    assert snapshot["flares"] == []
    assert snapshot["window_start_ms"] == epoch_ms(T0 + timedelta(minutes=30))


def test_flux_that_arrives_too_late_for_the_window_is_ignored():
    view = DashboardView(flux_window=timedelta(hours=1), flux_bucket=timedelta(minutes=1))
    view.apply(flux(600, 1e-7))
    view.apply(flux(0, 9e-4))
    assert [row[3] for row in view.snapshot()["flux"]] == [1e-7]


def test_the_current_forecast_is_the_latest_by_event_time_for_champion_and_shadow_apart():
    view = DashboardView()
    view.apply(forecast(120, "v1", p_c=0.4))
    view.apply(forecast(60, "v1", p_c=0.9))  # late redelivery of an older forecast
    view.apply(forecast(120, "v2", shadow=True, p_c=0.2))

    forecasts = view.snapshot()["forecasts"]
    assert forecasts["champion"]["class_probabilities"]["C"] == 0.4
    assert forecasts["champion"]["survival"]["C"]["distribution"] == {"0-6h": 0.2, "6-12h": 0.1, ">168h": 0.7}
    assert forecasts["shadow"]["model_version"] == "v2"
    assert view.champion == "v1"  # before any promotion, the version behind the champion forecasts


def test_a_promotion_names_the_champion_and_appears_once_in_the_history():
    view = DashboardView()
    view.apply(forecast(0, "v1"))
    view.apply(promoted(30, "v2"))
    view.apply(promoted(30, "v2"))  # redelivered

    snapshot = view.snapshot()
    assert snapshot["champion"] == "v2"
    assert [(row["kind"], row["version"], row["actor"]) for row in snapshot["history"]] == [
        ("ModelPromoted", "v2", "operator")]
    assert "was v1" in snapshot["history"][0]["summary"]


def test_history_keeps_the_last_events_of_every_kind():
    view = DashboardView(history_limit=3)
    at = T0
    view.apply(m.RetrainRequested(message_id="r1", event_time=at, reason="drift", requested_by="gatekeeper"))
    view.apply(m.ModelTrained(message_id="t1", event_time=at, version="v2", artifacts={}, evidence={}))
    view.apply(m.MetricDrift(message_id="d1", event_time=at, model_version="v1", metric="C.brier", value=0.3,
                             baseline=0.2, threshold=0.22, window="30d"))
    view.apply(m.ModelRolledBack(message_id="b1", event_time=at, version="v1", from_version="v2", actor="auto",
                                 reason="worse live"))

    history = view.snapshot()["history"]
    assert [row["kind"] for row in history] == ["ModelTrained", "MetricDrift", "ModelRolledBack"]
    assert "C.brier 0.3 vs baseline 0.2" in history[1]["summary"]
    assert view.champion == "v1"


def test_a_history_row_keeps_the_flux_time_it_is_about_apart_from_when_it_was_recorded():
    view = DashboardView()
    recorded = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
    view.apply(promoted(30, "v2"), recorded_ms=epoch_ms(recorded))
    view.apply(m.MetricDrift(message_id="d1", event_time=T0, model_version="v2", metric="C.brier", value=0.3,
                             threshold=0.22, window="30d"))  # bare, as a test hands it: no recorded time

    promotion, drift = view.snapshot()["history"]
    assert promotion["event_ms"] == epoch_ms(T0 + timedelta(minutes=30))
    assert promotion["recorded_ms"] == epoch_ms(recorded)
    assert (drift["event_ms"], drift["recorded_ms"]) == (epoch_ms(T0), None)


def test_metrics_keep_a_series_per_version_and_window_with_the_latest_figures():
    view = DashboardView()
    view.apply(metrics(1, "v1", brier=0.20))
    view.apply(metrics(2, "v1", brier=0.25))
    view.apply(metrics(2, "v1", window="7d", brier=0.30))
    view.apply(metrics(2, "v2", brier=0.10))

    entries = {(e["model_version"], e["window"]): e for e in view.snapshot()["metrics"]}
    assert [p["C.brier"] for p in entries[("v1", "30d")]["points"]] == [0.20, 0.25]
    assert entries[("v1", "30d")]["metrics"]["C.hits"] == 4
    assert entries[("v1", "30d")]["reliability"][0]["observed_frequency"] == 0.08
    assert [p["C.brier"] for p in entries[("v1", "7d")]["points"]] == [0.30]
    assert entries[("v2", "30d")]["points"][0]["M.brier"] is None  # a score the update did not carry


def test_a_long_metrics_series_is_thinned_but_keeps_its_whole_time_range():
    view = DashboardView(series_limit=10)
    for hour in range(25):
        view.apply(metrics(hour, brier=hour / 100))

    points = view.snapshot()["metrics"][0]["points"]
    assert len(points) < 10
    assert points[0]["t"] == epoch_ms(T0) and points[-1]["t"] == epoch_ms(T0 + timedelta(hours=24))


def test_a_delta_holds_only_what_changed_since_the_last_one():
    view = DashboardView(flux_bucket=timedelta(minutes=1))
    view.apply(flux(0, 1e-7))
    view.apply(metrics(1))
    first = view.drain_delta()
    assert len(first["flux"]) == 1 and len(first["metrics"]) == 1 and "history" not in first

    assert view.drain_delta() is None

    view.apply(flux(1, 2e-7))
    view.apply(promoted(2))
    second = view.drain_delta()
    assert [row[3] for row in second["flux"]] == [2e-7]
    assert "metrics" not in second and "forecasts" not in second
    assert [row["kind"] for row in second["history"]] == ["ModelPromoted"]
    assert second["reset"] is False and second["champion"] == "v2"


def test_a_thinned_series_is_sent_whole_so_the_page_can_replace_it():
    view = DashboardView(series_limit=4)
    for hour in range(3):
        view.apply(metrics(hour))
    assert view.drain_delta()["metrics"][0]["replace"] is False

    view.apply(metrics(3))
    entry = view.drain_delta()["metrics"][0]
    assert entry["replace"] is True
    assert entry["points"] == view.snapshot()["metrics"][0]["points"]


def test_the_snapshot_is_plain_json():
    view = DashboardView()
    for message in (flux(0, 1e-6), flare(0), forecast(0), metrics(0), promoted(0)):
        view.apply(message)
    snapshot = view.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["counts"] == {"FluxObserved": 1, "FlareObserved": 1, "ForecastIssued": 1, "MetricsUpdated": 1,
                                  "ModelPromoted": 1}
