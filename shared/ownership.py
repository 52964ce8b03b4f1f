"""Who owns each table: the one service that writes it, who may read it, and the messages others learn from.

The table layouts are contracts between services as much as `shared.messages` is. Each table has one writing
service; the others read it with read-only queries or learn of its changes through the messages named here.
`docs/ownership.md` is generated from this map (`python -m shared.ownership > docs/ownership.md`) and
tests/unit/test_table_ownership.py checks both the document and every SQL write in the code against it.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICES = ("ingestor", "trainer", "predictor", "evaluator", "gatekeeper", "dashboard")
# the folders whose Python can hold SQL: the six services, the shared library and the `flare` command
FOLDERS = (*SERVICES, "shared", "flare_cli")


@dataclass(frozen=True)
class Table:
    owner: str | None  # the only folder that writes it (None: nobody writes it)
    readers: tuple[str, ...]  # who else may read it, with read-only queries (shared: `shared.registry`'s reads)
    messages: str  # how the others learn of its changes
    note: str = ""


TABLES: dict[str, Table] = {
    "flux_observations": Table(
        "ingestor", ("trainer", "predictor", "evaluator", "gatekeeper", "flare_cli"),
        "`FluxObserved` on `flux`"),
    "flare_events": Table(
        "ingestor", ("trainer", "predictor", "evaluator", "flare_cli"), "`FlareObserved` on `flares`"),
    "flare_ingestion_log": Table(
        "ingestor", ("predictor", "flare_cli"), "none: the ingestion runs' own bookkeeping (daily checks read it)"),
    "incoming_flux": Table(
        "ingestor", (), "none", "a temporary staging table of one transaction (ON COMMIT DROP)"),
    "incoming_flares": Table(
        "ingestor", (), "none", "a temporary staging table of one transaction (ON COMMIT DROP)"),
    "forecast_log": Table(
        "predictor", ("evaluator", "flare_cli"), "`ForecastIssued` on `forecasts`",
        "every forecast issued, as it was issued"),
    "forecast_outcomes": Table(
        "evaluator", ("flare_cli",), "`ForecastResolved` on `outcomes`",
        "what followed each forecast, with the forecast as the evaluator resolved it"),
    "flare_prediction_log": Table(
        None, ("evaluator", "flare_cli"), "its two tables' messages",
        "a view, written by nobody: `forecast_log` with the outcome columns of `forecast_outcomes` (the columns "
        "the deployment plan's queries read)"),
    "model_versions": Table(
        "trainer", ("gatekeeper",), "`ModelTrained` on `lifecycle`",
        "every version trained: its files, their sha256, its data window and its evidence (backtest, validation)"),
    "model_status": Table(
        "gatekeeper", (), "`ModelPromoted`, `ModelRolledBack`, `ChallengerChanged` on `lifecycle`",
        "what the gatekeeper decided of each version, and where retention moved its files"),
    "model_registry": Table(
        None, ("shared", "trainer", "predictor", "evaluator", "gatekeeper", "flare_cli"), "its two tables' messages",
        "a view, written by nobody: `model_versions` with the status of `model_status` (a candidate until the "
        "gatekeeper acts)"),
    "model_training_history": Table(
        "trainer", (), "`ModelTrained` on `lifecycle`",
        "append-only: the trainer's entries of the model history (registered, backtested, validated)"),
    "model_decisions": Table(
        "gatekeeper", (), "the `lifecycle` messages",
        "append-only: the gatekeeper's entries of the model history (its verdicts, acts and retention)"),
    "model_history": Table(
        None, ("shared", "trainer", "gatekeeper", "flare_cli"), "its two tables' messages",
        "a view, written by nobody: both histories, in the order of their one sequence of ids"),
    "model_metrics": Table(
        "evaluator", ("flare_cli",), "`MetricsUpdated` on `metrics`"),
    "metric_drift_episodes": Table(
        "evaluator", (), "`MetricDrift` on `alerts`"),
    "gatekeeper_metrics": Table(
        "gatekeeper", (), "none: what the gatekeeper learnt from `MetricsUpdated`, kept for its rollback check"),
    "flare_system_validation_log": Table(
        "gatekeeper", ("flare_cli",),
        "none: `flare validate` posts its run to the gatekeeper's POST /validation-runs (operator token); "
        "the gate checks of each lifecycle act are logged with it"),
    "retrain_requests": Table(
        "gatekeeper", ("flare_cli",), "`RetrainRequested` on `retrain_requests`"),
    "retrain_triggers": Table("gatekeeper", (), "`RetrainRequested` on `retrain_requests`"),
    "gatekeeper_clock": Table("gatekeeper", (), "none: the gatekeeper's event-time clock"),
    "gatekeeper_outbox": Table("gatekeeper", (), "the messages it holds, once published"),
    "schema_migrations": Table(
        "shared", ("flare_cli",), "none", "written by `shared.db.migrate`, which every service runs at start"),
    "dead_letters": Table(
        None, (), "`DeadLettered` on `dead_letters`", "unused: dead letters live on their topic"),
}


def markdown() -> str:
    """docs/ownership.md."""
    lines = [
        "# Who owns which table",
        "",
        "Each table has one writing service. Every other service reads it with read-only queries, or learns of",
        "its changes through the messages named here. Generated from `shared/ownership.py`",
        "(`python -m shared.ownership > docs/ownership.md`); `tests/unit/test_table_ownership.py` fails when the",
        "code writes a table from any other folder than its owner's, reads it from a folder not named here, or",
        "this page differs from the map. `shared` as a reader means `shared.registry`'s queries, which every",
        "service that loads models runs.",
        "",
        "| table | owner (only writer) | may read it | others learn through | note |",
        "|---|---|---|---|---|",
    ]
    for name, table in TABLES.items():
        readers = ", ".join(table.readers) or "-"
        lines.append(f"| `{name}` | {table.owner or 'nobody'} | {readers} | {table.messages} | {table.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
