"""Security, checked the way an attacker and an auditor would: every route that changes something refuses a
missing, wrong, expired or read-only credential and changes nothing; a model file changed after registration
is never crowned nor loaded; SQL in any text field is stored as text or refused; and no secret (tokens, API
keys, the database password) ever reaches a log or a command's output.

Short versions run in `make test`; `make reliability` (`full_run`) uses many more injection payloads and also
runs the predictor as a process for the log audit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr

from flare_cli.commands.validate import run_validation
from services.dashboard.app import Hub, create_app as create_dashboard
from services.dashboard.view import DashboardView
from services.evaluator.api import create_api as create_evaluator
from services.gatekeeper.api import create_app as create_gatekeeper
from services.gatekeeper.lifecycle import Gatekeeper
from services.gatekeeper.service import handle
from services.predictor.api import build_api as create_predictor
from services.predictor.service import Predictor
from services.trainer import store as trainer_store
from shared import messages as m
from shared import registry
from shared.forecast_model import sha256_file
from shared.kafka import Publisher, ensure_topics
from shared.settings import Settings
from shared.topics import topic_registry
from tests.conftest import PROJECT_ROOT
from tests.support.service_process import ServiceProcess, running

# Every secret is distinctive, so finding one anywhere in a log is unambiguous.
ALICE = "alice:alice-op-s3cret-7f1e"                  # operator
CAROL = "carol:carol-view-s3cret-2b9d"                # viewer
DAVE = "dave:dave-op-s3cret-c4e0"                     # operator whose token expired
EXPIRED = "@2020-01-01T00:00:00Z"
PARTNER_KEY = "partner:partner-key-s3cret-91da"      # API key
OLD_KEY = "old:old-key-s3cret-5aa3"                   # API key that expired
WRONG = "mallory:guessed-s3cret-0bad"
DB_PASSWORD = "db-pass-s3cret-e1c7"
SECRETS = [ALICE.split(":")[1], CAROL.split(":")[1], DAVE.split(":")[1], PARTNER_KEY.split(":")[1],
           OLD_KEY.split(":")[1], WRONG.split(":")[1], DB_PASSWORD]

SHORT_PAYLOADS = ["'; DROP TABLE model_registry; --", "' OR '1'='1", "1; DELETE FROM model_history WHERE true",
                  "\"); TRUNCATE retrain_requests; --"]
FULL_PAYLOADS = SHORT_PAYLOADS + [
    "' OR 1=1 --", "admin'--", "' UNION SELECT version, kind, status FROM model_registry --",
    "'; UPDATE model_registry SET status='champion'; --", "1' AND SLEEP(5) AND '1'='1", "'; SELECT pg_sleep(5); --",
    "$$; DROP TABLE model_history; $$", "\\'; DROP TABLE retrain_requests; --", "' OR ''='", "%' OR '%'='",
    "'||(SELECT current_user)||'", "1e1; COPY model_registry TO '/tmp/x'; --", "' ; -- \u0000 nul", "😀'; --",
]
# The operator whose very name is an injection attempt: it ends up as the actor in the history.
INJECTOR_NAME = SHORT_PAYLOADS[0]
INJECTOR = f"{INJECTOR_NAME}:injector-s3cret-77aa"

AUDITED_TABLES = {"model_registry": "version", "model_history": "id", "retrain_requests": "request_id",
                  "flare_system_validation_log": "id"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


# How each service's non-read routes take credentials, and what each kind of bad credential must get. A service
# not listed has no credentials at all, so a non-read route added to it fails the audit below.
REFUSALS = {
    "gatekeeper": {"no credential": ({}, 401), "wrong": (bearer(WRONG), 401), "expired": (bearer(DAVE), 401),
                   "viewer": (bearer(CAROL), 403)},
    "predictor": {"no credential": ({}, 401), "wrong": (api_key(WRONG), 401), "expired": (api_key(OLD_KEY), 401),
                  "viewer token as a key": (api_key(CAROL), 401)},
}
VALID = {"gatekeeper": bearer(ALICE), "predictor": api_key(PARTNER_KEY)}


@pytest.fixture
def secure_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "operator_tokens": [SecretStr(ALICE), SecretStr(DAVE + EXPIRED), SecretStr(INJECTOR)],
        "viewer_tokens": [SecretStr(CAROL)],
        "api_keys": [SecretStr(PARTNER_KEY), SecretStr(OLD_KEY + EXPIRED)],
    })


@pytest.fixture
async def gatekeeper(clean_db, secure_settings) -> Gatekeeper:
    await ensure_topics(secure_settings.kafka_bootstrap_servers, topic_registry(secure_settings).values())
    async with clean_db.acquire() as conn:
        await conn.execute("TRUNCATE retrain_triggers, gatekeeper_outbox, gatekeeper_clock")
    async with Publisher(secure_settings.kafka_bootstrap_servers) as publisher:
        yield Gatekeeper(clean_db, secure_settings, publisher)


@pytest.fixture
def apps(gatekeeper, secure_settings, stack) -> dict[str, FastAPI]:
    """Every service's REST app, built as the service builds it."""
    async def no_pool():
        raise AssertionError("the evaluator's database is not needed to list its routes")

    return {
        "gatekeeper": create_gatekeeper(gatekeeper),
        "predictor": create_predictor(Predictor(secure_settings, stack.database_url, stack.kafka_bootstrap_servers)),
        "evaluator": create_evaluator(secure_settings, no_pool),
        "dashboard": create_dashboard(Hub(DashboardView())),
    }


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


