"""The evaluator's decisions without a broker: forecasts wait for their window to pass on the flux clock, are
scored once, feed per-version metrics, raise drift once per episode and X-class alerts once per flare."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from services.evaluator.core import Evaluator, unique_resolutions
from services.evaluator.metrics import DAY_NS, MetricBook, Reference
from shared import messages as m
from shared import scoring
from shared.settings import EvaluatorSettings, ThresholdSettings, load_settings
from tests.support.evaluator_data import at, flare, flux, forecast, hourly_flux

GRACE = timedelta(hours=2)


@pytest.fixture
def settings():
    return load_settings(
        evaluator=EvaluatorSettings(resolution_grace_minutes=120, metric_windows_days=[7, 30], drift_window_days=7),
        thresholds=ThresholdSettings(min_scored_before_alert=24),
    )


def new_evaluator(settings, book=None, episodes=(), **state) -> Evaluator:
    return Evaluator.for_settings(settings, book if book is not None else MetricBook(), episodes, **state)


@dataclass
class Run:
    resolutions: list = field(default_factory=list)
    episodes: list = field(default_factory=list)
    dirty: dict = field(default_factory=dict)


def drive(evaluator, messages, run=None) -> Run:
    """What the worker does: each message in turn, its resolutions settled before the next message."""
    run = run or Run()
    for message in messages:
        if isinstance(message, m.FluxObserved):
            resolutions = evaluator.take_flux(message)
        elif isinstance(message, m.ForecastIssued):
            resolutions = evaluator.take_forecast(message)
        else:
            evaluator.take_flare(message)
            continue
        settled = evaluator.settle(resolutions)
        run.resolutions += resolutions
        run.episodes += settled.episodes
        run.dirty.update(settled.dirty)
    return run


def test_a_forecast_waits_until_the_flux_clock_passes_its_window_and_the_grace(settings):
    evaluator = new_evaluator(settings)
    issued = at(10, 12)
    drive(evaluator, [*hourly_flux(at(9), issued), forecast(issued, 0.4), flare(issued + timedelta(hours=20), "C4.0")])

    waiting = drive(evaluator, [*hourly_flux(issued, issued + timedelta(hours=25)),
                                flux(issued + timedelta(hours=25, minutes=59))])  # window over, grace not yet
    assert waiting.resolutions == []
    [resolution] = drive(evaluator, [flux(issued + timedelta(hours=26))]).resolutions

    assert resolution.scorable and resolution.actual_class == "C" and resolution.hours_to_first["C"] == 20.0
    message = resolution.message()
    assert message.forecast_id == forecast(issued, 0.4).message_id
    assert message.event_time == issued + timedelta(hours=26)


def test_a_forecast_arriving_after_its_window_passed_resolves_at_once(settings):
    evaluator = new_evaluator(settings)
    drive(evaluator, hourly_flux(at(9), at(12)))
    [resolution] = evaluator.take_forecast(forecast(at(10), 0.2))
    assert resolution.scorable and resolution.actual_class == "none"


def test_a_forecast_is_scored_once_through_redelivery_and_a_crash_before_it_left_the_table(settings):
    issued = at(10)
    tables = {"pending": {}, "flux_hours": {}, "flares": {}}
    first = new_evaluator(settings, **tables)
    run = drive(first, [*hourly_flux(at(9), issued), forecast(issued, 0.4), forecast(issued, 0.4)])  # redelivered
    assert len(first.pending) == 1
    [resolution] = first.take_flux(flux(at(11, 2, 30)))
    # the outcome is published and written, then the worker dies before the table entry is removed
    book_in_database = MetricBook([resolution])

    restarted = new_evaluator(settings, book_in_database, **tables)
    run = drive(restarted, [forecast(issued, 0.4), *hourly_flux(at(11, 3), at(12))])
    assert run.resolutions == [] and tables["pending"] == {}
    assert restarted.settle([resolution]).dirty == {}  # settling the same outcome again scores nothing
    assert len(restarted.book) == 1


def test_the_pending_state_survives_a_restart_in_mid_window(settings):
    tables = {"pending": {}, "flux_hours": {}, "flares": {}}
    before = new_evaluator(settings, **tables)
    drive(before, [*hourly_flux(at(9), at(10, 6)), forecast(at(10, 6), 0.7), flare(at(10, 9), "M1.0"),
                   *hourly_flux(at(10, 6), at(10, 18))])

    after = new_evaluator(settings, **tables)  # the tables come back from their changelogs
    [resolution] = drive(after, hourly_flux(at(10, 18), at(11, 9))).resolutions
    assert resolution.actual_class == "M" and resolution.hours_to_first["M"] == 3.0


def test_insufficient_data_forecasts_are_resolved_but_not_scored(settings):
    evaluator = new_evaluator(settings)
    run = drive(evaluator, [*hourly_flux(at(9), at(12)), forecast(at(10), 0.0, status="insufficient_data"),
                            forecast(at(10, 1), 0.3)])
    [figures] = [u for u in evaluator.metrics(("v1", False), run.dirty[("v1", False)]) if u.window == "all"]
    assert figures.scored_count == 1
    assert figures.metrics["resolved_count"] == 2 and figures.metrics["insufficient_data_count"] == 1


def test_an_x_class_flare_alerts_once_however_many_sources_report_it(settings):
    evaluator = new_evaluator(settings)
    detected = flare(at(12, 4, 2), "X1.1", source="detector")
    catalogued = flare(at(12, 4, 0), "X1.0", source="catalogue")
    alert = evaluator.take_flare(detected)
    assert alert is not None and alert.goes_class == "X1.1" and alert.peak_time == at(12, 4, 2)
    assert evaluator.take_flare(catalogued) is None
    assert evaluator.take_flare(detected) is None
    assert evaluator.take_flare(flare(at(12, 9), "M5.0")) is None
    assert evaluator.take_flare(flare(at(13, 4), "X2.0")) is not None  # another flare, another alert


# ---- metrics -------------------------------------------------------------------------------------------------


def run_period(evaluator, start, days, p_c, *, flares=(), shadow=False, version="v1", run=None) -> Run:
    """Hourly forecasts with probability p_c(issue time) over `days`, the flux running a day and a half past."""
    messages = list(flares)
    for reading in hourly_flux(start, start + timedelta(days=days, hours=36)):
        messages.append(reading)
        issued = reading.event_time - timedelta(minutes=30)
        if issued < start + timedelta(days=days):
            messages.append(forecast(issued, p_c(issued), version=version, shadow=shadow))
    return drive(evaluator, messages, run)


def c_flares_every(hours, start, days):
    return [flare(start + timedelta(hours=h + 0.5), "C2.0") for h in range(0, days * 24, hours)]


def p_and_y(resolutions, target="C"):
    return ([r.forecast.p_24h[target] for r in resolutions],
            [int(r.hours_to_first[target] is not None) for r in resolutions])


def test_streamed_metrics_are_the_shared_scores_of_the_same_forecasts(settings):
    evaluator = new_evaluator(settings)
    run = run_period(evaluator, at(1), 10, lambda t: 0.2 + 0.6 * (t.hour % 5 == 0),
                     flares=c_flares_every(30, at(1), 10))
    as_of = run.dirty[("v1", False)]
    updates = {u.window: u for u in evaluator.metrics(("v1", False), as_of)}

    p, y = p_and_y(run.resolutions)
    offline = scoring.binary_scores(p, y, threshold=0.5, climatology=sum(y) / len(y))
    cumulative = updates["all"]
    assert cumulative.scored_count == len(run.resolutions) == 240
    for name in ("brier", "bss_climatology", "precision", "recall", "f1", "tss", "hss", "roc_auc"):
        assert cumulative.metrics[f"C.{name}"] == pytest.approx(offline[name])
    assert [row for row in cumulative.reliability if row["target"] == "C"] == [
        {"target": "C", **row} for row in scoring.reliability_table(p, y)
    ]
    # the 7-day window holds the forecasts whose 24 h window ended in the 7 days before as_of
    week = [r for r in run.resolutions if as_of - 7 * DAY_NS < r.forecast.window_end_ns <= as_of]
    assert 0 < len(week) < len(run.resolutions)
    assert updates["7d"].scored_count == len(week)
    assert updates["7d"].metrics["C.brier"] == pytest.approx(scoring.brier_score(*p_and_y(week)))


def test_registry_threshold_and_climatology_are_used_when_recorded(settings):
    evaluator = new_evaluator(settings)
    evaluator.references["v1"] = Reference(thresholds={"C": 0.3}, climatology={"C": 0.25})
    run = run_period(evaluator, at(1), 5, lambda t: 0.2 + 0.2 * (t.hour % 3 == 0), flares=c_flares_every(20, at(1), 5))
    [cumulative] = [u for u in evaluator.metrics(("v1", False), run.dirty[("v1", False)]) if u.window == "all"]
    p, y = p_and_y(run.resolutions)
    assert cumulative.metrics["C.threshold"] == 0.3
    assert cumulative.metrics["C.bss_climatology"] == pytest.approx(scoring.brier_skill_score(p, y, [0.25] * len(p)))
    assert cumulative.metrics["C.precision"] == pytest.approx(scoring.contingency(p, y, 0.3).precision())


def test_champion_and_shadow_are_scored_apart(settings):
    evaluator = new_evaluator(settings)
    run = run_period(evaluator, at(1), 3, lambda t: 0.9)
    run = run_period(evaluator, at(1), 3, lambda t: 0.1, shadow=True, version="v2", run=run)
    assert set(run.dirty) == {("v1", False), ("v2", True)}
    champion = [u for u in evaluator.metrics(("v1", False), run.dirty[("v1", False)]) if u.window == "all"][0]
    shadow = [u for u in evaluator.metrics(("v2", True), run.dirty[("v2", True)]) if u.window == "all"][0]
    assert champion.metrics["C.brier"] == pytest.approx(0.81) and shadow.metrics["C.brier"] == pytest.approx(0.01)
    assert shadow.shadow and not champion.shadow


# ---- drift ---------------------------------------------------------------------------------------------------


def test_a_skill_collapse_raises_one_drift_alert_per_episode(settings):
    """Three quiet days where the model says "quiet" (its baseline), then a flaring week it still calls quiet:
    the Brier score climbs and recall collapses, and the alert is raised once, not once per forecast."""
    evaluator = new_evaluator(settings)
    run = run_period(evaluator, at(1), 3, lambda t: 0.05)
    assert run.episodes == []
    run = run_period(evaluator, at(4), 7, lambda t: 0.05, flares=c_flares_every(6, at(4), 8), run=run)

    [episode] = run.episodes
    assert episode.cleared_ns is None and episode.ordinal == 1
    alert = episode.alert()
    assert alert.metric == "C.brier" and alert.model_version == "v1" and alert.window == "7d"
    assert alert.value > alert.baseline * 1.1 and alert.threshold == pytest.approx(alert.baseline * 1.1)
    assert alert.baseline == pytest.approx(0.05 ** 2)  # the first 24 scored forecasts: quiet and right
    assert alert.message_id == evaluator.drift.open["v1"].alert_id


def test_drift_clears_only_when_the_metrics_recover_and_can_open_again(settings):
    evaluator = new_evaluator(settings)
    run = run_period(evaluator, at(1), 3, lambda t: 0.05)
    run = run_period(evaluator, at(4), 7, lambda t: 0.05, flares=c_flares_every(6, at(4), 8), run=run)  # collapse
    run = run_period(evaluator, at(12), 10, lambda t: 0.05, run=run)  # quiet again: the model is right again
    run = run_period(evaluator, at(23), 7, lambda t: 0.05, flares=c_flares_every(6, at(23), 8), run=run)  # again

    assert [(e.ordinal, e.cleared_ns is None) for e in run.episodes] == [(1, True), (1, False), (2, True)]
    assert run.episodes[0].alert_id != run.episodes[2].alert_id


def test_no_drift_alert_before_the_minimum_number_of_scored_forecasts(settings):
    evaluator = new_evaluator(settings)
    evaluator.references["v1"] = Reference(baseline_brier={"C": 0.01})
    run = run_period(evaluator, at(1), 1, lambda t: 0.05, flares=c_flares_every(6, at(1), 2))
    # every forecast missed its flares, but the alert waits for the 24th (min_scored_before_alert)
    assert len(run.resolutions) == 24
    [episode] = run.episodes
    assert episode.started_ns == run.resolutions[-1].resolved_ns
    assert episode.breach.baseline == 0.01  # the registry's baseline, not the first forecasts'


def test_a_restart_inside_an_episode_does_not_alert_again(settings):
    evaluator = new_evaluator(settings)
    run = run_period(evaluator, at(1), 3, lambda t: 0.05)
    run = run_period(evaluator, at(4), 7, lambda t: 0.05, flares=c_flares_every(6, at(4), 8), run=run)
    assert len(run.episodes) == 1

    restarted = new_evaluator(settings, MetricBook(run.resolutions), run.episodes)
    more = run_period(restarted, at(11), 3, lambda t: 0.05, flares=c_flares_every(6, at(11), 4))
    assert len(more.resolutions) == 72 and more.episodes == []


def test_shadow_versions_raise_no_drift(settings):
    evaluator = new_evaluator(settings)
    run = run_period(evaluator, at(1), 3, lambda t: 0.05, shadow=True)
    run = run_period(evaluator, at(4), 7, lambda t: 0.05, shadow=True, flares=c_flares_every(6, at(4), 8), run=run)
    assert len(run.resolutions) == 240 and run.episodes == []


def drive_in_batches(evaluator, messages, size: int) -> Run:
    """What the worker does when behind: the decisions on a batch of messages, then its resolutions settled."""
    run = Run()
    for start in range(0, len(messages), size):
        resolutions = []
        for message in messages[start:start + size]:
            if isinstance(message, m.FluxObserved):
                resolutions += evaluator.take_flux(message)
            elif isinstance(message, m.ForecastIssued):
                resolutions += evaluator.take_forecast(message)
            else:
                evaluator.take_flare(message)
        resolutions = unique_resolutions(resolutions)
        settled = evaluator.settle(resolutions)
        run.resolutions += resolutions
        run.episodes += settled.episodes
        run.dirty.update(settled.dirty)
    return run


def test_a_backlog_settled_in_batches_scores_and_alerts_as_one_message_at_a_time(settings):
    """Ten quiet days then a flaring week, every forecast delivered twice (the second time just after it
    resolved): settled batch by batch, the outcomes, scores and the drift episode are those of one message at a time."""
    timeline = [(f.event_time, f) for f in c_flares_every(6, at(11), 8)]
    for reading in hourly_flux(at(1), at(18, 12)):
        timeline.append((reading.event_time, reading))
        issued = reading.event_time - timedelta(minutes=30)
        if issued < at(17):
            timeline.append((issued, forecast(issued, 0.05)))
            # delivered again just after the reading that resolves it: inside the same batch, before it settles
            timeline.append((issued + GRACE + timedelta(hours=24, minutes=31), forecast(issued, 0.05)))
    messages = [message for _, message in sorted(timeline, key=lambda pair: pair[0])]
    one_at_a_time, at_once = new_evaluator(settings), new_evaluator(settings)
    expected = drive(one_at_a_time, messages)
    batched = drive_in_batches(at_once, messages, size=500)

    assert len(batched.resolutions) == len(expected.resolutions) == 16 * 24
    assert [r.message() for r in batched.resolutions] == [r.message() for r in expected.resolutions]
    assert [e.alert() for e in batched.episodes] == [e.alert() for e in expected.episodes] != []
    assert batched.dirty == expected.dirty
    as_of = expected.dirty[("v1", False)]
    assert at_once.metrics(("v1", False), as_of) == one_at_a_time.metrics(("v1", False), as_of)


def test_degraded_forecasts_are_scored_apart_from_the_version_s_own(settings):
    evaluator = new_evaluator(settings)
    messages = []
    for reading in hourly_flux(at(1), at(1) + timedelta(days=4, hours=12)):
        messages.append(reading)
        issued = reading.event_time - timedelta(minutes=30)
        if issued < at(1) + timedelta(days=3):
            # every other hour from the flare history alone (no usable flux then), with its own probabilities
            degraded = issued.hour % 2 == 0
            messages.append(forecast(issued, 0.9 if degraded else 0.1).model_copy(update={
                "degraded": degraded, "reason": "degraded: no flux; forecast from the flare history alone"
                if degraded else None}))
    run = drive(evaluator, messages)
    assert set(run.dirty) == {("v1", False)} and len(run.resolutions) == 72
    [cumulative] = [u for u in evaluator.metrics(("v1", False), run.dirty[("v1", False)]) if u.window == "all"]
    # no flare: the version's own forecasts (0.1) and the degraded ones (0.9) each have their Brier score
    assert cumulative.scored_count == 36 and cumulative.metrics["C.count"] == 36
    assert cumulative.metrics["C.brier"] == pytest.approx(0.01)
    assert cumulative.metrics["degraded.C.count"] == 36
    assert cumulative.metrics["degraded.C.brier"] == pytest.approx(0.81)
    assert cumulative.metrics["degraded.resolved_count"] == 36
    # the flag survives the evaluator's pending table
    pending = next(r.forecast for r in run.resolutions if r.forecast.degraded)
    assert type(pending).from_dict(pending.to_dict()) == pending
