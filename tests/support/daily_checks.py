"""The deployment plan's Daily Checks as `deploy/daily_checks.sql` holds them, for the tests that run them."""

from __future__ import annotations

from tests.conftest import PROJECT_ROOT

DAILY_CHECKS = PROJECT_ROOT / "deploy" / "daily_checks.sql"
TITLES = ("-- Check prediction volume", "-- Check for errors", "-- Review recent flares and predictions")


def daily_check_queries() -> list[str]:
    """The file's three queries in the plan's order, each with its comment line, as the plan writes them."""
    blocks = [block for block in DAILY_CHECKS.read_text().split("\n\n") if "SELECT" in block]
    assert tuple(block.splitlines()[0] for block in blocks) == TITLES
    return blocks