@pytest.fixture
def kind() -> str:
    """A model kind of this test alone: the history is append-only and shared by every test."""
    return f"security-{uuid.uuid4().hex[:8]}"


async def register_with_file(pool, settings: Settings, kind: str, name: str) -> dict[str, Any]:
    """A registered version whose one artifact is a real file with its sha256 recorded, as the trainer leaves it."""
    settings.model_path.mkdir(parents=True, exist_ok=True)
    version = f"{kind}-{name}"
    path = settings.model_path / f"{version}.joblib"
    path.write_bytes(f"model bytes of {version} ".encode() * 64)
    async with pool.acquire() as conn:
        await trainer_store.register(
            conn, version=version, kind=kind, artifacts={"survival_C": str(path)},
            digests={"survival_C": sha256_file(path)},
            data_window=(datetime(2014, 1, 1, tzinfo=timezone.utc), datetime(2015, 1, 1, tzinfo=timezone.utc)),
            hyperparameters={}, validation={}, backtest={}, actor="trainer", reason="security test")
        return await registry.get(conn, version)


def flip_a_byte(path: str) -> None:
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(data))


async def snapshot(pool) -> dict[str, dict[Any, dict[str, Any]]]:
    """The audited tables, row by row, keyed by primary key."""
    async with pool.acquire() as conn:
        return {table: {row[key]: dict(row) for row in await conn.fetch(f"SELECT * FROM {table}")}
                for table, key in AUDITED_TABLES.items()}


def changes(before: dict, after: dict) -> dict[str, list[dict[str, Any]]]:
    """Per table, the rows that are new; fails if any earlier row was changed or removed."""
    added = {}
    for table, rows in before.items():
        for key, row in rows.items():
            assert after[table].get(key) == row, f"{table} row {key} was changed or removed"
        added[table] = [row for key, row in after[table].items() if key not in rows]
    return added


def mutating_routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute) and r.methods - {"GET", "HEAD", "OPTIONS"}]


