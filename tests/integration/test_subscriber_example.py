"""A downstream app's developer runs the README's subscriber example against the broker: it prints the >=M
probability of each forecast the predictor's stream code issued from the GOES-15 minutes (once, though one is
delivered twice) and the alerts: an X-class flare alert the evaluator's core raised for a catalogued flare, and
a drift alert."""

from __future__ import annotations

import ast
import asyncio
import sys
from datetime import datetime, timedelta, timezone

from services.evaluator.core import Evaluator
from services.evaluator.metrics import MetricBook
from services.predictor.models import ModelSlots
from shared import messages as m
from shared.kafka import Publisher, ensure_topics
from shared.topics import topic_registry
from tests.conftest import PROJECT_ROOT
from tests.support.evaluator_data import at, reference_flares
from tests.support.stream_forecasting import forecaster
from tests.unit.test_predictor_stream import feed, july_readings, model

EXAMPLE = PROJECT_ROOT / "docs" / "examples" / "subscribe_forecasts.py"
README = PROJECT_ROOT / "README.md"


def test_the_example_needs_nothing_of_flare_plus():
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(EXAMPLE.read_text()))
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(EXAMPLE.read_text()))
                 if isinstance(node, ast.ImportFrom)}
    assert imported == {"asyncio", "json", "sys", "aiokafka"}


def test_the_readme_quotes_the_example_as_it_is():
    section = README.read_text().split("## For downstream apps", 1)[1]
    quoted = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(quoted.splitlines()) >= 12 and quoted in EXAMPLE.read_text()


async def lines_of(process: asyncio.subprocess.Process, count: int, timeout: float = 60.0) -> list[str]:
    lines = []
    async with asyncio.timeout(timeout):
        while len(lines) < count:
            line = await process.stdout.readline()
            assert line, f"the example ended after {lines}: {(await process.stderr.read()).decode()[-2000:]}"
            lines.append(line.decode().rstrip("\n"))
    return lines


async def test_the_subscriber_example_prints_forecasts_once_and_alerts(settings):
    morning = [r for r in july_readings() if r.event_time < datetime(2015, 7, 1, 14, 30, tzinfo=timezone.utc)]
    issued = await feed(forecaster(ModelSlots(champion=model("v-example"))), morning)
    shown = issued[-4:]  # 11:00 (too little flux yet) to 14:00
    assert [f.status for f in shown].count("ok") >= 2
    last = shown[-1]
    degraded = last.model_copy(update={"message_id": m.stable_id("degraded-example"), "degraded": True,
                                       "event_time": last.event_time + timedelta(hours=1),
                                       "reason": "no flux in the 72 h lookback: from the flare history"})
    shadow = last.model_copy(update={"message_id": m.stable_id("shadow-example"), "shadow": True,
                                     "model_version": "v-challenger"})
    x_flare = next(f for f in reference_flares(at(24, month=10, year=2014), at(25, month=10, year=2014))
                   if f.class_letter == "X")
    x_alert = Evaluator.for_settings(settings, MetricBook()).take_flare(x_flare)
    drift = m.MetricDrift(message_id=m.stable_id("drift-example"), event_time=at(14, 14), model_version="v-example",
                          metric="M.brier", value=0.2113, baseline=0.05, threshold=0.15, window="7d")
    # with the registry's one partition each, as the system creates them: order holds on the topic
    await ensure_topics(settings.kafka_bootstrap_servers, topic_registry(settings).values())
    async with Publisher(settings.kafka_bootstrap_servers) as publisher:
        # the last one redelivered, a challenger's beside it, then a degraded one
        await publisher.publish_many(settings.topics.forecasts, [*shown, last, shadow, degraded])
        await publisher.publish_many(settings.topics.alerts, [x_alert, drift])
    shown.append(degraded)

    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), settings.kafka_bootstrap_servers, settings.topics.forecasts,
        settings.topics.alerts, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        printed = await lines_of(process, len(shown) + 2)
        try:  # the redelivered forecast must not come out a second time
            extra = await asyncio.wait_for(process.stdout.readline(), 3)
        except TimeoutError:
            extra = b""
    finally:
        process.terminate()
        await process.wait()
    print("\n".join(printed))

    expected_forecasts = [
        f"{f.event_time.isoformat().replace('+00:00', 'Z')}  P(>=M in 24 h) = "
        f"{f.survival['M'].probability_within_24h:.3f}  model v-example"
        + (f"  DEGRADED ({f.reason})" if f.degraded else "") if f.status == "ok" else
        f"{f.event_time.isoformat().replace('+00:00', 'Z')}  no forecast: {f.reason}" for f in shown]
    assert [line for line in printed if "ALERT" not in line] == expected_forecasts
    assert sorted(line for line in printed if "ALERT" in line) == sorted([
        f"{x_flare.peak_time.isoformat().replace('+00:00', 'Z')}  ALERT X-class flare {x_flare.goes_class} peaked",
        "2015-07-14T14:00:00Z  ALERT v-example: M.brier = 0.211 over 7d (threshold 0.15)"])
    assert extra == b""
