"""structlog set-up: one JSON object per line in services, readable lines in the CLI.

The correlation id of the record being handled is bound with `bind_correlation` and appears in every line
logged while it is bound, in whichever service the record has reached.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

import structlog

_SECRET_KEYS = {"password", "token", "api_key", "authorization", "database_url", "secret"}


def _redact_secrets(_, __, event_dict):
    for key in list(event_dict):
        if any(secret in key.lower() for secret in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def configure_logging(service: str, *, json_lines: bool = True, level: str = "info") -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    if json_lines:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


@contextmanager
def bind_correlation(correlation_id: str | None) -> Iterator[None]:
    with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
        yield


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