def probe(route: APIRoute, values: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """A request that would do the route's job if its credential were accepted: path parameters and every body
    field this route takes, from `values`; a field `values` does not know fails here, naming it."""
    path = route.path.format(**{p.name: quote(str(values[p.name]), safe="") for p in route.dependant.path_params})
    body: dict[str, Any] = {}
    if route.body_field is not None:
        model = route.body_field.field_info.annotation
        unknown = [name for name in model.model_fields if name not in values]
        assert not unknown, f"{route.path}: give the probe a value for {unknown}"
        body = {name: values[name] for name in model.model_fields}
        model.model_validate(body)  # the probe is a well-formed request, so only its credential can stop it
    return sorted(route.methods)[0], path, body


# ---- credentials --------------------------------------------------------------------------------------------


async def test_every_mutating_route_of_every_service_refuses_bad_credentials_and_changes_nothing(
        apps, gatekeeper, secure_settings, kind):
    champion = await register_with_file(gatekeeper.pool, secure_settings, kind, "champion")
    candidate = await register_with_file(gatekeeper.pool, secure_settings, kind, "candidate")
    await gatekeeper.promote(champion["version"], None, "alice", "the champion the probes try to replace", force=True)
    values = {"version": candidate["version"], "expected_current": champion["version"], "from_version": None,
              "kind": kind, "reason": "a probe that must not get through", "target_class": "C", "request_key": None,
              "timestamp": "2015-07-15T12:00:00Z", "window": 24, "time_buckets": None, "force": True,
              "run_id": "a-probe-run", "checks": [{"name": "database", "passed": True, "detail": "a probe"}]}
    before = await snapshot(gatekeeper.pool)

    refused = 0
    for service, app in apps.items():
        routes = mutating_routes(app)
        assert not routes or service in REFUSALS, f"{service} has non-read routes {[r.path for r in routes]} " \
                                                  "but no credentials: add them and list the service in REFUSALS"
        async with client(app) as http:
            for route in routes:
                method, path, body = probe(route, values)
                for what, (headers, status) in REFUSALS[service].items():
                    answer = await http.request(method, path, json=body, headers=headers)
                    assert answer.status_code == status, f"{service} {method} {path} with {what}: {answer.text}"
                    message = json.dumps(answer.json())
                    assert not any(secret in message for secret in SECRETS)
                    if what == "expired":
                        assert "expired at 2020-01-01T00:00:00Z" in message, message
                    refused += 1
                # the same route with a valid credential gets past the check (to the body's validation), so the
                # refusals above were the credential's doing
                let_in = await http.request(method, path, json={}, headers=VALID[service])
                assert let_in.status_code == 422, f"{service} {method} {path}: {let_in.text}"

    assert refused >= 4 * (6 + 3)  # at least the gatekeeper's six writes and the predictor's three predictions
    assert changes(before, await snapshot(gatekeeper.pool)) == {table: [] for table in AUDITED_TABLES}


# ---- hardening headers --------------------------------------------------------------------------------------

HARDENING = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
# per service: what an auditor requests, and the status each gets (answers, refusals and errors alike)
AUDITED_REQUESTS = {
    "gatekeeper": [("GET", "/health", {}, 200), ("GET", "/models", {}, 401),
                   ("GET", "/models/no-such-version", bearer(CAROL), 404),
                   ("GET", "/history?limit=0", bearer(CAROL), 422)],
    "predictor": [("GET", "/openapi.json", {}, 200), ("POST", "/predict/survival", {}, 401),
                  ("GET", "/no-such-route", {}, 404)],
    "evaluator": [("GET", "/health", {}, 200), ("GET", "/metrics/performance?window=fortnight", {}, 422)],
    "dashboard": [("GET", "/api/snapshot", {}, 200), ("GET", "/static/dashboard.js", {}, 200),
                  ("GET", "/static/no-such-file.js", {}, 404)],
}


def csp_sources(policy: str) -> dict[str, list[str]]:
    return {directive.split()[0]: directive.split()[1:] for directive in policy.split(";") if directive.strip()}


def origin(url: str) -> str:
    return "'self'" if url.startswith("/") else "/".join(url.split("/")[:3])


async def test_every_answer_of_every_service_carries_the_hardening_headers(apps):
    for service, requests in AUDITED_REQUESTS.items():
        async with client(apps[service]) as http:
            for method, path, headers, status in requests:
                answer = await http.request(method, path, headers=headers)
                assert answer.status_code == status, f"{service} {method} {path}: {answer.text}"
                assert {name: answer.headers.get(name) for name in HARDENING} == HARDENING, f"{service} {path}"
                # an API answer may load, run and frame nothing
                policy = csp_sources(answer.headers["content-security-policy"])
                assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], path
                assert "script-src" not in policy, f"{service} {path}"


