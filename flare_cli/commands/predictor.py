"""`flare api-bg`, `flare api-stop`, `flare api-logs`: the predictor (stream worker and REST API) as a detached
process, recorded under "services" in `<state_dir>/runtime.json` like everything `flare up` starts."""

from __future__ import annotations

import argparse
import time


from flare_cli import context, launcher
from flare_cli.commands.stack import _prepare, cmd_logs

SERVICE = "predictor"


def register(sub: argparse._SubParsersAction) -> None:
    start = sub.add_parser(
        "api-bg", help="start the predictor (forecast stream and REST API) in the background",
        description="Starts the broker and database if they are not running (embedded unless configured), then "
                    "`python -m services.predictor` as a detached process, and waits until its API answers "
                    "/health. Running it again while the predictor runs changes nothing.",
    )
    start.add_argument("--wait", type=float, default=180.0, metavar="SECONDS",
                       help="how long to wait for the API to answer (0: do not wait); default 180")
    start.set_defaults(handler=cmd_api_bg)

    stop = sub.add_parser("api-stop", help="stop the background predictor started by `flare api-bg` or `flare up`")
    stop.set_defaults(handler=cmd_api_stop)

    logs = sub.add_parser("api-logs", help="show the predictor's log")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines from the end")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=cmd_api_logs)


def api_url() -> str:
    settings = context.settings()
    host = "127.0.0.1" if settings.bind_host in ("0.0.0.0", "::") else settings.bind_host
    return f"http://{host}:{settings.api_port}"


def wait_for_api(url: str, seconds: float, alive) -> dict | None:
    """The /health report once the API answers; None if it did not within `seconds` or the process ended."""
    from tqdm import tqdm

    import httpx

    deadline = time.monotonic() + seconds
    with tqdm(total=None, desc="waiting for the predictor API", unit="s", leave=False,
              bar_format="{desc}: {elapsed}") as bar:
        while time.monotonic() < deadline and alive():
            try:
                answer = httpx.get(f"{url}/health", timeout=2.0)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.TransportError:
                pass
            time.sleep(1.0)
            bar.update(1)
    return None


def cmd_api_bg(args: argparse.Namespace) -> int:
    import asyncio

    settings = context.settings()
    already = launcher.service_running(settings.state_dir, SERVICE)
    endpoints = context.endpoints(start=True)
    if not already:
        asyncio.run(_prepare(endpoints))
    record = launcher.start_service(settings, endpoints, SERVICE)
    url = api_url()
    print(f"predictor {'already running' if already else 'started'}: pid {record['pid']}, log {record['log']}")
    if args.wait <= 0:
        return 0
    health = wait_for_api(url, args.wait, lambda: launcher.service_running(settings.state_dir, SERVICE))
    if health is None:
        print(f"flare: the predictor API did not answer at {url} within {args.wait:.0f} s; see `flare api-logs`")
        return 1
    print(f"API       {url} (OpenAPI documentation at {url}/docs)")
    print(f"status    {health['status']}{': ' + '; '.join(health['reasons']) if health['reasons'] else ''}")
    print(f"models    champion {health['models']['champion'] or '-'}, "
          f"challenger {health['models']['challenger'] or '-'}")
    return 0


def cmd_api_stop(args: argparse.Namespace) -> int:
    settings = context.settings()
    if launcher.stop_service(settings.state_dir, SERVICE):
        print("stopped the predictor")
    else:
        print("the predictor was not running")
    return 0


def cmd_api_logs(args: argparse.Namespace) -> int:
    return cmd_logs(argparse.Namespace(component=SERVICE, lines=args.lines, follow=args.follow))
