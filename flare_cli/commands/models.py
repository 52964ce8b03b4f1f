"""Operator commands on the models, all through the gatekeeper's REST API: `flare models`, `flare promote`,
`flare rollback`, `flare history`, `flare retrain`, `flare approve`, `flare challenger`.

The API is found at the configured bind host and gatekeeper port (or `--url`); the token is `FLARE_TOKEN`,
else the first configured operator token, else the installation's own token that `flare up` hands to the
services; with only viewer tokens configured, the first of them (enough for the read commands).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any


from flare_cli import context

if TYPE_CHECKING:
    from shared.settings import Settings

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class ApiError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.bind_host in ("0.0.0.0", "::", "") else settings.bind_host
    return f"http://{host}:{settings.gatekeeper_port}"


def default_token(settings: Settings) -> str | None:
    from shared import credentials

    if settings.viewer_tokens and not settings.operator_tokens and not os.environ.get("FLARE_TOKEN"):
        # a read-only installation: enough to look
        return credentials.first_presentable(t.get_secret_value() for t in settings.viewer_tokens)
    return context.operator_token(settings)


class GatekeeperClient:
    def __init__(self, url: str, token: str | None, timeout: float):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        self.url = url

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = self._client.request(
                method, path, params={k: v for k, v in (params or {}).items() if v is not None}, json=body)
        except httpx.TransportError as exc:
            raise ApiError(
                0, f"the gatekeeper does not answer at {self.url} ({exc}); is it running? (`flare up`)") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            if response.status_code == 401:
                detail = f"{detail}: set FLARE_TOKEN (or OPERATOR_TOKENS in .env)"
            raise ApiError(response.status_code, detail if isinstance(detail, str) else json.dumps(detail))
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body=body)


def _common(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    parser.add_argument("--url", help="the gatekeeper's base URL (default: from the settings, port 5003)")
    parser.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    if writes:
        parser.add_argument("--reason", "-r", help="why: kept in the history (default: who ran which command)")


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list model versions with their status and evidence (gatekeeper API)")
    models.add_argument("--kind", help="only this model kind (e.g. forecast)")
    models.add_argument("--status", help="only this status (candidate, held, champion, challenger, retired, ...)")
    models.add_argument("--pending", action="store_true",
                        help="only held candidates awaiting approval, with the verdict")
    _common(models, writes=False)
    models.set_defaults(handler=cmd_models)

    promote = sub.add_parser("promote", help="make VERSION the champion of its kind (409 if the champion changed, "
                                             "or VERSION has not passed the gates)")
    promote.add_argument("version")
    promote.add_argument("--expect",
                         help="the champion you expect to replace ('none' for none); default: the current one")
    promote.add_argument("--force", action="store_true",
                         help="override: promote a version without a passing gate verdict (needs --reason; the "
                              "history records the override, who gave it and why)")
    _common(promote, writes=True)
    promote.set_defaults(handler=cmd_promote)

    rollback = sub.add_parser("rollback", help="return to the previous champion, or to the named former champion")
    rollback.add_argument("version", nargs="?", help="the former champion to return to (default: the previous one)")
    rollback.add_argument("--kind", help="the model kind, when several have a champion")
    _common(rollback, writes=True)
    rollback.set_defaults(handler=cmd_rollback)

    history = sub.add_parser("history", help="the decision history: who did what to which model, when and why")
    history.add_argument("--version")
    history.add_argument("--action", help="e.g. promoted, rolled_back, gate_verdict, approved, retrain_requested")
    history.add_argument("--actor")
    history.add_argument("--kind")
    history.add_argument("--since", help="ISO 8601 time with zone")
    history.add_argument("--until", help="ISO 8601 time with zone")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--at", help="instead: which version of --kind was champion at this ISO 8601 time")
    history.add_argument("--clock", choices=("recorded", "event"), default="recorded",
                         help="with --at: wall-clock time of the decisions, or the system's event time")
    _common(history, writes=False)
    history.set_defaults(handler=cmd_history)

    retrain = sub.add_parser("retrain", help="ask for retraining (folded into a request already in flight)")
    retrain.add_argument("--target-class", choices=("C", "M", "X", "all"), default="all")
    _common(retrain, writes=True)
    retrain.set_defaults(handler=cmd_retrain)

    approve = sub.add_parser("approve", help="promote a held candidate (or --reject it); not by its requester")
    approve.add_argument("version")
    approve.add_argument("--reject", action="store_true", help="reject the held candidate instead")
    _common(approve, writes=True)
    approve.set_defaults(handler=cmd_approve)

    challenger = sub.add_parser("challenger", help="run VERSION in shadow beside the champion, or --clear")
    challenger.add_argument("version", nargs="?")
    challenger.add_argument("--clear", action="store_true", help="stop shadowing")
    challenger.add_argument("--kind", help="with --clear: the model kind, when several have a challenger")
    _common(challenger, writes=True)
    challenger.set_defaults(handler=cmd_challenger)


# ---- running a command --------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> GatekeeperClient:
    settings = context.settings()
    return GatekeeperClient(args.url or default_url(settings), default_token(settings),
                            settings.thresholds.api_timeout_seconds)


def _reason(args: argparse.Namespace) -> str:
    return args.reason or f"`flare {args.command}` by {getpass.getuser()}"


def _run(args: argparse.Namespace, action) -> int:
    try:
        answer = action(_client(args))
    except ApiError as exc:
        print(f"flare {args.command}: {exc}" + (f" (HTTP {exc.status})" if exc.status else ""), file=sys.stderr)
        return EXIT_UNREACHABLE if exc.status == 0 else EXIT_REFUSED
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    return 0


def _outcome_line(outcome: dict[str, Any], elapsed: float) -> str:
    state = f"champion {outcome['champion'] or '-'}, challenger {outcome['challenger'] or '-'} ({outcome['kind']})"
    done = "done" if outcome["changed"] else "nothing to do"
    return f"{done}: {outcome['detail']}; now {state} [{elapsed * 1000:.0f} ms]"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _model_line(row: dict[str, Any]) -> str:
    backtest = row.get("backtest") or {}
    scores = (f"F1 {_number(backtest.get('f1'))}  precision {_number(backtest.get('precision'))}  "
              f"Brier {_number(backtest.get('brier'))}")
    return f"{row['version']:<40} {row['kind']:<12} {row['status']:<10} {row['created_at'][:19]}  {scores}"


def cmd_models(args: argparse.Namespace) -> int:
    def action(api: GatekeeperClient):
        if args.pending:
            pending = api.get("/approvals")
            if not args.json:
                for item in pending:
                    print(_model_line(item["model"]))
                    if item["verdict"]:
                        print(f"    verdict: {item['verdict']['reason']}")
                print(f"{len(pending)} held candidate(s) awaiting approval")
            return pending
        rows = api.get("/models", kind=args.kind, status=args.status)
        if not args.json:
            print(f"{'VERSION':<40} {'KIND':<12} {'STATUS':<10} {'CREATED (UTC)':<20} BACKTEST")
            for row in rows:
                print(_model_line(row))
        return rows
    return _run(args, action)


def cmd_promote(args: argparse.Namespace) -> int:
    if args.force and not (args.reason and args.reason.strip()):
        print("flare promote: --force overrides the gates and needs --reason TEXT saying why", file=sys.stderr)
        return 2

    def action(api: GatekeeperClient):
        if args.expect is None:
            kind = api.get(f"/models/{args.version}")["model"]["kind"]
            champion = api.get("/champion", kind=kind)[0]["champion"]
            expected = champion["version"] if champion else None
        else:
            expected = None if args.expect.lower() == "none" else args.expect
        started = time.perf_counter()
        outcome = api.post(f"/models/{args.version}/promote",
                           {"expected_current": expected, "reason": _reason(args), "force": args.force})
        if not args.json:
            print(_outcome_line(outcome, time.perf_counter() - started))
        return outcome
    return _run(args, action)


def cmd_rollback(args: argparse.Namespace) -> int:
    def action(api: GatekeeperClient):
        body: dict[str, Any] = {"reason": _reason(args), "kind": args.kind}
        if args.version:
            body["version"] = args.version
        else:
            # Name the champion we roll back from: sent again (a retry), the call changes nothing more.
            states = [s for s in api.get("/champion", kind=args.kind) if s["champion"]]
            if len(states) != 1:
                kinds = ", ".join(s["kind"] for s in states) or "none"
                raise ApiError(409, f"name the kind with --kind (kinds with a champion: {kinds})")
            body["from_version"] = states[0]["champion"]["version"]
        started = time.perf_counter()
        outcome = api.post("/rollback", body)
        if not args.json:
            print(_outcome_line(outcome, time.perf_counter() - started))
        return outcome
    return _run(args, action)


def cmd_history(args: argparse.Namespace) -> int:
    def action(api: GatekeeperClient):
        if args.at:
            if not args.kind:
                raise ApiError(422, "--at needs --kind")
            answer = api.get("/champion/at", kind=args.kind, time=args.at, clock=args.clock)
            if not args.json:
                since = answer["since"]
                how = f" since {since['recorded_at'][:19]} ({since['action']} by {since['actor']})" if since else ""
                print(f"champion of {answer['kind']} at {answer['at']}: {answer['version'] or 'none'}{how}")
            return answer
        entries = api.get("/history", version=args.version, action=args.action, actor=args.actor, kind=args.kind,
                          since=args.since, until=args.until, limit=args.limit)
        if not args.json:
            for entry in reversed(entries):
                print(f"{entry['recorded_at'][:19]}  {entry['action']:<18} {entry['version'] or '-':<40} "
                      f"{entry['actor']:<24} {entry['reason']}")
        return entries
    return _run(args, action)


def cmd_retrain(args: argparse.Namespace) -> int:
    def action(api: GatekeeperClient):
        answer = api.post("/retrain", {"target_class": args.target_class, "reason": _reason(args)})
        if not args.json:
            verb = "folded into" if answer["folded"] else "requested:"
            print(f"retraining {verb} {answer['request_id']} ({answer['detail']})")
        return answer
    return _run(args, action)


def cmd_approve(args: argparse.Namespace) -> int:
    def action(api: GatekeeperClient):
        verb = "reject" if args.reject else "approve"
        started = time.perf_counter()
        outcome = api.post(f"/models/{args.version}/{verb}", {"reason": _reason(args)})
        if not args.json:
            print(_outcome_line(outcome, time.perf_counter() - started))
        return outcome
    return _run(args, action)


def cmd_challenger(args: argparse.Namespace) -> int:
    if bool(args.version) == bool(args.clear):
        print("flare challenger: name a VERSION or give --clear", file=sys.stderr)
        return 2

    def action(api: GatekeeperClient):
        started = time.perf_counter()
        outcome = api.post("/challenger", {"version": args.version, "kind": args.kind, "reason": _reason(args)})
        if not args.json:
            print(_outcome_line(outcome, time.perf_counter() - started))
        return outcome
    return _run(args, action)