async def test_the_pages_are_allowed_exactly_what_they_load_and_no_one_may_frame_them(apps):
    async with client(apps["dashboard"]) as http:
        page = await http.get("/")
    async with client(apps["predictor"]) as http:
        docs = {path: await http.get(path) for path in ("/docs", "/redoc")}

    for answer in (page, *docs.values()):
        assert answer.status_code == 200 and {name: answer.headers.get(name) for name in HARDENING} == HARDENING
        policy = csp_sources(answer.headers["content-security-policy"])
        assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        for src in re.findall(r'<script src="([^"]+)"', answer.text):
            assert origin(src) in policy["script-src"], (str(answer.url), src)
        for href in re.findall(r'<link[^>]*href="([^"]+)"', answer.text):
            sources = policy["img-src"] if "icon" in href or href.endswith(".png") else policy["style-src"]
            assert origin(href) in sources, (str(answer.url), href)
    # the dashboard's own page runs only its own file (no inline script) and streams from itself
    dashboard = csp_sources(page.headers["content-security-policy"])
    assert dashboard["script-src"] == ["'self'"] and dashboard["connect-src"] == ["'self'"]
    assert "<script>" not in page.text


# ---- tampered model files -----------------------------------------------------------------------------------


async def test_a_model_file_changed_after_registration_is_never_crowned_nor_loaded(apps, gatekeeper, secure_settings):
    # the system's own kind, so `flare validate` judges this champion (clean_db emptied the registry)
    kind, run = registry.FORECAST_KIND, uuid.uuid4().hex[:8]
    champion = await register_with_file(gatekeeper.pool, secure_settings, kind, f"{run}-champion")
    candidate = await register_with_file(gatekeeper.pool, secure_settings, kind, f"{run}-candidate")
    await gatekeeper.promote(champion["version"], None, "alice", "a champion before the tampering", force=True)
    flip_a_byte(candidate["artifacts"]["survival_C"])
    before = await snapshot(gatekeeper.pool)

    async with client(apps["gatekeeper"]) as http:
        promoted = await http.post(f"/models/{candidate['version']}/promote", headers=bearer(ALICE),
                                   json={"expected_current": champion["version"], "reason": "promote the tampered one",
                                         "force": True})
    assert promoted.status_code == 422
    assert f"{candidate['version']}.joblib: sha256" in promoted.json()["detail"]
    detail = promoted.json()["detail"]
    assert "does not match the registered" in detail and "nothing changed" in detail

    # the same candidate reaching the gate as freshly trained is rejected, the file named in its verdict
    trained = m.ModelTrained(message_id=f"trained-{run}", event_time=datetime.now(timezone.utc),
                             version=candidate["version"], artifacts=candidate["artifacts"], evidence={})
    verdict = await gatekeeper.judge_candidate(trained)
    assert verdict.decision == "REJECT" and f"{candidate['version']}.joblib: sha256" in verdict.reason
    before = await snapshot(gatekeeper.pool)  # the verdict is recorded; nothing below may change anything

    # the operator's `flare validate` on a champion whose file was changed afterwards names the file
    flip_a_byte(champion["artifacts"]["survival_C"])
    checks = {c.name: c for c in await run_validation(secure_settings, secure_settings.database_dsn, "http://127.0.0.1:9")}
    assert not checks["model loading"].passed
    assert f"{champion['version']}.joblib: sha256" in checks["model loading"].detail
    assert "does not match the registered" in checks["model loading"].detail
    assert changes(before, await snapshot(gatekeeper.pool)) == {table: [] for table in AUDITED_TABLES}


# ---- SQL injection --------------------------------------------------------------------------------------------


