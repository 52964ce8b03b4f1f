"""What every command needs: validated settings and the endpoints of the running system."""

from __future__ import annotations

import os
import secrets
import sys
from typing import TYPE_CHECKING

# settings, logging and the broker and database clients load when a command runs, not when `flare` builds its parser
if TYPE_CHECKING:
    from shared import infra
    from shared.settings import Settings


def settings() -> Settings:
    from shared.settings import get_settings

    return get_settings()


def endpoints(start: bool) -> infra.Endpoints:
    """The broker and database; with `start`, embedded ones are started if not running."""
    from shared import infra

    s = settings()
    if start:
        return infra.resolve_endpoints(s.kafka_bootstrap_servers, s.database_dsn, s.state_dir)
    found = infra.recorded_endpoints(s.kafka_bootstrap_servers, s.database_dsn, s.state_dir)
    if found is None:
        print("flare: the system is not running; start it with `flare up`", file=sys.stderr)
        raise SystemExit(1)
    return found


def operator_token(s: Settings | None = None) -> str:
    """The token operator commands present: FLARE_TOKEN, else the first configured operator token that has not
    expired (without its `@expiry`, which only the server reads), else one generated for this installation and
    kept (owner-only) in the state folder, which `flare up` hands to the services it starts."""
    from shared import credentials

    s = s or settings()
    if os.environ.get("FLARE_TOKEN"):
        return os.environ["FLARE_TOKEN"]
    if s.operator_tokens:
        return credentials.first_presentable(t.get_secret_value() for t in s.operator_tokens)
    path = s.state_dir / "operator.token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def api_key(s: Settings | None = None) -> str | None:
    """The key commands present to the predictor's API: FLARE_API_KEY, else the first configured key that has
    not expired; None when the predictor runs without keys."""
    from shared import credentials

    s = s or settings()
    if os.environ.get("FLARE_API_KEY"):
        return os.environ["FLARE_API_KEY"]
    return credentials.first_presentable(k.get_secret_value() for k in s.api_keys)
