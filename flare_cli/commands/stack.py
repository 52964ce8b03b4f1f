"""Starting, stopping and looking into the running system: up, down, status, logs, db-shell, topics."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flare_cli import context, launcher

if TYPE_CHECKING:
    from shared import infra


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up", help="start the broker and database (embedded unless configured), prepare them, start the services")
    up.add_argument("--infra-only", action="store_true", help="only the broker and database, no services")
    up.set_defaults(handler=cmd_up)

    down = sub.add_parser("down", help="stop everything `flare up` started; data in PostgreSQL is kept")
    down.set_defaults(handler=cmd_down)

    status = sub.add_parser("status", help="what is running, where")
    status.set_defaults(handler=cmd_status)

    logs = sub.add_parser("logs", help="show the logs of the broker, the database or a service")
    logs.add_argument("component", nargs="?", help="broker, postgres or a service name; all when omitted")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines from the end of each log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(handler=cmd_logs)

    shell = sub.add_parser(
        "db-shell", help="psql on the system's database; extra arguments go to psql (e.g. -c 'select 1')",
        prefix_chars="+",  # so that psql's own -c/-A/... options pass through untouched
    )
    shell.add_argument("psql_args", nargs=argparse.REMAINDER)
    shell.set_defaults(handler=cmd_db_shell)

    topics = sub.add_parser("topics", help="create the topics of the registry (safe to repeat) and list them")
    topics.set_defaults(handler=cmd_topics)


async def _prepare(endpoints: infra.Endpoints) -> tuple[list[str], list[str]]:
    from shared.db import migrate_dsn
    from shared.kafka import ensure_topics
    from shared.topics import topic_registry

    settings = context.settings()
    applied = await migrate_dsn(endpoints.database_url)
    created = await ensure_topics(endpoints.kafka_bootstrap_servers, topic_registry(settings).values())
    return applied, created


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio

    endpoints = context.endpoints(start=True)
    applied, created = asyncio.run(_prepare(endpoints))
    print(f"broker    {endpoints.kafka_bootstrap_servers}{' (embedded)' if endpoints.embedded_broker else ''}")
    print(f"database  {_redact(endpoints.database_url)}{' (embedded)' if endpoints.embedded_database else ''}")
    print(f"migrations applied now: {', '.join(applied) or 'none (up to date)'}")
    print(f"topics created now: {', '.join(created) or 'none (all exist)'}")
    if not args.infra_only:
        settings = context.settings()
        for name in launcher.available_services():
            record = launcher.start_service(settings, endpoints, name)
            print(f"service   {name:<11} pid {record['pid']}, log {record['log']}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from shared import infra

    settings = context.settings()
    for name in launcher.stop_all_services(settings.state_dir):
        print(f"stopped {name}")
    if infra.stop_embedded_postgres(settings.state_dir):
        print("stopped embedded PostgreSQL (data kept in", settings.state_dir / "pgdata", ")")
    if infra.stop_embedded_broker(settings.state_dir):
        print("stopped embedded broker")
    print("down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from shared import infra

    settings = context.settings()
    runtime = infra.read_runtime(settings.state_dir)
    rows = []
    if settings.kafka_bootstrap_servers:
        rows.append(("broker", "configured", settings.kafka_bootstrap_servers))
    else:
        rows.append(_component_row("broker", runtime.get("broker"), "tansu", "bootstrap"))
    if settings.database_dsn:
        rows.append(("database", "configured", _redact(settings.database_dsn)))
    else:
        rows.append(_component_row("database", runtime.get("postgres"), "postgres", "dsn"))
    for name, record in sorted((runtime.get("services") or {}).items()):
        alive = launcher.service_running(settings.state_dir, name)
        rows.append((name, "running" if alive else "stopped", f"pid {record.get('pid')}, log {record.get('log')}"))
    for name, state, where in rows:
        print(f"{name:<12} {state:<10} {where}")
    return 0 if all(state in ("running", "configured") for _, state, _ in rows) else 1


def _component_row(name: str, record: dict | None, hint: str, where_key: str) -> tuple[str, str, str]:
    from shared import infra

    if not record:
        return (name, "stopped", "-")
    alive = infra.process_alive(record.get("pid"), hint) and infra.port_answers("127.0.0.1", record["port"])
    return (name, "running" if alive else "stopped", _redact(record[where_key]) + f" (pid {record.get('pid')})")


def _redact(dsn: str) -> str:
    if "@" in dsn and ":" in dsn.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = dsn.split("//", 1)
        user = rest.split(":", 1)[0]
        return f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
    return dsn


def _log_files(settings, component: str | None) -> list[Path]:
    logs_dir = settings.state_dir / "logs"
    if component:
        path = logs_dir / f"{component}.log"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in logs_dir.glob("*.log"))) or "none yet"
            raise SystemExit(f"flare: no log for {component!r} (logs: {known})")
        return [path]
    return sorted(logs_dir.glob("*.log"))


def cmd_logs(args: argparse.Namespace) -> int:
    files = _log_files(context.settings(), args.component)
    for path in files:
        lines = path.read_text(errors="replace").splitlines()[-args.lines:]
        for line in lines:
            print(f"{path.stem}| {line}" if len(files) > 1 else line)
    if args.follow:
        positions = {path: path.stat().st_size for path in files}
        try:
            while True:
                for path in files:
                    with open(path, errors="replace") as handle:
                        handle.seek(positions[path])
                        chunk = handle.read()
                        positions[path] = handle.tell()
                    for line in chunk.splitlines():
                        print(f"{path.stem}| {line}" if len(files) > 1 else line, flush=True)
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    return 0


def cmd_db_shell(args: argparse.Namespace) -> int:
    from shared import infra

    endpoints = context.endpoints(start=False)
    command = infra.psql_command(endpoints.database_url) + list(args.psql_args)
    return subprocess.call(command, env={**os.environ, "PSQLRC": os.devnull})


def cmd_topics(args: argparse.Namespace) -> int:
    import asyncio


    from shared.kafka import ensure_topics
    from shared.topics import topic_registry

    settings = context.settings()
    endpoints = context.endpoints(start=False)
    specs = topic_registry(settings)
    created = asyncio.run(ensure_topics(endpoints.kafka_bootstrap_servers, specs.values()))
    for role, spec in specs.items():
        types = ", ".join(t.__name__ for t in spec.value_types)
        mark = "created" if spec.name in created else "exists"
        print(f"{spec.name:<24} {mark:<8} partitions={spec.partitions} key={spec.key:<13} {types}")
    return 0