async def test_sql_in_every_text_field_is_refused_or_stored_as_text(apps, gatekeeper, secure_settings, kind, full_run):
    payloads = FULL_PAYLOADS if full_run else SHORT_PAYLOADS
    champion = await register_with_file(gatekeeper.pool, secure_settings, kind, "champion")
    await gatekeeper.promote(champion["version"], None, "alice", "a champion the payloads must leave alone", force=True)
    before = await snapshot(gatekeeper.pool)
    at = "2015-07-01T00:00:00Z"

    async with client(apps["gatekeeper"]) as gk, client(apps["predictor"]) as predictor:
        for payload in payloads:
            p = quote(payload, safe="")
            reads = [await gk.get(f"/models/{p}", headers=bearer(CAROL))] + [
                await gk.get(path, params=params, headers=bearer(CAROL)) for path, params in (
                    ("/models", {"kind": payload, "status": payload}),
                    ("/history", {"version": payload, "action": payload, "kind": payload}),
                    ("/champion", {"kind": payload}), ("/champion/at", {"kind": payload, "time": at}),
                    ("/retrain-requests", {"status": payload}))]
            # PostgreSQL text cannot hold NUL: such text is refused (422) rather than stored
            unstorable = "\x00" in payload
            assert [r.status_code for r in reads] == ([422] * 6 if unstorable else [404, 200, 200, 200, 200, 200]), \
                [r.text for r in reads]
            if not unstorable:
                assert reads[1].json() == reads[2].json() == reads[5].json() == []
                assert reads[3].json()[0]["champion"] is None and reads[4].json()["version"] is None

            writes = [await gk.post(f"/models/{p}/{act}", headers=bearer(ALICE), json=body) for act, body in (
                ("promote", {"expected_current": payload, "reason": payload}),
                ("approve", {"reason": payload}), ("reject", {"reason": payload}))] + [
                await gk.post("/rollback", headers=bearer(ALICE),
                              json={"version": payload, "from_version": payload, "kind": payload, "reason": payload}),
                await gk.post("/challenger", headers=bearer(ALICE),
                              json={"version": payload, "kind": payload, "reason": payload}),
                await gk.post("/retrain", headers=bearer(ALICE), json={"target_class": payload, "reason": payload}),
            ]
            assert [w.status_code for w in writes] == ([422] * 6 if unstorable else [404, 404, 404, 404, 404, 422]), \
                [w.text for w in writes]
            stored = await gk.post("/retrain", headers=bearer(INJECTOR),
                                   json={"target_class": "C", "reason": payload, "request_key": payload})
            assert stored.status_code == (422 if unstorable else 202), stored.text

            predictions = [await predictor.post("/predict/survival", headers=api_key(PARTNER_KEY),
                                                json={"timestamp": at, "target_class": payload}),
                           await predictor.post("/predict/classification", headers=api_key(PARTNER_KEY),
                                                json={"timestamp": payload}),
                           # a header carries printable ASCII only
                           await predictor.post("/predict/all",
                                                headers=api_key(payload.encode("unicode_escape").decode()),
                                                json={"timestamp": at})]
            assert [r.status_code for r in predictions] == [422, 422, 401]

            # the same text arriving as messages: an alert, a trained model and a failed training
            for message in (
                m.MetricDrift(message_id=payload, event_time=at, correlation_id=payload, model_version=payload,
                              metric=payload, value=0.3, threshold=0.1, window=payload),
                m.ModelTrained(message_id=f"{payload}-trained", event_time=at, version=payload, request_id=payload,
                               artifacts={payload: payload}, evidence={payload: payload}),
                m.TrainingFailed(message_id=f"{payload}-failed", event_time=at, request_id=payload, reason=payload),
            ):
                try:
                    await handle(gatekeeper, message)
                except asyncpg.CharacterNotInRepertoireError:  # the consumer dead-letters it with this reason
                    assert unstorable

    after = await snapshot(gatekeeper.pool)
    added = changes(before, after)
    assert added["model_registry"] == []
    for table in ("model_history", "retrain_requests"):
        for row in added[table]:
            assert any(payload in json.dumps(row, default=str, ensure_ascii=False)
                       for payload in payloads), (table, row)
    asked = [r for r in after["retrain_requests"].values() if r["requested_by"] == INJECTOR_NAME]
    assert [r["reason"] for r in asked] == [payloads[0]]  # the later ones were folded into it
    assert any(e["action"] == "training_failed" and e["reason"] == payloads[0] for e in added["model_history"])


