"""Shared fixtures: one real broker and one real PostgreSQL for the whole test session.

Resolution is the system's own: KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set; else Apache Kafka and
PostgreSQL containers where a Docker engine answers (FLARE_TEST_CONTAINERS=1); else the embedded Tansu broker
and embedded PostgreSQL, started in a temporary state folder so a developer's own `var/` is never touched.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from shared import infra
from shared.db import create_pool, migrate_dsn
from shared.kafka import ensure_topics
from shared.settings import Settings, TopicSettings, load_settings
from shared.topics import topic_registry
from tests.support.swpc_server import FEED, LocalSwpc

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The bundled sample (data/sample): what every test outside tests/bench reads, so a clone tests with nothing beside it.
DATA_DIR = PROJECT_ROOT / "data" / "sample"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="run the reliability checks at full size (what `make reliability` does)")


@pytest.fixture(scope="session")
def full_run(request: pytest.FixtureRequest) -> bool:
    """True under `make reliability`: longer replays, more examples, every service instead of a sample."""
    return bool(request.config.getoption("--full"))


def _containers() -> tuple[str, str, list] | None:
    if os.environ.get("FLARE_TEST_CONTAINERS") != "1":
        return None
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer().with_kraft()
    postgres = PostgresContainer("postgres:16", driver=None)
    kafka.start()
    postgres.start()
    return kafka.get_bootstrap_server(), postgres.get_connection_url(), [kafka, postgres]


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flare-state")


@pytest.fixture(scope="session")
def stack(state_dir: Path) -> Iterator[infra.Endpoints]:
    """The broker and database every integration test talks to, migrated and with the topics created."""
    started = _containers()
    if started:
        bootstrap, dsn, containers = started
        endpoints = infra.Endpoints(bootstrap, dsn, False, False)
    else:
        containers = []
        endpoints = infra.resolve_endpoints(
            os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL"), state_dir
        )
    asyncio.run(migrate_dsn(endpoints.database_url))
    asyncio.run(ensure_topics(endpoints.kafka_bootstrap_servers, topic_registry(load_settings()).values()))
    yield endpoints
    if endpoints.embedded_database:
        infra.stop_embedded_postgres(state_dir)
    if endpoints.embedded_broker:
        infra.stop_embedded_broker(state_dir)
    for container in containers:
        container.stop()


def unique_topics() -> TopicSettings:
    """Topic names no other test or run uses, so runs sharing the broker never read each other's messages."""
    suffix = uuid.uuid4().hex[:8]
    return TopicSettings(**{name: f"{value}.{suffix}" for name, value in TopicSettings().model_dump().items()})


@pytest.fixture
def test_topics() -> TopicSettings:
    """Topic names of this test alone."""
    return unique_topics()


@pytest.fixture
def settings(stack: infra.Endpoints, state_dir: Path, test_topics: TopicSettings, tmp_path: Path) -> Settings:
    """Settings pointing at the test stack, with this test's own topics and model folder."""
    return load_settings(
        kafka_bootstrap_servers=stack.kafka_bootstrap_servers,
        database_url=stack.database_url,
        state_dir=state_dir,
        model_path=tmp_path / "models",
        data_dir=DATA_DIR,
        topics=test_topics,
    )


def service_env(settings: Settings) -> dict[str, str]:
    """Environment for a service started as a subprocess against the test stack and topics."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
           "DATABASE_URL": settings.database_dsn or "", "STATE_DIR": str(settings.state_dir),
           "MODEL_PATH": str(settings.model_path), "DATA_DIR": str(settings.data_dir)}
    for name, value in settings.topics.model_dump().items():
        env[f"TOPICS__{name.upper()}"] = value
    return env


@pytest.fixture(scope="session")
async def db_pool(stack: infra.Endpoints) -> AsyncIterator:
    pool = await create_pool(stack.database_url)
    yield pool
    await pool.close()


APP_TABLES = (
    "flux_observations", "flare_events", "forecast_log", "forecast_outcomes", "flare_ingestion_log",
    "flare_system_validation_log", "model_versions", "model_status", "retrain_requests", "model_metrics",
    "dead_letters", "gatekeeper_metrics",
)


@pytest.fixture
async def clean_db(db_pool) -> AsyncIterator:
    """An empty database for tests that count rows (model_history is append-only and is never emptied)."""
    async with db_pool.acquire() as conn:
        await conn.execute(f"TRUNCATE {', '.join(APP_TABLES)}")
    yield db_pool


@pytest.fixture
def swpc(tmp_path: Path) -> Iterator[LocalSwpc]:
    """SWPC's one-day feed, as recorded, served on loopback for the live ingestor."""
    folder = tmp_path / "swpc"
    folder.mkdir()
    (folder / FEED).write_bytes(gzip.decompress((DATA_DIR / "swpc_json" / f"{FEED}.gz").read_bytes()))
    server = LocalSwpc(folder)
    yield server
    server.stop()
