"""Who is calling and what they may do: bearer tokens mapped to the operator or viewer role.

Tokens come from the settings (`OPERATOR_TOKENS` / `VIEWER_TOKENS` in `.env` or the environment), never from
the repository, in the form of `shared.credentials`: `[name:]secret[@expiry]`. A token written `name:secret`
names its holder, so the history says "alice" rather than a fingerprint; a token without a name is recorded as
`operator-<8 hex of its sha256>` (or `viewer-...`), which identifies the holder without revealing the token.
A token past its expiry is refused like an unknown one (401), with a message saying it expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum

from shared import credentials
from shared.credentials import Credential
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
    """No token, a token nobody configured, or an expired one: HTTP 401."""


class Forbidden(Exception):
    """A known caller whose role does not allow the call: HTTP 403."""


def configured_tokens(settings: Settings) -> list[tuple[Credential, Role]]:
    return [(credentials.parse(t.get_secret_value()), Role.OPERATOR) for t in settings.operator_tokens] + [
        (credentials.parse(t.get_secret_value()), Role.VIEWER) for t in settings.viewer_tokens
    ]


def identify(token: str | None, tokens: list[tuple[Credential, Role]], now: datetime | None = None) -> Caller:
    """The caller holding `token` (the highest role when configured for several), if it has not expired."""
    if not token:
        raise NotAuthenticated("a bearer token is required (Authorization: Bearer <token>)")
    try:
        valid = credentials.matching(token, [known for known, _ in tokens], now or datetime.now(timezone.utc), "token")
    except credentials.CredentialRejected as exc:
        raise NotAuthenticated(str(exc)) from None
    credential, role = max(((known, role) for known, role in tokens if known in valid), key=lambda pair: pair[1])
    return Caller(credential.holder(role.name.lower()), role)


def authorize(caller: Caller, needed: Role) -> Caller:
    if caller.role < needed:
        raise Forbidden(f"{caller.name} has the {caller.role.name.lower()} role; this call needs {needed.name.lower()}")
    return caller