# ---- secrets in logs and outputs ----------------------------------------------------------------------------


def with_password(dsn: str) -> str:
    """The test database's URL with a password in it (the embedded PostgreSQL trusts loopback, so it still works)."""
    scheme, rest = dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{DB_PASSWORD}@{host}"


def start(env: dict[str, str], module: str, *args: str) -> subprocess.Popen:
    """`python -m module args` in the background, its output kept for the audit."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=180)
    return process.returncode, output


async def test_no_secret_reaches_a_log_or_an_output(settings, clean_db, tmp_path, full_run):
    env_file = tmp_path / ".env"  # API keys from .env, the rest from the environment: both paths are read
    env_file.write_text(f"API_KEYS={json.dumps([PARTNER_KEY, OLD_KEY + EXPIRED])}\n")
    secrets_env = {
        "FLARE_ENV_FILE": str(env_file), "LOG_LEVEL": "debug",
        "DATABASE_URL": with_password(settings.database_dsn),
        "OPERATOR_TOKENS": json.dumps([DAVE + EXPIRED, ALICE]), "VIEWER_TOKENS": json.dumps([CAROL]),
        "GATEKEEPER__CONSUMER_GROUP": f"gatekeeper-{uuid.uuid4().hex[:8]}",
    }
    gatekeeper = ServiceProcess("gatekeeper", settings, tmp_path / "gatekeeper.log", **secrets_env)
    # a settings error (a malformed expiry on a token holding a secret) met by a starting service and by
    # `flare check-config`, run meanwhile
    broken = {**gatekeeper.env, "OPERATOR_TOKENS": json.dumps([ALICE + "@next-tuesday"])}
    commands = {"broken service": start(broken, "services.gatekeeper"),
                "broken check-config": start(broken, "flare_cli.main", "check-config")}
    outputs: list[str] = []
    async with running(gatekeeper) as gk:
        for token in (None, WRONG, DAVE, CAROL, ALICE):
            headers = bearer(token) if token else {}
            outputs.append((await gk.get("/models", headers=headers)).text)
            outputs.append((await gk.post("/retrain", headers=headers,
                                          json={"target_class": "C", "reason": "audit of the logs"})).text)
        assert "expired at 2020-01-01" in outputs[5] and json.loads(outputs[9])["request_id"]
        # `flare models` presents the configured operator token that has not expired (the first has)
        commands["models"] = start({**gk.env, "FLARE_TOKEN": ""}, "flare_cli.main", "models")
        if full_run:
            commands["check-config"] = start(gk.env, "flare_cli.main", "check-config")
            commands["wrong token"] = start({**gk.env, "FLARE_TOKEN": WRONG}, "flare_cli.main", "history")
        results = {name: finish(process) for name, process in commands.items()}

    if full_run:  # the predictor as a process too: its API keys, right, wrong and expired
        async with running(ServiceProcess("predictor", settings, tmp_path / "predictor.log", **secrets_env,
                                          PREDICTOR__APP_NAME=f"predictor-{uuid.uuid4().hex[:8]}")) as predictor:
            for key in (None, WRONG, OLD_KEY, PARTNER_KEY):
                answer = await predictor.post("/predict/all", headers=api_key(key) if key else {},
                                              json={"timestamp": "2015-07-15T12:00:00Z"})
                assert answer.status_code == (503 if key == PARTNER_KEY else 401), answer.text
                outputs.append(answer.text)

    assert results["models"][0] == 0, results["models"][1]
    assert results["broken service"][0] != 0 and "operator_tokens" in results["broken service"][1]
    assert results["broken check-config"][0] != 0
    assert "the credential of 'alice' has an expiry" in results["broken check-config"][1]
    logs = [path.read_text(errors="replace") for path in sorted(tmp_path.glob("*.log"))]
    assert len(logs) == (2 if full_run else 1) and "retrain" in (tmp_path / "gatekeeper.log").read_text()
    everything = "\n".join(logs + outputs + [output for _, output in results.values()])
    leaked = [secret for secret in SECRETS if secret in everything]
    assert leaked == [], f"secrets found in logs or outputs: {leaked}"
