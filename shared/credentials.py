"""Configured credentials (operator and viewer tokens, API keys) and how a presented one is checked.

One form for all of them, in `.env` or the environment: `[name:]secret[@expiry]`.

- `name:` (optional) names the holder, so the history and the logs say "alice" rather than a fingerprint;
  without it the holder is `<label>-<8 hex of the sha256 of the credential>`, which never reveals it.
- `@expiry` (optional) is an ISO 8601 instant with a time zone, e.g. `alice:s3cret@2026-12-31T00:00:00Z`;
  from that instant on the credential is refused (HTTP 401, "expired"). Everything after the last `@` is
  read as the expiry, so a secret itself cannot contain `@`.

The caller presents only `[name:]secret` (the expiry stays in the server's configuration). A malformed
expiry is a settings error that names the field and the holder, never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

EXPIRY_SEPARATOR = "@"


class CredentialRejected(Exception):
    """No credential, an unknown one, or an expired one: HTTP 401. The message never contains the secret."""


@dataclass(frozen=True)
class Credential:
    presented: str                 # what a caller sends: `name:secret` or `secret`
    expires_at: datetime | None    # None: never expires

    @property
    def name(self) -> str | None:
        name, separator, secret = self.presented.partition(":")
        return name if separator and name and secret else None

    def holder(self, label: str) -> str:
        """How the history and the logs name the holder without revealing the secret."""
        return self.name or f"{label}-{hashlib.sha256(self.presented.encode()).hexdigest()[:8]}"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def parse(configured: str) -> Credential:
    """Read `[name:]secret[@expiry]`; ValueError (naming the holder at most) when the expiry is malformed."""
    presented, separator, expiry = configured.rpartition(EXPIRY_SEPARATOR)
    if not separator:
        return Credential(configured, None)
    who = Credential(presented, None).name
    where = f"the credential of {who!r}" if who else "a credential"
    if not presented:
        raise ValueError(f"{where} has nothing before '@': write [name:]secret@<expiry>")
    try:
        expires_at = datetime.fromisoformat(expiry)
    except ValueError:
        raise ValueError(f"{where} has an expiry after '@' that is not an ISO 8601 instant "
                         f"(write e.g. @2026-12-31T00:00:00Z; a secret cannot contain '@')") from None
    if expires_at.tzinfo is None:
        raise ValueError(f"{where} has an expiry without a time zone (write e.g. @2026-12-31T00:00:00Z)")
    return Credential(presented, expires_at.astimezone(timezone.utc))


def first_presentable(configured: Iterable[str], now: datetime | None = None) -> str | None:
    """What a client should present from its own configuration: the first credential not yet expired, else the
    first one (so the server's answer says it expired), None when there is none."""
    credentials = [parse(value) for value in configured]
    now = now or datetime.now(timezone.utc)
    usable = [c for c in credentials if not c.expired(now)] or credentials
    return usable[0].presented if usable else None


def matching(presented: str, known: Iterable[Credential], now: datetime, what: str = "credential") -> list[Credential]:
    """The unexpired credentials equal to `presented`; CredentialRejected when none is (`what` names the kind
    in the message). Every known credential is compared in constant time, so timing does not tell how close a
    guess was."""
    found = [c for c in known if hmac.compare_digest(presented.encode(), c.presented.encode())]
    if not found:
        raise CredentialRejected(f"unknown {what}")
    valid = [c for c in found if not c.expired(now)]
    if not valid:
        expired = max(c.expires_at for c in found if c.expires_at is not None)
        who = found[0].name
        raise CredentialRejected(
            f"the {what}{f' of {who}' if who else ''} expired at {expired.isoformat().replace('+00:00', 'Z')}; "
            "ask for a new one")
    return valid
