"""The models serving forecasts: the champion, and a challenger scored in shadow when one is set.

The registry is the truth about which version holds which role. A lifecycle event (`ModelPromoted`,
`ModelRolledBack`, `ChallengerChanged`) is the signal to look again: the slots are reconciled with the
registry, so an old event replayed from the topic, or events arriving out of order, leave the right models
loaded. A version is loaded (digest-verified, in a thread) before it replaces the one serving, so forecasts
never stop and a file that fails to load leaves the previous model serving, with the reason reported.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import asyncpg

from shared import registry
from shared.forecast_model import ForecastModel
from shared.logging import get_logger

log = get_logger(__name__)
ROLES = ("champion", "challenger")


async def registered_roles(conn: asyncpg.Connection,
                           kind: str = registry.FORECAST_KIND) -> dict[str, dict[str, Any] | None]:
    """The registry rows of the champion and the challenger of `kind` (None where the role is empty)."""
    challengers = [row for row in await registry.list_models(conn, kind) if row["status"] == "challenger"]
    return {"champion": await registry.champion(conn, kind), "challenger": challengers[0] if challengers else None}


@dataclass
class ModelSlots:
    champion: ForecastModel | None = None
    challenger: ForecastModel | None = None
    problems: dict[str, str] = field(default_factory=dict)
    loader: Callable[[dict[str, Any]], ForecastModel] = registry.load_model

    def serving(self) -> list[tuple[ForecastModel, bool]]:
        """(model, shadow) for every loaded model: the champion first."""
        pairs = [(self.champion, False), (self.challenger, True)]
        return [(model, shadow) for model, shadow in pairs if model is not None]

    def versions(self) -> dict[str, str | None]:
        return {role: getattr(self, role).version if getattr(self, role) else None for role in ROLES}

    async def reconcile(self, wanted: dict[str, dict[str, Any] | None],
                        run: Callable[..., Awaitable[Any]] = asyncio.to_thread) -> dict[str, str | None]:
        """Make the slots hold the registry's versions; return the roles that changed (role -> new version)."""
        loaded = {model.version: model for model, _ in self.serving()}
        new: dict[str, ForecastModel | None] = {}
        changed: dict[str, str | None] = {}
        for role in ROLES:
            row = wanted.get(role)
            current = getattr(self, role)
            if row is None:
                new[role] = None
            elif current is not None and current.version == row["version"]:
                new[role] = current
            elif row["version"] in loaded:
                new[role] = loaded[row["version"]]
            else:
                try:
                    new[role] = await run(self.loader, row)
                except Exception as exc:  # a refused or broken file must not stop the service
                    self.problems[role] = f"could not load {row['version']} as {role}: {exc}"
                    log.error("model.load_failed", role=role, version=row["version"], error=str(exc))
                    new[role] = current
                    continue
            self.problems.pop(role, None)
            if (current.version if current else None) != (new[role].version if new[role] else None):
                changed[role] = new[role].version if new[role] else None
        # both roles change together, between two messages: nothing is forecast by a half-updated pair
        self.champion, self.challenger = new["champion"], new["challenger"]
        for role, version in changed.items():
            log.info("model.swapped", role=role, version=version)
        return changed
