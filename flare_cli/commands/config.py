"""`flare check-config`: the deployment plan's pre-flight checks, each with pass/fail and the reason."""

from __future__ import annotations

import argparse
import os
import shutil
from typing import TYPE_CHECKING

from flare_cli.checks import Check, print_checks

if TYPE_CHECKING:
    from shared.settings import Settings

REQUIRED_ENV = ("MODEL_PATH", "API_PORT", "UI_PORT")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("check-config", help="check .env, config.yaml, database, directories and free disk")
    parser.set_defaults(handler=cmd_check_config)


def check_env_file() -> Check:
    from dotenv import dotenv_values

    from shared.settings import config_paths

    _, env = config_paths()
    if not env.exists():
        return Check(".env", False, f"{env} not found: copy deploy/env.example to .env and edit it")
    values = dotenv_values(env)
    missing = [name for name in REQUIRED_ENV if not values.get(name) and not os.environ.get(name)]
    if missing:
        return Check(".env", False, f"{env.name} lacks {', '.join(missing)}")
    if not (values.get("DATABASE_URL") or values.get("DB_HOST")):
        return Check(".env", True, f"{env} has {', '.join(REQUIRED_ENV)}; no DB_HOST/DATABASE_URL: embedded PostgreSQL")
    return Check(".env", True, f"{env} has {', '.join(REQUIRED_ENV)} and database settings")


def check_settings() -> tuple[Check, Settings | None]:
    from shared.settings import ConfigError, config_paths, load_settings

    config, _ = config_paths()
    try:
        settings = load_settings()
    except ConfigError as exc:
        return Check("config.yaml", False, str(exc).replace("\n", " | ")), None
    where = str(config) if config.exists() else f"{config} absent: defaults used"
    return Check("config.yaml", True, f"valid ({where})"), settings


async def _ping(dsn: str) -> str:
    from shared.db import connect

    conn = await connect(dsn, timeout_seconds=5)
    try:
        return await conn.fetchval("SELECT version()")
    finally:
        await conn.close()


def check_database(settings: Settings) -> Check:
    import asyncio

    from shared import infra

    found = infra.recorded_endpoints(settings.kafka_bootstrap_servers or "-", settings.database_dsn, settings.state_dir)
    if found is None:
        return Check("database", False,
                     "no DATABASE_URL/DB_HOST and the embedded PostgreSQL is not running: `flare up`")
    try:
        version = asyncio.run(_ping(found.database_url))
    except Exception as exc:  # any failure to reach the database is the finding itself
        return Check("database", False, f"cannot connect: {type(exc).__name__}: {exc}")
    return Check("database", True, version.split(",")[0])


def check_directories(settings: Settings) -> Check:
    problems = []
    for label, path in (("state", settings.state_dir), ("models", settings.model_path)):
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            problems.append(f"{label} dir {path} is not writable")
    if not settings.data_dir.is_dir():
        problems.append(f"data dir {settings.data_dir} does not exist")
    if problems:
        return Check("directories", False, "; ".join(problems))
    return Check("directories", True,
                 f"state {settings.state_dir}, models {settings.model_path}, data {settings.data_dir}")


def check_disk(settings: Settings) -> Check:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(settings.state_dir).free / 1e9
    needed = settings.thresholds.min_free_disk_gb
    return Check("disk", free_gb > needed, f"{free_gb:.1f} GB free, more than {needed:g} GB needed")


def run_checks() -> list[Check]:
    checks = [check_env_file()]
    config_check, settings = check_settings()
    checks.append(config_check)
    if settings is None:
        checks += [Check(name, False, "skipped: configuration invalid") for name in ("database", "directories", "disk")]
        return checks
    checks += [check_database(settings), check_directories(settings), check_disk(settings)]
    return checks


def cmd_check_config(args: argparse.Namespace) -> int:
    return print_checks(run_checks())
