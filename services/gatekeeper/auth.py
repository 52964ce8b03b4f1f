"""Who is calling and what they may do: bearer tokens mapped to the operator or viewer role.

Tokens come from the settings (`OPERATOR_TOKENS` / `VIEWER_TOKENS` in `.env` or the environment), never from
the repository. A token written `name:secret` names its holder, so the history says "alice" rather than a
fingerprint; a token without a name is recorded as `operator-<8 hex of its sha256>` (or `viewer-...`), which
identifies the holder without revealing the token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum

from shared.settings import Settings


class Role(IntEnum):
    """Ordered: an operator may do everything a viewer may."""

    VIEWER = 1
    OPERATOR = 2


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role


class NotAuthenticated(Exception):
    """No token, or a token nobody configured: HTTP 401."""


class Forbidden(Exception):
    """A known caller whose role does not allow the call: HTTP 403."""


def holder_name(token: str, role: Role) -> str:
    name, separator, secret = token.partition(":")
    if separator and name and secret:
        return name
    return f"{role.name.lower()}-{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def configured_tokens(settings: Settings) -> list[tuple[str, Role]]:
    return [(t.get_secret_value(), Role.OPERATOR) for t in settings.operator_tokens] + [
        (t.get_secret_value(), Role.VIEWER) for t in settings.viewer_tokens
    ]


def identify(token: str | None, tokens: list[tuple[str, Role]]) -> Caller:
    """The caller holding `token`; compared in constant time so a wrong guess learns nothing from timing."""
    if not token:
        raise NotAuthenticated("a bearer token is required (Authorization: Bearer <token>)")
    found: Caller | None = None
    for known, role in tokens:
        if hmac.compare_digest(token.encode(), known.encode()) and (found is None or role > found.role):
            found = Caller(holder_name(known, role), role)
    if found is None:
        raise NotAuthenticated("unknown token")
    return found


def authorize(caller: Caller, needed: Role) -> Caller:
    if caller.role < needed:
        raise Forbidden(f"{caller.name} has the {caller.role.name.lower()} role; this call needs {needed.name.lower()}")
    return caller
