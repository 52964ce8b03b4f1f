"""One writer per table: every SQL write in the code comes from the folder `shared.ownership` names as owner."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from shared import ownership

ROOT = Path(__file__).resolve().parents[2]
# a write names its table right after the keyword; `DO UPDATE SET` (an upsert's second half) names none
WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|MERGE\s+INTO|DELETE\s+FROM|UPDATE)\s+(?!SET\b)([a-z_][a-z0-9_]*)"
    r"|\bTRUNCATE\s+(?:TABLE\s+)?((?:[a-z_][a-z0-9_]*\s*,\s*)*[a-z_][a-z0-9_]*)"
    r"|copy_records_to_table\(\s*[\"']([a-z_][a-z0-9_]*)"
)
READ = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_][a-z0-9_]*)")
CREATED = re.compile(r"\bCREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)")
def folder_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "services" else parts[0]


def written_tables(source: str) -> set[str]:
    tables: set[str] = set()
    for match in WRITE.finditer(source):
        one, truncated, copied = match.groups()
        tables |= {one or copied} if (one or copied) else {t.strip() for t in truncated.split(",")}
    return tables


def sources() -> list[Path]:
    folders = [ROOT / "services" / s for s in ownership.SERVICES] + [ROOT / "shared", ROOT / "flare_cli"]
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def writes() -> dict[str, dict[str, list[str]]]:
    """table -> folder -> the files that write it."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sources():
        for table in written_tables(path.read_text()):
            found[table][folder_of(path)].append(str(path.relative_to(ROOT)))
    return found


WRITES = writes()


def test_the_scanner_reads_each_kind_of_write():
    source = '''
        await conn.execute("INSERT INTO flux_observations (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET a = 1")
        await conn.execute("UPDATE model_registry SET status = $2 WHERE version = $1")
        sql = ("DELETE FROM retrain_requests WHERE id = $1")
        await conn.execute(f"TRUNCATE flare_events, model_metrics")
        await conn.copy_records_to_table("incoming_flux", records=rows)
        await conn.fetch("SELECT * FROM flare_ingestion_log")  # a read
        # update the registry, then delete from the cache: prose is not SQL
    '''
    assert written_tables(source) == {"flux_observations", "model_registry", "retrain_requests", "flare_events",
                                      "model_metrics", "incoming_flux"}


def test_the_scan_finds_the_writes_of_every_service_that_writes():
    writers = {folder for per_folder in WRITES.values() for folder in per_folder}
    assert {"ingestor", "predictor", "evaluator", "gatekeeper", "shared"} <= writers


def test_every_table_the_code_writes_or_the_migrations_create_has_an_owner_in_the_map():
    created = {t for p in [*(ROOT / "shared" / "migrations").glob("*.sql"), *sources()]
               for t in CREATED.findall(p.read_text())}
    assert set(WRITES) - set(ownership.TABLES) == set()
    assert created - set(ownership.TABLES) == set()
    for table in ownership.TABLES.values():
        assert table.owner is None or table.owner in ownership.FOLDERS
        assert set(table.readers) <= set(ownership.FOLDERS) - {table.owner}


@pytest.mark.parametrize("table", list(ownership.TABLES))
def test_only_the_owner_writes_the_table(table):
    owner = ownership.TABLES[table].owner
    others = {folder: files for folder, files in WRITES.get(table, {}).items() if folder != owner}
    assert others == {}, f"{table} is owned by {owner or 'nobody'} but written by {dict(others)}"


def test_the_ownership_page_is_the_map():
    assert (ROOT / "docs" / "ownership.md").read_text() == ownership.markdown(), (
        "docs/ownership.md differs from shared/ownership.py: python -m shared.ownership > docs/ownership.md")


def test_a_table_is_read_only_by_its_owner_and_the_readers_the_map_names():
    unlisted = {}
    for path in sources():
        folder = folder_of(path)
        for table in set(READ.findall(path.read_text())) & set(ownership.TABLES):
            entry = ownership.TABLES[table]
            if folder != entry.owner and folder not in entry.readers:
                unlisted.setdefault(table, set()).add(str(path.relative_to(ROOT)))
    assert unlisted == {}, "readers missing from shared/ownership.py"
