"""PostgreSQL access: connection pools and versioned migrations applied at start."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
from tenacity import (
    AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, stop_never, wait_exponential,
)

from shared.logging import get_logger

log = get_logger(__name__)
_MIGRATION_LOCK = 0x464C415245  # "FLARE": one migrator at a time across services
T = TypeVar("T")
# What a database that is stopping, restarting or away raises: the work in hand is not at fault, so it waits
# and tries again. A fast shutdown ends open sessions with AdminShutdownError; a starting server refuses
# with CannotConnectNowError; a closed socket is an OSError or a ConnectionDoesNotExistError.
DATABASE_OUTAGES = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in shared/migrations, in order."""
    found = []
    for entry in resources.files("shared").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def outlasting_outages(work: Callable[[], Awaitable[T]], *, timeout_seconds: float | None = None) -> T:
    """`work()`, run again with backoff (at most 5 s apart) while the database is away, for `timeout_seconds`
    or, by default, until it is back: a service holds still rather than drop or skip what it has in hand.
    `work` must be safe to repeat (one transaction, or idempotent writes)."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(DATABASE_OUTAGES),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_never if timeout_seconds is None else stop_after_delay(timeout_seconds),
        reraise=True,
        before_sleep=_log_retry,
    )

    async def attempt() -> T:  # a coroutine function: tenacity would return a plain callable's awaitable unawaited
        return await work()

    return await retrying(attempt)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("database.retrying", error=repr(error), attempt=state.attempt_number)


async def outlasting_outages_on(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work(conn)` on a connection of `pool`, run again (on a new connection) while the database is away."""
    async def on_connection() -> T:
        async with pool.acquire() as conn:
            return await work(conn)

    return await outlasting_outages(on_connection)


async def connect(dsn: str, *, timeout_seconds: float = 60.0) -> asyncpg.Connection:
    conn = await outlasting_outages(lambda: asyncpg.connect(dsn), timeout_seconds=timeout_seconds)
    await _init_connection(conn)
    return conn


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 5, timeout_seconds: float = 60.0) -> asyncpg.Pool:
    return await outlasting_outages(
        lambda: asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection),
        timeout_seconds=timeout_seconds,
    )


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names. Running it again applies nothing."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied_now.append(name)
            log.info("db.migration_applied", migration=name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def migrate_dsn(dsn: str) -> list[str]:
    conn = await connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
