"""`flare demo`: the whole system on the reference data, end to end, on embedded infrastructure.

It starts the broker, the database and the services, loads the GOES-15 hourly history (2010-2015) and the
NOAA flare catalogue as a backfill (stored for training, not streamed: history is not news the system should
react to), asks the gatekeeper for the first models when the registry is empty, then replays the July 2015 \
1-minute month at a multiple of real time. From there the system runs its
own loop: forecasts, scoring, drift and scheduled retraining, gating, promotion. It prints where to look and a
summary when the replay has been scored.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from flare_cli import context, launcher
from flare_cli.commands.stack import _prepare
from shared.paths import project_root

if TYPE_CHECKING:
    from shared.settings import Settings

HISTORY = "goes15_hourly/goes15_xrs_hourly_2010-09_2015-12.csv.gz"
CATALOGUE = "flare_lists/swpc_flarelist_sc24_2010_2015.csv.gz"
MONTH = "goes15_1m/g15_xrs_1m_20150701_20150731.csv.gz"
UTC = timezone.utc
SUMMARY_SCORES = ("brier", "bss_climatology", "precision", "recall", "tss")


@dataclass(frozen=True)
class Plan:
    """What the demo loads: the history as a backfill, then the month through the streams at `speed`."""

    history_from: datetime
    history_until: datetime
    month_from: datetime
    month_until: datetime
    speed: float
    model_env: dict[str, str]


FULL = Plan(datetime(2010, 9, 1, tzinfo=UTC), datetime(2015, 6, 29, tzinfo=UTC),
            datetime(2015, 7, 1, tzinfo=UTC), datetime(2015, 8, 1, tzinfo=UTC), 10_000.0, {})
# The shortened path that the test runs: a year of history, four days of minutes, small models. A year is too
# little for small models to meet the plan's thresholds on >=M, so the gates judge >=C only there.
SHORT = Plan(datetime(2014, 6, 1, tzinfo=UTC), datetime(2015, 6, 29, tzinfo=UTC),
             datetime(2015, 7, 1, tzinfo=UTC), datetime(2015, 7, 4, tzinfo=UTC), 4_000.0,
             {"MODEL__RSF_N_ESTIMATORS": "15", "MODEL__CLASSIFIER_MAX_ITER": "40",
              "MODEL__SURVIVAL_SUBSAMPLE_HOURS": "12", "THRESHOLDS__BACKTEST_TARGETS": '["C"]'})


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the whole system on the reference data (the README's main command)")
    parser.add_argument("--short", action="store_true", help="a year of history and four days of minutes, small models")
    parser.add_argument("--speed", type=float, help="replay the 1-minute month at this multiple of real time")
    parser.add_argument("--live", action="store_true", help="ingest the live SWPC feed instead of the reference files")
    parser.add_argument("--exit-after-summary", action="store_true",
                        help="leave the system running and return after the summary instead of waiting for Ctrl-C")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for each stage (default 1800)")
    parser.set_defaults(handler=cmd_demo)


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def flare_command(*args: str) -> None:
    """Run a `flare` sub-command in its own process, showing its progress bar and output."""
    result = subprocess.run([sys.executable, "-m", "flare_cli.main", *args], cwd=project_root())
    if result.returncode != 0:
        raise SystemExit(f"flare demo: `flare {' '.join(args)}` failed with status {result.returncode}")


def ensure_env_file() -> None:
    from shared.settings import config_paths

    _, env = config_paths()
    if not env.exists():
        shutil.copy(project_root() / "deploy" / "env.example", env)
        say(f"created {env} from deploy/env.example")


def urls(settings: Settings) -> dict[str, str]:
    host = settings.bind_host
    return {
        "dashboard": f"http://{host}:{settings.ui_port}/",
        "predictor API docs": f"http://{host}:{settings.api_port}/docs",
        "evaluator metrics": f"http://{host}:{settings.evaluator_port}/metrics/performance",
        "gatekeeper API docs": f"http://{host}:{settings.gatekeeper_port}/docs",
    }


def wait_until(what: str, condition, timeout: float, every: float = 2.0, *, stopped=list) -> None:
    """Wait for `condition`; give up at the timeout, or at once when a service the demo started has stopped
    (`stopped` names them): nothing it waits for can happen then."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last_note = None
    while True:
        done, note = condition()
        if done:
            say(f"{what}: {note} ({time.monotonic() - started:.0f} s)")
            return
        if dead := stopped():
            raise SystemExit(f"flare demo: the {', '.join(dead)} stopped while waiting for {what}; "
                             f"`flare logs {dead[0]}` shows why")
        if time.monotonic() > deadline:
            raise SystemExit(f"flare demo: gave up waiting for {what} after {timeout:.0f} s ({note})")
        if note != last_note:
            say(f"waiting for {what}: {note}")
            last_note = note
        time.sleep(every)


