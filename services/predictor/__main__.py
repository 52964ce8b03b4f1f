"""`python -m services.predictor`: the predictor service (stream worker and REST API in one process)."""

import asyncio
import sys

from services.predictor.worker import SERVICE, build_app
from shared import infra
from shared.db import migrate_dsn
from shared.kafka import ensure_topics
from shared.logging import configure_logging
from shared.settings import get_settings
from shared.topics import topic_registry


async def _prepare(settings, endpoints: infra.Endpoints) -> None:
    await migrate_dsn(endpoints.database_url)
    await ensure_topics(endpoints.kafka_bootstrap_servers, topic_registry(settings).values())


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)
    endpoints = infra.resolve_endpoints(settings.kafka_bootstrap_servers, settings.database_dsn, settings.state_dir)
    asyncio.run(_prepare(settings, endpoints))
    app = build_app(settings, endpoints)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warning", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
