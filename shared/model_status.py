"""The statuses a registered model version goes through, and which changes each act may make: the one place
the gatekeeper's acts, the registry's retention and the `model_status.status` CHECK (tested against this)
read them from.

    candidate --judge--> champion | held | rejected
    candidate, challenger, retired, rejected --promote--> champion (the champion it replaces retires)
    held --approve--> champion;  held --reject--> rejected
    retired, challenger --rollback--> champion
    candidate, held, retired --challenger--> challenger --cleared--> its status before
    any but champion, challenger --retention--> archived --> deleted
"""

from __future__ import annotations

from enum import StrEnum


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    HELD = "held"
    CHAMPION = "champion"
    CHALLENGER = "challenger"
    RETIRED = "retired"
    REJECTED = "rejected"
    ARCHIVED = "archived"
    DELETED = "deleted"


S = ModelStatus
# A held candidate is not among them: it waits for `approve`, which a second operator must give. A candidate,
# challenger or rejected version also needs a passing gate verdict (or to have been champion), else `force`.
PROMOTABLE = frozenset({S.CANDIDATE, S.CHALLENGER, S.RETIRED, S.REJECTED})
ROLLBACK_TARGETS = frozenset({S.RETIRED, S.CHALLENGER})
CHALLENGER_SOURCES = frozenset({S.CANDIDATE, S.HELD, S.RETIRED})
JUDGED = S.CANDIDATE  # the only status the gates judge
# Retention never touches these, and these are gone.
PROTECTED = frozenset({S.CHAMPION, S.CHALLENGER})
GONE = frozenset({S.ARCHIVED, S.DELETED})

# Every change of status an act may make, from -> to.
TRANSITIONS: dict[ModelStatus, frozenset[ModelStatus]] = {
    S.CANDIDATE: frozenset({S.CHAMPION, S.HELD, S.REJECTED, S.CHALLENGER, S.ARCHIVED}),
    S.HELD: frozenset({S.CHAMPION, S.REJECTED, S.CHALLENGER, S.ARCHIVED}),
    S.CHAMPION: frozenset({S.RETIRED}),
    S.CHALLENGER: frozenset({S.CHAMPION, S.CANDIDATE, S.HELD, S.RETIRED}),
    S.RETIRED: frozenset({S.CHAMPION, S.CHALLENGER, S.ARCHIVED}),
    S.REJECTED: frozenset({S.CHAMPION, S.ARCHIVED}),
    S.ARCHIVED: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}


def allowed(before: str, after: str) -> bool:
    return ModelStatus(after) in TRANSITIONS[ModelStatus(before)]


def ordered(statuses: frozenset[ModelStatus]) -> list[ModelStatus]:
    """In the order of the enum, for messages that list them."""
    return [s for s in ModelStatus if s in statuses]