def http_ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def query(dsn: str, sql: str, *args):
    import asyncio


    from shared.db import connect

    async def run():
        conn = await connect(dsn, timeout_seconds=10)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def request_first_models(settings: Settings) -> None:
    import httpx

    url = f"http://{settings.bind_host}:{settings.gatekeeper_port}/retrain"
    response = httpx.post(
        url, json={"target_class": "all", "reason": "demo: the registry is empty, train the first models",
                   "request_key": "demo-first-models"},
        headers={"Authorization": f"Bearer {context.operator_token(settings)}"}, timeout=30,
    )
    if response.status_code >= 400:
        raise SystemExit(f"flare demo: the gatekeeper refused the retrain request:"
                         f" {response.status_code} {response.text}")
    say(f"asked the gatekeeper for the first models: {response.json().get('status', response.status_code)}")


def champion_state(dsn: str):
    rows = query(dsn, "SELECT version FROM model_registry WHERE status = 'champion'")
    if rows:
        return True, f"champion {rows[0]['version']}"
    trained = query(dsn, "SELECT count(*) AS n FROM model_registry")[0]["n"]
    return False, f"{trained} version(s) registered, no champion yet"


def replay_scored(dsn: str, plan: Plan, settings: Settings):
    """Done when forecasts reach the end of the replay and those whose window (24 h and the evaluator's grace
    for late flare reports) closed before the replay's last reading are resolved."""
    cadence = timedelta(minutes=settings.predictor.cadence_minutes)
    closed_before = plan.month_until - timedelta(hours=24, minutes=settings.evaluator.resolution_grace_minutes)
    row = query(
        dsn,
        "SELECT count(*) AS issued, max(prediction_timestamp) AS latest,"
        " count(*) FILTER (WHERE resolved_at IS NOT NULL) AS resolved,"
        " count(*) FILTER (WHERE prediction_timestamp < $2::timestamptz) AS closable"
        " FROM flare_prediction_log WHERE prediction_timestamp >= $1::timestamptz AND NOT shadow",
        plan.month_from, closed_before,
    )[0]
    note = f"{row['issued']} forecasts, {row['resolved']} resolved, up to {row['latest'] or '-'}"
    caught_up = row["latest"] is not None and row["latest"] >= plan.month_until - 2 * cadence
    return caught_up and row["resolved"] >= row["closable"] > 0, note


def retrain_cycle(dsn: str, started: datetime):
    """Done when a retrain request has led to a promotion and no request is still in flight."""
    rows = query(dsn, "SELECT action, count(*) AS n FROM model_history"
                      " WHERE recorded_at >= $1 GROUP BY action", started)
    counts = {r["action"]: r["n"] for r in rows}
    in_flight = query(dsn, "SELECT count(*) AS n FROM retrain_requests WHERE status = 'requested'")[0]["n"]
    note = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing yet"
    if in_flight:
        note += f"; {in_flight} retrain request(s) in flight"
    return counts.get("promoted", 0) >= 1 and counts.get("retrain_requested", 0) >= 1 and not in_flight, note


