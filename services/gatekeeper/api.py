"""The gatekeeper's REST API: read the registry, the champion and the history; promote, roll back, set a
challenger, approve or reject, request retraining.

Reads need a viewer (or operator) token, writes an operator token: `Authorization: Bearer <token>`. A write
answers 409 when the caller's view of the champion is stale, 403 when the caller may not do it, and records
who, when, why and the evidence in the history, the validation log and a lifecycle message.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.gatekeeper import auth, retraining, store
from services.gatekeeper.lifecycle import Gatekeeper, GatekeeperError
from shared import contract, registry
from shared.http import refuse_unstorable_text, send_hardening_headers, serve_metrics

_bearer = HTTPBearer(auto_error=False, description="an operator token for writes, a viewer token for reads")


# ---- request and response bodies ----------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromoteBody(_Body):
    expected_current: str | None = Field(
        description="the champion you expect to replace (null when you expect none); another answers 409")
    reason: str = Field(min_length=3, description="why: kept in the history")
    force: bool = Field(
        False, description="promote a version that has not passed the gates (no verdict, or a failed or held one): "
                           "an override, recorded in the history with the caller, the reason and the gate; without "
                           "it such a promotion answers 409 naming the gate")


class RollbackBody(_Body):
    version: str | None = Field(
        None, description="the version to return to; default: the champion before the current one")
    from_version: str | None = Field(
        None, description="the champion you are rolling back from; if it is no longer champion the answer is 409, "
                          "or 200 unchanged when the target is already champion (a retried rollback)")
    kind: str | None = Field(None, description="the model kind, when neither version names it and several kinds exist")
    reason: str = Field(min_length=3)


class ChallengerBody(_Body):
    version: str | None = Field(
        min_length=1, description="the version to run in shadow beside the champion; null clears")
    kind: str | None = Field(None, description="the model kind, needed to clear when several kinds have a challenger")
    reason: str = Field(min_length=3)


class DecisionBody(_Body):
    reason: str = Field(min_length=3)


class RetrainBody(_Body):
    target_class: Literal["C", "M", "X", "all"] = "all"
    reason: str = Field(min_length=3)
    request_key: str | None = Field(
        None, description="makes the call idempotent: the same key sent again is the same request (default: a new key)")


class ValidationCheck(_Body):
    name: str = Field(min_length=1, max_length=100, description="the check, e.g. 'database' or 'full pipeline'")
    passed: bool
    detail: str = Field("", max_length=10_000, description="what the check found, or why it failed")


class ValidationRunBody(_Body):
    run_id: str = Field(min_length=1, max_length=100,
                        description="the run's id: the same run sent again is logged once")
    checks: list[ValidationCheck] = Field(min_length=1, description="the run's checks, each logged under its name")


class ValidationRunLogged(BaseModel):
    run_id: str
    logged: int = Field(description="checks newly logged (0 when the run was already logged)")


class ModelView(BaseModel):
    version: str
    kind: str
    status: str
    artifacts: dict[str, Any]
    digests: dict[str, Any]
    data_window_start: datetime | None
    data_window_end: datetime | None
    hyperparameters: dict[str, Any]
    validation: dict[str, Any]
    backtest: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class HistoryView(BaseModel):
    id: int
    event_id: str
    recorded_at: datetime
    event_time: datetime | None
    action: str
    version: str | None
    actor: str
    reason: str
    evidence: dict[str, Any]


class ModelDetail(BaseModel):
    model: ModelView
    verdict: HistoryView | None = Field(description="the gate's verdict on this version, with every check")
    history: list[HistoryView]


class KindState(BaseModel):
    kind: str
    champion: ModelView | None
    challenger: ModelView | None


class ChampionAt(BaseModel):
    kind: str
    at: datetime
    clock: Literal["recorded", "event"]
    version: str | None = Field(description="the champion at that time; null if there was none")
    since: HistoryView | None = Field(description="the decision that made it champion")


class Approval(BaseModel):
    model: ModelView
    verdict: HistoryView | None


class OutcomeView(BaseModel):
    kind: str
    champion: str | None
    challenger: str | None
    changed: bool = Field(description="false when the state asked for already held: nothing was done")
    event_id: str | None
    detail: str


class RetrainAccepted(BaseModel):
    request_id: str
    trigger_id: str
    folded: bool = Field(description="true when folded into a request in flight or in cooldown")
    detail: str


class RetrainRequestView(BaseModel):
    request_id: str
    target_class: str
    reason: str
    requested_by: str
    evidence: dict[str, Any]
    status: str
    event_time: datetime
    created_at: datetime
    updated_at: datetime
    folded_triggers: int


# ---- the app ------------------------------------------------------------------------------------------------


def create_app(gatekeeper: Gatekeeper) -> FastAPI:
    app = FastAPI(
        title="Flare+ gatekeeper",
        version="1",
        description="Model registry, gated promotion, rollback and the audit history of Flare+. "
                    "Reads need a viewer token, writes an operator token (Authorization: Bearer).",
    )
    tokens = auth.configured_tokens(gatekeeper.settings)
    pool = gatekeeper.pool

    def caller_with(role: auth.Role):
        def dependency(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> auth.Caller:
            try:
                return auth.authorize(auth.identify(credentials.credentials if credentials else None, tokens), role)
            except auth.NotAuthenticated as exc:
                raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
            except auth.Forbidden as exc:
                raise HTTPException(403, str(exc)) from exc
        return dependency

    viewer = Depends(caller_with(auth.Role.VIEWER))
    operator = Depends(caller_with(auth.Role.OPERATOR))

    @app.exception_handler(GatekeeperError)
    async def _gatekeeper_error(request: Request, exc: GatekeeperError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    refuse_unstorable_text(app)
    serve_metrics(app)
    send_hardening_headers(app)

    @app.get("/health", tags=["service"], summary="liveness: the API answers and the database is reachable")
    async def health() -> dict[str, str]:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        return {"status": "ok"}

    topics_contract = contract.asyncapi_document(gatekeeper.settings)

    @app.get("/asyncapi.json", tags=["service"],
             summary="the topics as a contract: AsyncAPI 3.0, a JSON Schema per message, keys, delivery guarantees")
    async def asyncapi() -> dict[str, Any]:
        return topics_contract

    # ---- reads --------------------------------------------------------------------------------------------

    @app.get("/models", response_model=list[ModelView], tags=["read"], summary="model versions with their evidence")
    async def list_models(kind: str | None = None, status: str | None = None, _: auth.Caller = viewer):
        async with pool.acquire() as conn:
            rows = await registry.list_models(conn, kind)
        return [row for row in rows if status is None or row["status"] == status]

    @app.get("/models/{version}", response_model=ModelDetail, tags=["read"],
             summary="one version: its evidence, the gate's verdict and its history")
    async def get_model(version: str, _: auth.Caller = viewer):
        async with pool.acquire() as conn:
            row = await registry.get(conn, version)
            if row is None:
                raise HTTPException(404, f"no model version {version!r} in the registry")
            return {"model": row, "verdict": await store.last_entry(conn, version, "gate_verdict"),
                    "history": await store.history(conn, version=version)}

    @app.get("/champion", response_model=list[KindState], tags=["read"],
             summary="the champion and challenger of each kind")
    async def champions(kind: str | None = None, _: auth.Caller = viewer):
        async with pool.acquire() as conn:
            kinds = [kind] if kind else sorted({r["kind"] for r in await registry.list_models(conn)})
            return [{"kind": k, "champion": await registry.champion(conn, k),
                     "challenger": await store.challenger(conn, k)}
                    for k in kinds]

    @app.get("/champion/at", response_model=ChampionAt, tags=["read"], summary="which version was champion at time T")
    async def champion_at(
        kind: str, time: AwareDatetime = Query(description="ISO 8601 with a time zone"),
        clock: Literal["recorded", "event"] = Query(
            "recorded", description="'recorded': wall-clock time of the decisions; 'event': the system's event time"),
        _: auth.Caller = viewer,
    ):
        async with pool.acquire() as conn:
            entry = await store.champion_at(conn, kind, time, clock=clock)
        return {"kind": kind, "at": time, "clock": clock, "version": entry["version"] if entry else None,
                "since": entry}

    @app.get("/history", response_model=list[HistoryView], tags=["read"], summary="the decision history, newest first")
    async def history(
        version: str | None = None, action: str | None = None, actor: str | None = None, kind: str | None = None,
        since: AwareDatetime | None = None, until: AwareDatetime | None = None,
        limit: int = Query(100, ge=1, le=1000), _: auth.Caller = viewer,
    ):
        async with pool.acquire() as conn:
            return await store.history(conn, version=version, action=action, actor=actor, kind=kind, since=since,
                                       until=until, limit=limit)

    @app.get("/approvals", response_model=list[Approval], tags=["read"], summary="held candidates awaiting an operator")
    async def approvals(_: auth.Caller = viewer):
        async with pool.acquire() as conn:
            held = await store.with_status(conn, "held")
            return [{"model": row, "verdict": await store.last_entry(conn, row["version"], "gate_verdict")}
                    for row in held]

    @app.get("/retrain-requests", response_model=list[RetrainRequestView], tags=["read"],
             summary="retrain requests with how many triggers were folded into each")
    async def retrain_requests(
        status: str | None = None, limit: int = Query(50, ge=1, le=500), _: auth.Caller = viewer,
    ):
        async with pool.acquire() as conn:
            return await store.retrain_requests(conn, status=status, limit=limit)

    # ---- writes -------------------------------------------------------------------------------------------

    @app.post("/models/{version}/promote", response_model=OutcomeView, tags=["write"],
              responses={409: {"description": "the champion is not the one you expected, or the version has not "
                                              "passed the gates and `force` was not given"}})
    async def promote(version: str, body: PromoteBody, caller: auth.Caller = operator):
        return (await gatekeeper.promote(version, body.expected_current, caller.name, body.reason,
                                         force=body.force)).as_dict()

    @app.post("/rollback", response_model=OutcomeView, tags=["write"],
              summary="return to the previous champion or a named former champion (idempotent)",
              responses={409: {"description": "from_version is no longer champion, "
                                              "or the target is not a former champion"}})
    async def rollback(body: RollbackBody, caller: auth.Caller = operator):
        return (await gatekeeper.rollback(
            body.version, body.from_version, caller.name, body.reason, kind=body.kind)).as_dict()

    @app.post("/challenger", response_model=OutcomeView, tags=["write"], summary="set or clear the challenger")
    async def challenger(body: ChallengerBody, caller: auth.Caller = operator):
        return (await gatekeeper.set_challenger(body.version, caller.name, body.reason, kind=body.kind)).as_dict()

    @app.post("/models/{version}/approve", response_model=OutcomeView, tags=["write"],
              responses={403: {"description": "the approver asked for this model"}})
    async def approve(version: str, body: DecisionBody, caller: auth.Caller = operator):
        return (await gatekeeper.approve(version, caller.name, body.reason)).as_dict()

    @app.post("/models/{version}/reject", response_model=OutcomeView, tags=["write"],
              responses={403: {"description": "the rejecter asked for this model"}})
    async def reject(version: str, body: DecisionBody, caller: auth.Caller = operator):
        return (await gatekeeper.reject(version, caller.name, body.reason)).as_dict()

    @app.post("/validation-runs", response_model=ValidationRunLogged, status_code=201, tags=["write"],
              summary="log a `flare validate` run in flare_system_validation_log (the gatekeeper is its only writer)")
    async def log_validation_run(body: ValidationRunBody, caller: auth.Caller = operator):
        names = [check.name for check in body.checks]
        if len(set(names)) != len(names):
            raise HTTPException(422, f"each check is logged once per run: {names} repeats a name")
        async with pool.acquire() as conn, conn.transaction():
            logged = [await store.log_check(conn, body.run_id, check.name, check.passed, check.detail, caller.name)
                      for check in body.checks]
        return {"run_id": body.run_id, "logged": sum(logged)}

    @app.post("/retrain", response_model=RetrainAccepted, status_code=202, tags=["write"],
              summary="ask for retraining; folded into a request already in flight")
    async def retrain(body: RetrainBody, caller: auth.Caller = operator):
        async with pool.acquire() as conn:
            now = await gatekeeper.event_now(conn)
        trigger = retraining.operator_trigger(
            caller.name, body.target_class, body.reason, now, body.request_key or str(uuid.uuid4()),
        )
        outcome = await gatekeeper.request_retrain(trigger)
        return {"request_id": outcome.request_id, "trigger_id": outcome.trigger_id, "folded": outcome.folded,
                "detail": outcome.detail}

    return app
