"""The deployment plan's manual retraining, with the `flare` commands against the running gatekeeper: an operator
trains the C-class survival model by hand (`train-survival --target-class C --detect-flares --save-model PATH`),
the gates judge it like any candidate, `validate-model` and `backtest` work on the file, deploying is promoting
it through the gatekeeper (an override when the gates did not pass it) and `flare rollback` undoes it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from services.ingestor.pipeline import Ingestor
from shared import messages as m
from shared.kafka import Publisher
from shared.registry import survival_kind
from tests.support.gatekeeper_process import OPERATORS, gatekeeper_running
from tests.support.topic_reader import read_all
from tests.support.trainer_data import insert_history

SMALL_MODELS = {"MODEL__RSF_N_ESTIMATORS": "10", "MODEL__CLASSIFIER_MAX_ITER": "30"}
# a gate no candidate of this small history passes: every verdict here is a REJECT naming backtest.f1
STRICT_GATE = {"THRESHOLDS__BACKTEST_MIN_F1": "0.99"}
FLARE_PEAK = datetime(2012, 1, 10, 12, 6, tzinfo=UTC)


async def store_minute_flare(conn, peak: datetime) -> None:
    """An hour of 1-minute GOES-15 flux around a C5 flare as the ingestor stores it: flat at B1, a six-minute
    rise, a slow decay."""
    start = peak - timedelta(minutes=35)
    profile = [1e-7] * 30 + [1e-7 * 1.6 ** k for k in range(1, 7)] + [1.68e-6 * 0.93 ** k for k in range(1, 40)]
    profile = [max(value, 1e-7) for value in profile]
    peak_at = start + timedelta(minutes=profile.index(max(profile)))
    rows = [("GOES-15", start + timedelta(minutes=i), 60, "swpc_scaled", None, flux, "good", "test:minute",
             m.stable_id("minute", i)) for i, flux in enumerate(profile)]
    await conn.copy_records_to_table(
        "flux_observations", records=rows,
        columns=["satellite", "time_tag", "cadence_seconds", "scaling_era", "xrsa_flux", "xrsb_flux", "quality",
                 "source", "message_id"])
    assert peak_at == peak


def registered_version(stdout: str) -> str:
    return re.search(r"^registered (\S+) ", stdout, re.MULTILINE).group(1)


async def test_detection_over_the_stored_flux_stores_the_flares_it_finds_once(settings, clean_db):
    async with clean_db.acquire() as conn:
        await store_minute_flare(conn, FLARE_PEAK)
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        ingestor = Ingestor(settings, clean_db, publisher)
        first = await ingestor.detect_stored()
        again = await ingestor.detect_stored()
    assert (first.readings, first.flares_found, first.flares_new) == (75, 1, 1)
    assert (again.flares_found, again.flares_new) == (1, 0)
    async with clean_db.acquire() as conn:
        flares = await conn.fetch("SELECT peak_time, goes_class, source FROM flare_events")
        runs = await conn.fetch("SELECT source, status FROM flare_ingestion_log ORDER BY started_at")
    assert [(f["peak_time"], f["goes_class"][0], f["source"]) for f in flares] == [(FLARE_PEAK, "C", m.DETECTED_SOURCE)]
    assert [(r["source"], r["status"]) for r in runs] == [("stored 1-minute flux", "ok")] * 2


async def test_a_survival_model_trained_by_hand_is_gated_deployed_by_override_and_rolled_back(
        settings, clean_db, tmp_path):
    async with clean_db.acquire() as conn:
        await insert_history(conn, "2011-06-01", "2012-03-20")
        await store_minute_flare(conn, FLARE_PEAK)
    today = datetime.now(UTC)
    plan_path = f"/app/models/survival_model_c_class_{today:%Y%m%d}.joblib"
    saved = settings.model_path / f"survival_model_c_class_{today:%Y%m%d}.joblib"
    async with gatekeeper_running(settings, clean_db, tmp_path / "gatekeeper.log", **STRICT_GATE) as gatekeeper:
        def flare(*args: str, **kwargs):
            return gatekeeper.flare(*args, timeout=300, **SMALL_MODELS, **kwargs)

        # the plan's Manual Retraining block: the container path does not exist here, the model folder is used
        trained = flare("train-survival", "--target-class", "C", "--until", "2012-01-20", "--detect-flares",
                        "--save-model", plan_path, "--verdict-wait", "120")
        assert trained.returncode == 0, trained.stderr
        assert f"saving {saved.name} in the model folder" in trained.stderr
        assert "detected   1 flare(s) in 75 stored 1-minute readings (1 new, stored)" in trained.stdout
        first = registered_version(trained.stdout)
        assert f"{first} ({survival_kind('C')}, candidate)" in trained.stdout and str(saved) in trained.stdout
        assert saved.exists() and f"announced  {first} to the gatekeeper" in trained.stdout
        assert re.search(rf"^verdict    REJECT: failed backtest\.f1 .*; {first} is rejected$", trained.stdout,
                         re.MULTILINE)

        taken = flare("train-survival", "--target-class", "C", "--save-model", plan_path)
        assert taken.returncode == 1 and "exists already" in taken.stderr

        validated = flare("validate-model", plan_path)
        assert f"version {first} ({survival_kind('C')}, rejected)" in validated.stdout, validated.stdout
        assert "PASS  digest_matches" in validated.stdout and "PASS  no_nan" in validated.stdout
        out = tmp_path / "backtest"
        backtested = flare("backtest", "--model", plan_path, "--from", "2012-01-20", "--to", "2012-02-10",
                           "--out", str(out))
        assert backtested.returncode == 0, backtested.stderr
        assert "Brier skill" in (out / "backtest_report.txt").read_text()

        refused = flare("promote", first)
        assert refused.returncode == 1 and "HTTP 409" in refused.stderr
        assert "failed the gates" in refused.stderr and "backtest.f1" in refused.stderr
        forced = flare("promote", first, "--force", "--reason", "the first C model; F1 judged on a quiet month")
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.startswith(f"done: {first} is champion (forced past the gates")

        # the monthly command: the plan's name of the day is taken, so the version id is added to it
        monthly = flare("train-survival", "--target-class", "C", "--until", "2012-02-01", "--save-model",
                        "--verdict-wait", "120", token=OPERATORS[1])
        assert monthly.returncode == 0, monthly.stderr
        second = registered_version(monthly.stdout)
        assert (settings.model_path / f"{saved.stem}_{second}.joblib").exists()
        assert "verdict    REJECT: failed backtest.f1" in monthly.stdout
        deployed = flare("promote", second, "--force", "--reason", "more recent data", token=OPERATORS[1])
        assert deployed.returncode == 0 and f"champion {second}" in deployed.stdout

        rolled = flare("rollback", "--kind", survival_kind("C"), "--reason", "the new model looks worse")
        assert rolled.returncode == 0 and f"rolled back from {second} to {first}" in rolled.stdout

        history = json.loads(flare("history", "--kind", survival_kind("C"), "--json").stdout)
    steps = [(e["action"], e["version"], e["actor"]) for e in reversed(history)
             if e["action"] not in ("validated", "backtested")]
    assert steps == [
        ("registered", first, "cli"), ("gate_verdict", first, "gatekeeper"),
        ("gate_overridden", first, "alice"), ("promoted", first, "alice"),
        ("registered", second, "cli"), ("gate_verdict", second, "gatekeeper"),
        ("gate_overridden", second, "bob"), ("promoted", second, "bob"),
        ("rolled_back", first, "alice"),
    ]
    overrides = {e["version"]: e["reason"] for e in history if e["action"] == "gate_overridden"}
    assert overrides == {first: "the first C model; F1 judged on a quiet month", second: "more recent data"}
    announced = [x for x in await read_all(settings, "lifecycle", 500, at_least=5, timeout=30)
                 if isinstance(x, m.ModelTrained)]
    assert [(x.version, x.request_id) for x in announced] == [(first, None), (second, None)]
