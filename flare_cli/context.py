"""What every command needs: validated settings and the endpoints of the running system."""

from __future__ import annotations

import sys

from shared import infra
from shared.settings import Settings, get_settings


def settings() -> Settings:
    return get_settings()


def endpoints(start: bool) -> infra.Endpoints:
    """The broker and database; with `start`, embedded ones are started if not running."""
    s = settings()
    if start:
        return infra.resolve_endpoints(s.kafka_bootstrap_servers, s.database_dsn, s.state_dir)
    found = infra.recorded_endpoints(s.kafka_bootstrap_servers, s.database_dsn, s.state_dir)
    if found is None:
        print("flare: the system is not running; start it with `flare up`", file=sys.stderr)
        raise SystemExit(1)
    return found
