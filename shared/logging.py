"""structlog set-up: one JSON object per line in services, readable lines in the CLI.

The correlation id of the record being handled is bound with `bind_correlation` and appears in every line
logged while it is bound, in whichever service the record has reached.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any

_SECRET_KEYS = {"password", "token", "api_key", "authorization", "database_url", "secret"}


def _redact_secrets(_, __, event_dict):
    for key in list(event_dict):
        if any(secret in key.lower() for secret in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def configure_logging(service: str, *, json_lines: bool = True, level: str = "info",
                      on_first_use: bool = False) -> None:
    """With `on_first_use`, structlog is imported and configured when something first logs: a command that
    logs nothing does not pay the fifth of a second structlog and rich take to import."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    global _pending
    _pending = (service, json_lines, level)
    if not on_first_use:
        _structlog()


def _apply(service: str, json_lines: bool, level: str) -> ModuleType:
    import structlog

    def add_service(_, __, event_dict):
        event_dict.setdefault("service", service)
        return event_dict

    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_service,
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
    return structlog


_pending: tuple[str, bool, str] | None = None  # a configuration not applied yet


def _structlog() -> ModuleType:
    global _pending
    if _pending is not None:
        configuration, _pending = _pending, None
        return _apply(*configuration)
    import structlog

    return structlog


class bind_correlation:  # noqa: N801 (used as a function: `with bind_correlation(cid):`)
    """The correlation id bound while a record is handled, the one bound before restored after. Entered for every
    record of a replay, so it sets one context variable rather than going through structlog's bound_contextvars."""

    __slots__ = ("_correlation_id", "_tokens")

    def __init__(self, correlation_id: str | None):
        self._correlation_id = correlation_id

    def __enter__(self) -> None:
        self._tokens = _structlog().contextvars.bind_contextvars(correlation_id=self._correlation_id)

    def __exit__(self, *_: object) -> None:
        _structlog().contextvars.reset_contextvars(**self._tokens)


class _Logger:
    """structlog's logger of `name`, made when it is first used (module-level loggers import nothing)."""

    __slots__ = ("_name", "_logger")

    def __init__(self, name: str | None):
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            self._logger = _structlog().get_logger(self._name)
        return getattr(self._logger, attribute)


def get_logger(name: str | None = None) -> Any:
    return _Logger(name)