def summary(dsn: str, started: datetime, settings: Settings) -> None:
    print("\n==== Flare+ demo summary ====")
    for row in query(
        dsn,
        "SELECT model_version, shadow, count(*) AS issued, count(*) FILTER (WHERE status = 'ok') AS ok,"
        " count(*) FILTER (WHERE outcome_scorable) AS scored,"
        " count(*) FILTER (WHERE outcome_scorable = false) AS unscorable"
        " FROM flare_prediction_log GROUP BY 1, 2 ORDER BY 1",
    ):
        role = "shadow" if row["shadow"] else "champion stream"
        print(f"forecasts  {row['model_version']} ({role}): {row['issued']} issued, {row['ok']} with data, "
              f"{row['scored']} scored, {row['unscorable']} unscorable (gaps)")
    for row in query(
        dsn,
        "SELECT DISTINCT ON (model_version, shadow) model_version, shadow, scored_count, metrics, window_name"
        " FROM model_metrics WHERE window_name = 'all' ORDER BY model_version, shadow, as_of DESC",
    ):
        metrics = row["metrics"]
        figures = ", ".join(f"{k} {metrics[k]:.3f}" for k in sorted(metrics) if metrics[k] is not None
                            and k.split(".")[0] in ("C", "M") and k.split(".")[-1] in SUMMARY_SCORES)
        print(f"skill      {row['model_version']}{' (shadow)' if row['shadow'] else ''}:"
              f" {row['scored_count']} scored; {figures}")
    print("history:")
    for row in query(dsn, "SELECT recorded_at, action, version, actor, reason FROM model_history"
                          " WHERE recorded_at >= $1 ORDER BY id", started):
        print(f"  {row['recorded_at']:%H:%M:%S} {row['action']:<18} {row['version'] or '':<30}"
              f" by {row['actor']}: {row['reason'][:90]}")
    print("\nwhere to look:")
    for name, url in urls(settings).items():
        print(f"  {name:<20} {url}")
    print("  logs                 flare logs -f        stop: flare down")


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    plan = SHORT if args.short else FULL
    if args.speed:
        plan = Plan(plan.history_from, plan.history_until, plan.month_from, plan.month_until, args.speed,
                    plan.model_env)
    ensure_env_file()
    settings = context.settings()
    started = datetime.now(UTC)
    endpoints = context.endpoints(start=True)
    asyncio.run(_prepare(endpoints))
    say(f"broker {endpoints.kafka_bootstrap_servers}, database ready")

    services = [name for name in launcher.available_services() if args.live or name != "ingestor"]
    for name in services:
        record = launcher.start_service(settings, endpoints, name, extra_env=plan.model_env)
        say(f"started {name} (pid {record['pid']})")

    def stopped() -> list[str]:
        return [name for name in services if not launcher.service_running(settings.state_dir, name)]
    for name, url in (("gatekeeper", f"http://{settings.bind_host}:{settings.gatekeeper_port}/health"),
                      ("predictor", f"http://{settings.bind_host}:{settings.api_port}/health"),
                      ("evaluator", f"http://{settings.bind_host}:{settings.evaluator_port}/metrics/performance")):
        wait_until(f"{name} API", lambda url=url: (http_ready(url), url), args.timeout, stopped=stopped)
    for name, url in urls(settings).items():
        say(f"{name}: {url}")

    dsn = endpoints.database_url
    if args.live:
        say("ingesting the live SWPC feed (the ingestor service polls it); Ctrl-C stops the demo")
        return _wait_for_interrupt(args, settings)

    data = settings.data_dir
    say("loading the flare catalogue and the hourly GOES-15 history (a backfill: stored for training, not streamed)")
    flare_command("ingest", "--backfill", str(data / CATALOGUE), str(data / HISTORY),
                  "--from", plan.history_from.isoformat(), "--until", plan.history_until.isoformat())
    if not champion_state(dsn)[0]:
        request_first_models(settings)
    wait_until("a champion model", lambda: champion_state(dsn), args.timeout, every=3, stopped=stopped)

    say(f"replaying July 2015, 1-minute flux, at {plan.speed:g}x real time")
    flare_command("ingest", str(data / MONTH), "--speed", str(plan.speed),
                  "--from", plan.month_from.isoformat(), "--until", plan.month_until.isoformat())
    wait_until("forecasts scored to the end of the replay", lambda: replay_scored(dsn, plan, settings), args.timeout,
               every=3, stopped=stopped)
    wait_until("a retrain-gate-promote cycle", lambda: retrain_cycle(dsn, started), args.timeout, every=3,
               stopped=stopped)
    summary(dsn, started, settings)
    return _wait_for_interrupt(args, settings)


def _wait_for_interrupt(args: argparse.Namespace, settings: Settings) -> int:
    if args.exit_after_summary:
        return 0
    say("the system keeps running; Ctrl-C here (or `flare down` elsewhere) stops everything")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    for name in launcher.stop_all_services(settings.state_dir):
        say(f"stopped {name}")
    flare_command("down")
    return 0
